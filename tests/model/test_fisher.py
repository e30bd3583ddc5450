"""The fast Fisher equals the batch-size-1 loop, for every model kind, variant and chunking."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lifelong.config import ArchitectureSpec
from lifelong.learn.fisher import (
    FisherError,
    batched_fisher_approx,
    loop_fisher,
    per_sample_fisher,
    vmap_fisher,
)
from lifelong.learn.models import build_model

SPECS = {
    "mlp_classifier": ArchitectureSpec(
        type="mlp_classifier", in_channels=1, length=12, out_dim=4, hidden=(16, 8), dropout=0.3
    ),
    "cnn_classifier": ArchitectureSpec(
        type="cnn_classifier", in_channels=2, length=16, out_dim=3, channels=(4, 6), kernel_size=3, hidden=(8,)
    ),
    "cnn_forecaster": ArchitectureSpec(
        type="cnn_forecaster", in_channels=3, length=16, out_dim=5, channels=(4,), kernel_size=3, hidden=(8,)
    ),
}


@pytest.fixture(autouse=True)
def _one_thread() -> None:
    torch.set_num_threads(1)


def _model(spec: ArchitectureSpec) -> nn.Module:
    torch.manual_seed(0)
    return build_model(spec).double()


def _data(spec: ArchitectureSpec, n: int = 23) -> tuple[Tensor, Tensor, str]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(n, spec.in_channels, spec.length, generator=gen, dtype=torch.float64)
    if spec.type == "cnn_forecaster":
        return x, torch.randn(n, spec.out_dim, generator=gen, dtype=torch.float64), "regression"
    return x, torch.randint(0, spec.out_dim, (n,), generator=gen), "classification"


def _assert_equal(fast: dict[str, Tensor], slow: dict[str, Tensor], model: nn.Module) -> None:
    assert list(fast) == [name for name, p in model.named_parameters() if p.requires_grad]
    assert list(fast) == list(slow)
    for name in slow:
        assert fast[name].shape == slow[name].shape
        rel = float((fast[name] - slow[name]).norm() / slow[name].norm())
        assert rel <= 1e-5, f"{name}: relative error {rel:.2e}"
        assert torch.allclose(fast[name], slow[name], rtol=1e-5, atol=1e-12 * float(slow[name].abs().max()))


@pytest.mark.parametrize("variant", ["empirical", "exact"])
@pytest.mark.parametrize("kind", list(SPECS))
def test_equals_batch_size_one_loop(kind: str, variant: str) -> None:
    spec = SPECS[kind]
    model = _model(spec)
    x, y, task = _data(spec)
    fast = per_sample_fisher(model, x, y, task=task, variant=variant, chunk_size=8)
    _assert_equal(fast, loop_fisher(model, x, y, task=task, variant=variant), model)
    assert all(bool(t.gt(0).any()) for t in fast.values())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kind", list(SPECS))
def test_on_cuda_equals_the_cpu_loop(kind: str) -> None:
    """The batched Fisher on a CUDA model (float64) equals the CPU loop, and comes back on the model's device."""
    spec = SPECS[kind]
    model = _model(spec)
    x, y, task = _data(spec)
    slow = loop_fisher(model, x, y, task=task, variant="exact")
    fast = per_sample_fisher(model.cuda(), x.cuda(), y.cuda(), task=task, variant="exact", chunk_size=8)
    assert all(t.device.type == "cuda" for t in fast.values())
    _assert_equal({k: v.cpu() for k, v in fast.items()}, slow, model)


@pytest.mark.parametrize("variant", ["empirical", "exact"])
def test_fallback_layers_layernorm_batchnorm(variant: str) -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv1d(2, 4, 3),
        nn.BatchNorm1d(4),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(24, 8),
        nn.LayerNorm(8),
        nn.Tanh(),
        nn.Linear(8, 3),
    ).double()
    model[1].running_mean.uniform_(-0.5, 0.5)
    x = torch.randn(17, 2, 8, dtype=torch.float64)
    y = torch.randint(0, 3, (17,))
    fast = per_sample_fisher(model, x, y, task="classification", variant=variant, chunk_size=5)
    _assert_equal(fast, loop_fisher(model, x, y, task="classification", variant=variant), model)


def test_chunking_does_not_change_the_result() -> None:
    spec = SPECS["cnn_forecaster"]
    model = _model(spec)
    x, y, task = _data(spec, n=31)
    whole = per_sample_fisher(model, x, y, task=task, chunk_size=1000)
    for chunk in (1, 4, 30):
        part = per_sample_fisher(model, x, y, task=task, chunk_size=chunk)
        for name in whole:
            torch.testing.assert_close(part[name], whole[name], rtol=1e-10, atol=0)


