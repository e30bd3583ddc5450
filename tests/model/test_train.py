"""The update loop: schedule carried over, early stopping, strategies, optimizers, devices, errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lifelong.config import ArchitectureSpec, StrategySpec, TrainSpec
from lifelong.learn import train as train_module
from lifelong.learn.models import build_model, task_kind
from lifelong.learn.state import LearnerState, load_state, save_state
from lifelong.learn.strategies import make_strategy
from lifelong.learn.train import TrainError, consolidate, derive_seed, evaluate_loss, fit, select_device

FORECASTER = ArchitectureSpec(type="cnn_forecaster", in_channels=3, length=96, out_dim=48, channels=(16,))
CLASSIFIER = ArchitectureSpec(type="cnn_classifier", in_channels=1, length=64, out_dim=3, channels=(4, 8), hidden=(8,))


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _signals(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Three classes of 1-D signals: sine, square, noise."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    t = torch.linspace(0, 6.28, 64)
    base = torch.stack([torch.sin(3 * t), torch.sign(torch.sin(3 * t)), torch.zeros(64)])
    return (base[y] + 0.3 * torch.randn(n, 64, generator=g))[:, None], y


def test_models_from_spec() -> None:
    assert build_model(FORECASTER)(torch.zeros(2, 3, 96)).shape == (2, 48)
    assert build_model(CLASSIFIER)(torch.zeros(2, 1, 64)).shape == (2, 3)
    mlp = ArchitectureSpec(type="mlp_classifier", in_channels=2, length=10, out_dim=4, hidden=(5, 6), dropout=0.1)
    assert build_model(mlp)(torch.zeros(2, 2, 10)).shape == (2, 4)
    assert (task_kind(FORECASTER), task_kind(CLASSIFIER)) == ("regression", "classification")


def test_classifier_learns_and_schedule_keeps_decaying_across_updates(tmp_path: Path) -> None:
    train = TrainSpec(lr=5e-3, lr_decay=0.95, lr_floor=1e-3, epochs=3, batch_size=16, patience=0)
    strategy = StrategySpec(name="replay", replay_capacity=50)
    state = LearnerState.new(CLASSIFIER, train, strategy)
    x, y = _signals(120)
    messages: list[str] = []
    first = fit(
        state, x, y, train=train, strategy=make_strategy(strategy, "classification", state), progress=messages.append
    )
    assert len(messages) == 3 and messages[0].startswith("epoch 1/3")
    # device "auto": CUDA where there is one (seen on the GPU machine), else the CPU
    assert first.epochs[-1]["val_loss"] < first.epochs[0]["val_loss"] and first.device == str(select_device("auto"))
    lr_after_first = state.lr
    save_state(state, tmp_path)
    state = load_state(tmp_path, CLASSIFIER)
    fit(state, *_signals(120, seed=1), train=train, strategy=make_strategy(strategy, "classification", state))
    assert lr_after_first > 1e-3 and state.lr < lr_after_first  # the decay continued from where it stopped ...
    assert state.lr == pytest.approx(max(5e-3 * 0.95 ** state.counters["steps"], 1e-3))  # ... down to the floor
    assert state.counters["steps"] == 2 * first.steps and state.counters["updates"] == 2
    assert len(state.buffer or []) == 50


def test_early_stopping_restores_the_best_weights() -> None:
    # random labels and a large learning rate: validation loss gets worse quickly
    train = TrainSpec(lr=0.05, lr_decay=1.0, epochs=30, batch_size=8, patience=2, val_fraction=0.3, grad_clip=0.0)
    spec = StrategySpec(name="naive")
    state = LearnerState.new(CLASSIFIER, train, spec)
    x = torch.randn(60, 1, 64, generator=torch.Generator().manual_seed(0))
    y = torch.randint(0, 3, (60,), generator=torch.Generator().manual_seed(1))
    result = fit(state, x, y, train=train, strategy=make_strategy(spec, "classification", state))
    assert result.stopped_early and len(result.epochs) < 30
    assert result.best_val_loss == min(e["val_loss"] for e in result.epochs)
    val = torch.randperm(60, generator=torch.Generator().manual_seed(derive_seed(train.seed, 0)))[:18]
    assert evaluate_loss(state.model, x[val], y[val], "classification") == pytest.approx(result.best_val_loss, rel=1e-5)


@pytest.mark.parametrize("name", ["lwf", "lwf+replay", "online_ewc", "ewc"])
def test_strategies_on_the_forecaster(name: str) -> None:
    train = TrainSpec(epochs=2, batch_size=16, optimizer="sgd", momentum=0.9, lr=1e-3)
    spec = StrategySpec(name=name, replay_capacity=30, fisher_samples=20, lwf_alpha=1.0)
    state = LearnerState.new(FORECASTER, train, spec)
    strategy = make_strategy(spec, "regression", state)
    x = torch.randn(40, 3, 96, generator=torch.Generator().manual_seed(2))
    y = x[:, 0, :48] * 0.5
    assert float(strategy.extra_loss(state.model, x[:4])) == 0.0 and float(strategy.penalty(state.model)) == 0.0
    fit(state, x, y, train=train, strategy=strategy)
    strategy.consolidate(state.model, x, y)
    assert state.anchors is not None and (state.fisher is not None) == ("ewc" in name)
    with torch.no_grad():
        for p in state.model.parameters():
            p.add_(0.05)
    moved = float(strategy.extra_loss(state.model, x[:8]).detach()) + float(strategy.penalty(state.model).detach())
    assert moved > 0.0
    fit(state, x, y, train=train, strategy=strategy)  # trains with the penalty / distillation


@pytest.mark.parametrize(
    ("name", "per_task_anchors"), [("ewc", True), ("online_ewc", True), ("online_ewc", False)]
)  # plain ewc (no per-task anchors) keeps the last task's Fisher only
def test_per_task_anchors_are_one_penalty_per_task_in_two_tensors(name: str, per_task_anchors: bool) -> None:
    """With ``per_task_anchors`` the penalty after 3 tasks has the gradient of the sum of 3 per-task
    penalties, each anchored where its task ended; online EWC anchors all of them at the last end."""
    arch = ArchitectureSpec(type="mlp_classifier", length=6, out_dim=3, hidden=(5,))
    spec = StrategySpec(name=name, ewc_lambda=3.0, gamma=1.0, fisher_variant="exact", fisher_samples=0)
    state = LearnerState.new(arch, TrainSpec(), spec)
    strategy = make_strategy(spec, "classification", state, per_task_anchors=per_task_anchors)
    per_task: list[tuple[dict, dict]] = []
    for t in range(3):
        g = torch.Generator().manual_seed(10 + t)
        with torch.no_grad():  # a different end point per task
            for p in state.model.parameters():
                p.add_(0.3 * torch.randn(p.shape, generator=g))
        x, y = torch.randn(24, 1, 6, generator=g), torch.randint(0, 3, (24,), generator=g)
        before = {k: v.clone() for k, v in (state.fisher or {}).items()}
        strategy.consolidate(state.model, x, y)
        assert state.fisher is not None and state.anchors is not None
        assert len(state.fisher) == len(state.anchors) == len(list(state.model.parameters()))  # flat
        new_fisher = {k: v - before.get(k, 0.0) for k, v in state.fisher.items()}
        per_task.append((new_fisher, {k: p.detach().clone() for k, p in state.model.named_parameters()}))
    anchored_at_last_task = all(torch.equal(state.anchors[k], v) for k, v in per_task[-1][1].items())
    assert anchored_at_last_task == (not per_task_anchors)
    with torch.no_grad():
        for p in state.model.parameters():
            p.add_(0.1)
    params = dict(state.model.named_parameters())
    got = torch.autograd.grad(strategy.penalty(state.model), list(params.values()))
    anchors = [end for _, end in per_task] if per_task_anchors else [per_task[-1][1]] * len(per_task)
    explicit = sum(
        (fisher[k] * (p - anchors[t][k]).pow(2)).sum()
        for t, (fisher, _) in enumerate(per_task)
        for k, p in params.items()
    )
    want = torch.autograd.grad(1.5 * explicit, list(params.values()))
    assert all(torch.allclose(a, b, rtol=1e-4, atol=1e-7) for a, b in zip(got, want, strict=True))


def test_sgd_state_round_trips(tmp_path: Path) -> None:
    for momentum in (0.0, 0.9):
        train = TrainSpec(optimizer="sgd", momentum=momentum, epochs=1, batch_size=16)
        spec = StrategySpec(name="naive")
        state = LearnerState.new(CLASSIFIER, train, spec)
        fit(state, *_signals(40), train=train, strategy=make_strategy(spec, "classification", state))
        save_state(state, tmp_path / str(momentum))
        loaded = load_state(tmp_path / str(momentum))
        assert isinstance(loaded.optimizer, torch.optim.SGD)
        a, b = loaded.optimizer.state_dict(), state.optimizer.state_dict()
        assert a["param_groups"] == b["param_groups"]
        assert a["state"].keys() == b["state"].keys() and (momentum == 0) == (not b["state"])
        for index, values in b["state"].items():
            assert all(torch.equal(values[k], a["state"][index][k]) for k in values)


def test_refuses_bad_input_and_devices() -> None:
    train, spec = TrainSpec(epochs=1), StrategySpec(name="naive")
    state = LearnerState.new(CLASSIFIER, train, spec)
    strategy = make_strategy(spec, "classification", state)
    with pytest.raises(TrainError, match="do not fit the model"):
        fit(state, torch.zeros(4, 1, 10), torch.zeros(4), train=train, strategy=strategy)
    with pytest.raises(TrainError, match="class indices"):
        fit(state, torch.zeros(4, 1, 64), torch.tensor([0, 1, 2, 7]), train=train, strategy=strategy)
    with pytest.raises(TrainError, match="no samples"):
        fit(state, torch.zeros(0, 1, 64), torch.zeros(0), train=train, strategy=strategy)
    assert select_device("cpu").type == "cpu"
    assert select_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(TrainError, match="CUDA is not available"):
            select_device("cuda")


MLP = ArchitectureSpec(type="mlp_classifier", in_channels=1, length=64, out_dim=3, hidden=(16,))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_set_copied_once_trains_as_copies_per_step(monkeypatch) -> None:
    """The training set held on the GPU for the fit (one copy) gives the weights of one copy per step."""
    train = TrainSpec(epochs=3, batch_size=16, device="cuda")
    spec = StrategySpec(name="ewc+replay", replay_capacity=30, fisher_samples=20)
    x, y = _signals(60)
    weights = []
    for share in (train_module.RESIDENT_SHARE, 0.0):  # 0: nothing fits, every batch is copied
        monkeypatch.setattr(train_module, "RESIDENT_SHARE", share)
        state = LearnerState.new(MLP, train, spec)
        strategy = make_strategy(spec, "classification", state)
        fit(state, x, y, train=train, strategy=strategy)
        consolidate(state, strategy, x, y, device="cuda")
        fit(state, x, y, train=train, strategy=strategy)  # replayed samples and the EWC penalty too
        assert len(state.buffer) == 30 and all(p.device.type == "cpu" for p in state.model.parameters())
        weights.append(state.model.state_dict())
    for name, value in weights[0].items():
        torch.testing.assert_close(value, weights[1][name], rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fit_uses_fused_adam_and_trains_as_the_cpu(tmp_path: Path, monkeypatch) -> None:
    """On CUDA Adam takes its fused kernel; the weights match the CPU's unfused Adam, and the state
    comes back as the CPU builds it (not fused, step counters on the CPU), so it saves and resumes."""
    fused_calls = []
    fused_adam = torch._fused_adam_
    monkeypatch.setattr(torch, "_fused_adam_", lambda *a, **k: fused_calls.append(1) or fused_adam(*a, **k))
    spec = StrategySpec(name="ewc+replay", replay_capacity=30, fisher_samples=20)
    x, y = _signals(60)
    states = []
    for device in ("cpu", "cuda"):
        train = TrainSpec(epochs=3, batch_size=16, device=device)
        state = LearnerState.new(MLP, train, spec)
        strategy = make_strategy(spec, "classification", state)
        fit(state, x, y, train=train, strategy=strategy)
        consolidate(state, strategy, x, y, device=device)
        fit(state, x, y, train=train, strategy=strategy)
        states.append(state)
        assert bool(fused_calls) == (device == "cuda")
    cpu, cuda = states
    for name, value in cpu.model.state_dict().items():
        torch.testing.assert_close(value, cuda.model.state_dict()[name], rtol=1e-4, atol=1e-5)
    assert all(group["fused"] is None for group in cuda.optimizer.param_groups)
    assert all(v.device.type == "cpu" for s in cuda.optimizer.state.values() for v in s.values())
    save_state(cuda, tmp_path / "state")
    resumed = load_state(tmp_path / "state", MLP)
    fit(resumed, x, y, train=TrainSpec(epochs=1), strategy=make_strategy(spec, "classification", resumed))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_consolidate_on_cuda_gives_the_cpu_fisher_on_the_cpu() -> None:
    spec = StrategySpec(name="ewc", fisher_samples=40)
    x, y = _signals(60)
    fishers = []
    for device in ("cpu", "cuda"):
        state = LearnerState.new(MLP, TrainSpec(), spec)
        consolidate(state, make_strategy(spec, "classification", state), x, y, device=device)
        assert state.fisher is not None and state.anchors is not None
        tensors = [*state.fisher.values(), *state.anchors.values(), *state.model.parameters()]
        assert all(t.device.type == "cpu" for t in tensors)
        fishers.append(state.fisher)
    for name, value in fishers[0].items():
        torch.testing.assert_close(value, fishers[1][name], rtol=1e-4, atol=1e-7)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_with_amp_returns_state_on_cpu() -> None:
    train = TrainSpec(epochs=2, batch_size=16, amp=True, device="cuda")
    spec = StrategySpec(name="ewc+replay", replay_capacity=30, fisher_samples=20)
    state = LearnerState.new(CLASSIFIER, train, spec)
    strategy = make_strategy(spec, "classification", state)
    x, y = _signals(60)
    result = fit(state, x, y, train=train, strategy=strategy)
    strategy.consolidate(state.model, x, y)
    fit(state, x, y, train=train, strategy=strategy)
    assert result.device.startswith("cuda")
    assert all(p.device.type == "cpu" for p in state.model.parameters())
    assert all(v.device.type == "cpu" for s in state.optimizer.state.values() for v in s.values())


def test_metric_history_is_a_rolling_window_of_the_last_updates() -> None:
    """state.json stops growing with the days: the history keeps the last ``history_window`` updates."""
    train = TrainSpec(lr=5e-3, epochs=1, batch_size=16, patience=0, history_window=3)
    strategy = StrategySpec(name="naive")
    state = LearnerState.new(CLASSIFIER, train, strategy)
    x, y = _signals(32)
    for _ in range(5):
        fit(state, x, y, train=train, strategy=make_strategy(strategy, "classification", state))
    assert [h["update"] for h in state.history] == [2, 3, 4]
    assert state.counters["updates"] == 5