class _Awkward(nn.Module):
    """In-place ReLU after a layer, a layer called twice, 3-D Linear input, tied weights, a frozen bias."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Linear(5, 5)
        self.mix = nn.Linear(3, 4)
        self.head = nn.Linear(20, 3)
        self.tied = nn.Linear(20, 3)
        self.tied.weight = self.head.weight
        self.tied.bias.requires_grad_(False)
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:  # x: (N, 3, 5)
        h = self.act(self.inner(x))
        h = self.act(self.inner(h))  # second call of the same layer
        h = self.mix(h.transpose(1, 2)).flatten(1)  # Linear on (N, 5, 3)
        return self.head(h) + 0.5 * self.tied(h)


@pytest.mark.parametrize("task", ["classification", "regression"])
def test_awkward_models_equal_the_loop(task: str) -> None:
    torch.manual_seed(0)
    model = _Awkward().double()
    x = torch.randn(13, 3, 5, dtype=torch.float64)
    y = torch.randint(0, 3, (13,)) if task == "classification" else torch.randn(13, 3, dtype=torch.float64)
    for variant in ("empirical", "exact"):
        fast = per_sample_fisher(model, x, y, task=task, variant=variant, chunk_size=6)
        assert "tied.bias" not in fast
        _assert_equal(fast, loop_fisher(model, x, y, task=task, variant=variant), model)


def test_eval_semantics_modes_restored_and_grads_untouched() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 3)).double()
    model.train()
    model[3].train(False)
    x, y = torch.randn(9, 6, dtype=torch.float64), torch.randint(0, 3, (9,))
    first = per_sample_fisher(model, x, y, task="classification")
    with torch.no_grad():  # a caller's no_grad does not get in the way
        second = per_sample_fisher(model, x, y, task="classification")
    for name in first:  # dropout is off: deterministic
        torch.testing.assert_close(first[name], second[name], rtol=0, atol=0)
    assert [m.training for m in model] == [True, True, True, False]
    assert all(p.grad is None for p in model.parameters())


def test_one_forward_per_chunk() -> None:
    """The cost claim, structurally: one forward of the model per chunk (and one backward)."""
    spec = SPECS["mlp_classifier"]
    model = _model(spec)
    x, y, task = _data(spec, n=20)
    calls: list[int] = []
    model.register_forward_hook(lambda module, args, out: calls.append(out.shape[0]))
    per_sample_fisher(model, x, y, task=task, chunk_size=8)
    assert calls == [8, 8, 4]


def test_references_agree() -> None:
    spec = SPECS["cnn_classifier"]
    model = _model(spec)
    x, y, task = _data(spec)
    slow = loop_fisher(model, x, y, task=task)
    _assert_equal(vmap_fisher(model, x, y, task=task, chunk_size=10), slow, model)
    # a mini-batch of one is a single sample: the approximation is then exact...
    _assert_equal(batched_fisher_approx(model, x, y, task=task, batch_size=1), slow, model)
    # ...and with larger batches it underestimates (square of a mean < mean of squares)
    approx = batched_fisher_approx(model, x, y, task=task, batch_size=8)
    assert sum(float(approx[k].sum()) for k in approx) < 0.8 * sum(float(slow[k].sum()) for k in slow)


def test_float32_is_close_to_float64_loop() -> None:
    spec = SPECS["cnn_forecaster"]
    model = _model(spec)
    x, y, task = _data(spec)
    slow = loop_fisher(model, x, y, task=task, variant="exact")
    fast = per_sample_fisher(model.float(), x.float(), y.float(), task=task, variant="exact")
    for name in slow:
        assert fast[name].dtype == torch.float32
        assert float((fast[name].double() - slow[name]).norm() / slow[name].norm()) < 1e-5


def test_bad_arguments_are_refused() -> None:
    model = nn.Linear(3, 2)
    x = torch.randn(4, 3)
    with pytest.raises(FisherError, match="task must be"):
        per_sample_fisher(model, x, torch.zeros(4), task="ranking")  # type: ignore[arg-type]
    with pytest.raises(FisherError, match="variant must be"):
        per_sample_fisher(model, x, torch.zeros(4), task="regression", variant="mc")  # type: ignore[arg-type]
    with pytest.raises(FisherError, match="same non-zero number of samples"):
        per_sample_fisher(model, x, torch.zeros(5), task="classification")
    with pytest.raises(FisherError, match="do not match model outputs"):
        per_sample_fisher(model, x, torch.zeros(4, 3), task="regression")
    with pytest.raises(FisherError, match="chunk_size"):
        per_sample_fisher(model, x, torch.zeros(4), task="classification", chunk_size=0)
