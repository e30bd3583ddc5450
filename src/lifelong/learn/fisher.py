"""Exact diagonal Fisher from per-sample gradients, without a per-sample loop.

For every trainable parameter ``theta`` the Fisher diagonal is the mean over samples of the
squared per-sample gradient of the per-sample negative log-likelihood (NLL):
cross-entropy for classification, ``0.5 * ||f(x) - y||**2`` (a unit-variance Gaussian)
for regression.

* ``empirical``: the NLL of the true target, ``F = mean_n (d NLL(x_n, y_n) / d theta)**2``.
* ``exact``: the expectation over the model's own predictive distribution.
  Classification: ``sum_c p_c * (d -log p_c / d theta)**2``. Regression: the expectation of
  ``(J^T (f - y))**2`` over ``y ~ N(f, I)`` is ``diag(J^T J)``, which is what we compute,
  deterministically (no sampling), as ``sum_o (d f_o / d theta)**2``.

How (the per-layer identities, as in BackPACK's ``SumGradSquared`` / ``DiagGGNExact``):
a backward pass with the NLLs *summed* over a chunk gives, at each layer output, exactly the
per-sample output gradients ``g_n`` (samples do not interact in eval mode). Forward hooks record
each layer's input ``a`` and output ``z`` (handing the rest of the model a copy of ``z``, so that a
later in-place op such as ``ReLU(inplace=True)`` cannot rewrite it), and ``torch.autograd.grad`` is
taken with respect to the ``z`` (no parameter gradient is formed). Then

* ``nn.Linear`` on ``(N, in)`` input: ``sum_n (g_n a_n^T)**2 = (g**2).T @ (a**2)`` and, for the
  bias, ``sum_n g_n**2``: nothing of size ``N x out x in`` is built;
* ``nn.Linear`` on inputs with extra dimensions, ``nn.Conv1d`` (via the unfolded input), or a layer that is
  called more than once: the per-sample gradient is formed (sum over positions and calls first,
  square after), which is cheap for these layers' sizes;
* any other layer with trainable parameters (LayerNorm, BatchNorm, Embedding, ...):
  ``torch.func.vmap`` over per-sample VJPs of a ``functional_call``, for those parameters only.

The output gradients are given directly as vectors on the model output, ``d NLL / d f``:
``p - onehot(y)`` or ``f - y`` (empirical, one backward); ``sqrt(p_c) * (p - e_c)`` for each class
``c`` (exact classification: ``sum_c`` of their squares is ``diag(J^T (diag p - p p^T) J)``) or the
unit vectors ``e_o`` (exact regression). For the identity path the squares are summed over these
vectors before the one matmul per layer. Cost: empirical, one forward and one backward plus one
matmul per layer (the fallback adds one vectorised forward+backward); exact, one forward and
``K`` backward passes (``K`` = classes or outputs), which is inherent to the exact Fisher (the
batch-size-1 loop needs ``K`` backward passes per sample).

Why not a library: BackPACK does exactly this but requires torchvision, which would replace our
torch build; Opacus 1.6 installs cleanly but materialises every per-sample gradient
(``N x out x in`` per Linear, the very cost the identity avoids) and has no exact Fisher.

Semantics: the model is put in eval mode for the computation (dropout off, BatchNorm on its
running statistics, so samples are independent) and its modes are restored afterwards; no
``.grad`` is touched. Inputs are processed ``chunk_size`` samples at a time.

>>> import torch
>>> _ = torch.manual_seed(0)
>>> net = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))
>>> x, y = torch.randn(20, 4), torch.randint(0, 3, (20,))
>>> fast = per_sample_fisher(net, x, y, task="classification", chunk_size=7)
>>> slow = loop_fisher(net, x, y, task="classification")
>>> sorted(fast) == sorted(dict(net.named_parameters()))
True
>>> all(torch.allclose(fast[k], slow[k], rtol=1e-4, atol=1e-7) for k in fast)
True
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.func import functional_call, vjp, vmap

from lifelong.errors import LifelongError

Task = Literal["classification", "regression"]
Variant = Literal["empirical", "exact"]

__all__ = ["FisherError", "batched_fisher_approx", "loop_fisher", "per_sample_fisher", "vmap_fisher"]


class FisherError(LifelongError, ValueError):
    """Invalid arguments for a Fisher computation (task, variant, shapes)."""


# --------------------------------------------------------------------------- public API


def per_sample_fisher(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    task: Task,
    variant: Variant = "empirical",
    chunk_size: int = 256,
) -> dict[str, Tensor]:
    """Mean over samples of squared per-sample NLL gradients, per trainable parameter.

    Equal (up to rounding) to :func:`loop_fisher`, at the cost of a few batched passes.
    """
    x, y = _check(model, inputs, targets, task, variant)
    if chunk_size < 1:
        raise FisherError(f"chunk_size must be >= 1, got {chunk_size}")
    params = _trainable(model)
    plan = _plan(model, params)
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    with _eval_mode(model), torch.enable_grad():
        for start in range(0, x.shape[0], chunk_size):
            xc, yc = x[start : start + chunk_size], y[start : start + chunk_size]
            if plan.layers:
                _accumulate_hooked(model, plan, xc, yc, task, variant, total)
            if plan.fallback:
                _accumulate_vmapped(model, params, plan.fallback, xc, yc, task, variant, total)
    return {name: t / x.shape[0] for name, t in total.items()}


def loop_fisher(
    model: nn.Module, inputs: Tensor, targets: Tensor, *, task: Task, variant: Variant = "empirical"
) -> dict[str, Tensor]:
    """The reference: one sample at a time, straight from the definition (slow)."""
    x, y = _check(model, inputs, targets, task, variant)
    params = _trainable(model)
    names, tensors = list(params), list(params.values())
    total = [torch.zeros_like(p) for p in tensors]

    def add(loss: Tensor, weight: Tensor | float = 1.0, retain: bool = False) -> None:
        grads = torch.autograd.grad(loss, tensors, retain_graph=retain, allow_unused=True, materialize_grads=True)
        for acc, g in zip(total, grads, strict=True):
            acc.add_(g.pow(2) * weight)

    with _eval_mode(model), torch.enable_grad():
        for n in range(x.shape[0]):
            out = model(x[n : n + 1])
            if variant == "empirical":
                add(_nll(out, y[n : n + 1], task))
            elif task == "classification":
                probs = out.detach().softmax(-1)[0]
                for c in range(out.shape[-1]):
                    label = torch.tensor([c], device=out.device)
                    add(F.cross_entropy(out, label, reduction="sum"), probs[c], retain=c < out.shape[-1] - 1)
            else:
                flat = out.reshape(-1)
                for o in range(flat.numel()):
                    add(flat[o], retain=o < flat.numel() - 1)
    return {name: t / x.shape[0] for name, t in zip(names, total, strict=True)}


def vmap_fisher(
    model: nn.Module,
    inputs: Tensor,
    targets: Tensor,
    *,
    task: Task,
    variant: Variant = "empirical",
    chunk_size: int = 256,
) -> dict[str, Tensor]:
    """Plain ``torch.func``: vmap over per-sample VJPs for every parameter (for comparison).

    Exact too, but it materialises every per-sample gradient, so on Linear-heavy models it is
    little faster than the loop; :func:`per_sample_fisher` uses it only for unsupported layers.
    """
    x, y = _check(model, inputs, targets, task, variant)
    if chunk_size < 1:
        raise FisherError(f"chunk_size must be >= 1, got {chunk_size}")
    params = _trainable(model)
    total = {name: torch.zeros_like(p) for name, p in params.items()}
    with _eval_mode(model), torch.enable_grad():
        for start in range(0, x.shape[0], chunk_size):
            xc, yc = x[start : start + chunk_size], y[start : start + chunk_size]
            _accumulate_vmapped(model, params, list(params), xc, yc, task, variant, total)
    return {name: t / x.shape[0] for name, t in total.items()}


def batched_fisher_approx(
    model: nn.Module, inputs: Tensor, targets: Tensor, *, task: Task, batch_size: int = 64
) -> dict[str, Tensor]:
    """The approximation several CL libraries use: square of each mini-batch's mean-loss gradient.

    Averaged over mini-batches (as Avalanche's EWC does). It is biased: the square of a mean is
    not the mean of squares; with batch size B it is roughly the true Fisher divided by B plus
    the squared mean gradient. Kept for the benchmark and for comparison only.
    """
    x, y = _check(model, inputs, targets, task, "empirical")
    if batch_size < 1:
        raise FisherError(f"batch_size must be >= 1, got {batch_size}")
    params = _trainable(model)
    names, tensors = list(params), list(params.values())
    total = [torch.zeros_like(p) for p in tensors]
    batches = 0
    with _eval_mode(model), torch.enable_grad():
        for start in range(0, x.shape[0], batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            loss = _nll(model(xb), yb, task) / xb.shape[0]
            grads = torch.autograd.grad(loss, tensors, allow_unused=True, materialize_grads=True)
            for acc, g in zip(total, grads, strict=True):
                acc.add_(g.pow(2))
            batches += 1
    return {name: t / batches for name, t in zip(names, total, strict=True)}


# --------------------------------------------------------------------------- shared pieces


def _check(model: nn.Module, inputs: Tensor, targets: Tensor, task: str, variant: str) -> tuple[Tensor, Tensor]:
    """Validate arguments; move inputs and targets to the model's device and dtype."""
    if task not in ("classification", "regression"):
        raise FisherError(f"task must be 'classification' or 'regression', got {task!r}")
    if variant not in ("empirical", "exact"):
        raise FisherError(f"variant must be 'empirical' or 'exact', got {variant!r}")
    first = next(iter(model.parameters()), None)
    if first is None:
        raise FisherError("the model has no parameters")
    if inputs.ndim == 0 or inputs.shape[0] == 0 or inputs.shape[0] != targets.shape[0]:
        raise FisherError(
            f"inputs and targets need the same non-zero number of samples, got {tuple(inputs.shape)} "
            f"and {tuple(targets.shape)}"
        )
    x = inputs.to(first.device)
    if x.is_floating_point():
        x = x.to(first.dtype)
    y = targets.to(first.device)
    y = y.long() if task == "classification" else y.to(first.dtype)
    if task == "classification" and y.ndim != 1:
        raise FisherError(f"classification targets must be class indices of shape (N,), got {tuple(y.shape)}")
    return x, y


def _trainable(model: nn.Module) -> dict[str, nn.Parameter]:
    return {name: p for name, p in model.named_parameters() if p.requires_grad}


@contextlib.contextmanager
def _eval_mode(model: nn.Module) -> Iterator[None]:
    """Eval mode for the duration; every submodule's own training flag is restored after."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        yield
    finally:
        for module, mode in modes:
            module.training = mode


def _nll(out: Tensor, y: Tensor, task: str) -> Tensor:
    """Per-sample NLL summed over the batch."""
    if task == "classification":
        if out.ndim != 2:
            raise FisherError(f"a classifier must output logits of shape (N, classes), got {tuple(out.shape)}")
        return F.cross_entropy(out, y, reduction="sum")
    return 0.5 * (out - _as_output(y, out)).pow(2).sum()


def _as_output(y: Tensor, out: Tensor) -> Tensor:
    if y.numel() != out.numel():
        raise FisherError(f"regression targets {tuple(y.shape)} do not match model outputs {tuple(out.shape)}")
    return y.reshape(out.shape)


def _output_vectors(out: Tensor, y: Tensor, task: str, variant: str) -> Tensor:
    """Stacked ``(K, *out.shape)`` gradients of per-sample NLLs at the (detached) output.

    The squared parameter gradients, summed over the K vectors, give the wanted Fisher.

    >>> _output_vectors(torch.zeros(1, 2), torch.tensor([0]), "classification", "empirical")
    tensor([[[-0.5000,  0.5000]]])
    >>> _output_vectors(torch.zeros(1, 2), torch.tensor([0]), "classification", "exact").pow(2).sum(0)
    tensor([[0.2500, 0.2500]])
    """
    if task == "classification":
        if out.ndim != 2:
            raise FisherError(f"a classifier must output logits of shape (N, classes), got {tuple(out.shape)}")
        probs = out.softmax(-1)
        if variant == "empirical":
            # a comparison, not F.one_hot: it also works under vmap (the fallback)
            onehot = (torch.arange(out.shape[-1], device=y.device) == y.unsqueeze(-1)).to(probs.dtype)
            return (probs - onehot).unsqueeze(0)
        eye = torch.eye(out.shape[-1], dtype=probs.dtype, device=probs.device)
        # v_c = sqrt(p_c) * (p - e_c): sum_c v_c v_c^T = diag(p) - p p^T, the softmax NLL Hessian
        return probs.sqrt().T.unsqueeze(-1) * (probs.unsqueeze(0) - eye.unsqueeze(1))
    if variant == "empirical":
        return (out - _as_output(y, out)).unsqueeze(0)
    per_sample = out[0].numel()
    eye = torch.eye(per_sample, dtype=out.dtype, device=out.device)
    return eye.unsqueeze(1).expand(per_sample, out.shape[0], per_sample).reshape(per_sample, *out.shape)


# --------------------------------------------------------------------------- the identity path


@dataclass
class _Plan:
    """Which modules go through the hook identities, which parameters through torch.func."""

    layers: dict[nn.Module, dict[str, str]] = field(default_factory=dict)  # module -> {"weight": full name}
    fallback: list[str] = field(default_factory=list)


def _plan(model: nn.Module, params: dict[str, nn.Parameter]) -> _Plan:
    """Split trainable parameters between the identity path and the torch.func fallback."""
    owners: dict[int, int] = {}
    for _, module in model.named_modules(remove_duplicate=False):
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    by_id = {id(p): name for name, p in params.items()}
    plan = _Plan()
    for _, module in model.named_modules():
        own = {local: p for local, p in module.named_parameters(recurse=False) if id(p) in by_id}
        if not own:
            continue
        if _supported(module) and all(owners[id(p)] == 1 for p in own.values()):
            plan.layers[module] = {local: by_id[id(p)] for local, p in own.items()}
        else:
            plan.fallback.extend(by_id[id(p)] for p in own.values())
    # a parameter owned by several modules (tied weights) must be handled once, by the fallback
    plan.fallback = list(dict.fromkeys(plan.fallback))
    return plan


def _supported(module: nn.Module) -> bool:
    if type(module) is nn.Linear:
        return True
    if type(module) is nn.Conv1d:
        return module.padding_mode == "zeros" and not isinstance(module.padding, str)
    return False


@dataclass
class _Call:
    """One call of a layer: its input, prepared once (see :func:`_prepare`), and its output."""

    inputs: Tensor
    output: Tensor
    flat: bool  # the input was (N, features): the (g**2).T @ (a**2) identity applies


def _accumulate_hooked(
    model: nn.Module, plan: _Plan, x: Tensor, y: Tensor, task: str, variant: str, total: dict[str, Tensor]
) -> None:
    """One forward with hooks, K backward passes to the layer outputs, identities per layer."""
    calls: dict[nn.Module, list[_Call]] = {m: [] for m in plan.layers}

    def record(module: nn.Module, args: tuple[Tensor, ...], output: Tensor) -> Tensor:
        a = args[0]
        if a.ndim < 2 or a.shape[0] != x.shape[0] or output.shape[0] != x.shape[0]:
            raise FisherError(f"layer {type(module).__name__} did not see the batch as its first dimension")
        # copies both ways: a later in-place op (ReLU(inplace=True), often on a view of the output)
        # must neither change the input we saw nor rebase the output we differentiate against
        calls[module].append(_Call(_prepare(module, a.detach()), output, a.ndim == 2))
        return output.clone()

    handles = [m.register_forward_hook(record) for m in plan.layers]
    try:
        out = model(x)
    finally:
        for handle in handles:
            handle.remove()
    for module, seen in calls.items():
        if not seen:
            raise FisherError(f"layer {type(module).__name__} with trainable parameters was not used in forward")
    vectors = _output_vectors(out.detach(), y, task, variant)
    outputs = [c.output for seen in calls.values() for c in seen]
    # Linear layers called once on (N, in): sum_k g_k**2 first, one matmul at the end
    fast = {m for m, seen in calls.items() if type(m) is nn.Linear and len(seen) == 1 and seen[0].flat}
    grad_sq: dict[nn.Module, Tensor] = {}
    for k in range(vectors.shape[0]):
        grads = torch.autograd.grad(
            out,
            outputs,
            grad_outputs=vectors[k],
            retain_graph=k < vectors.shape[0] - 1,
            allow_unused=True,
            materialize_grads=True,
        )
        pos = 0
        for module, seen in calls.items():
            outs = grads[pos : pos + len(seen)]
            pos += len(seen)
            if module in fast:
                sq = outs[0].pow(2)
                grad_sq[module] = sq if module not in grad_sq else grad_sq[module] + sq
                continue
            per_sample: dict[str, Tensor] = {}
            for call, g in zip(seen, outs, strict=True):
                for local, t in _per_sample_grads(module, call.inputs, g).items():
                    per_sample[local] = per_sample[local] + t if local in per_sample else t
            for local, full in plan.layers[module].items():
                total[full].add_(per_sample[local].pow(2).sum(0))
    for module, sq in grad_sq.items():
        names = plan.layers[module]
        if "weight" in names:
            total[names["weight"]].add_(sq.T @ calls[module][0].inputs[:, 0].pow(2))
        if "bias" in names:
            total[names["bias"]].add_(sq.sum(0))


def _prepare(module: nn.Module, a: Tensor) -> Tensor:
    """A layer input in the form its per-sample gradients need, as a new tensor.

    Linear: ``(N, positions, in)``. Conv1d: the unfolded input ``(N, groups, C_in/groups * k, positions)``,
    computed once per forward rather than once per backward vector.
    """
    n = a.shape[0]
    if isinstance(module, nn.Linear):
        return a.reshape(n, -1, a.shape[-1]).clone()
    assert isinstance(module, nn.Conv1d)
    (k,), (d,), (p,), (s,) = module.kernel_size, module.dilation, module.padding, module.stride
    # a strided window view, then one copy (contiguous, for BLAS): several times faster than F.unfold on CPU
    windows = F.pad(a, (p, p)).unfold(2, (k - 1) * d + 1, s)[..., ::d]  # (N, C_in, P, k)
    return windows.permute(0, 1, 3, 2).reshape(n, module.groups, -1, windows.shape[2]).contiguous()


def _per_sample_grads(module: nn.Module, prepared: Tensor, g: Tensor) -> dict[str, Tensor]:
    """Per-sample ``{"weight": (N, *w.shape), "bias": (N, *b.shape)}`` from prepared input and output gradient."""
    n = prepared.shape[0]
    if isinstance(module, nn.Linear):
        g3 = g.reshape(n, -1, g.shape[-1])
        return {"weight": torch.bmm(g3.transpose(1, 2), prepared), "bias": g3.sum(1)}
    g4 = g.reshape(n, prepared.shape[1], -1, g.shape[-1])  # (N, G, C_out/G, P)
    # batched matmul over (N, G): about twice as fast as the equivalent einsum on CPU
    weight = torch.matmul(g4, prepared.transpose(-1, -2)).reshape(n, *module.weight.shape)
    return {"weight": weight, "bias": g.sum(-1)}


# --------------------------------------------------------------------------- the torch.func fallback


def _accumulate_vmapped(
    model: nn.Module,
    params: dict[str, nn.Parameter],
    names: list[str],
    x: Tensor,
    y: Tensor,
    task: str,
    variant: str,
    total: dict[str, Tensor],
) -> None:
    """Per-sample VJPs with ``vmap`` for the parameters of layers without an identity."""
    wanted = {name: params[name].detach() for name in names}
    wanted_ids = {id(params[name]) for name in names}
    # every other name, tied aliases of the wanted parameters excepted (functional_call ties them)
    fixed = {name: p.detach() for name, p in model.named_parameters(remove_duplicate=False) if id(p) not in wanted_ids}
    fixed.update(dict(model.named_buffers(remove_duplicate=False)))

    def one(prm: dict[str, Tensor], xi: Tensor, yi: Tensor) -> dict[str, Tensor]:
        def forward(q: dict[str, Tensor]) -> Tensor:
            return functional_call(model, (q, fixed), (xi.unsqueeze(0),))

        out, pullback = vjp(forward, prm)
        vectors = _output_vectors(out.detach(), yi.unsqueeze(0), task, variant)
        (grads,) = vmap(pullback)(vectors)
        return {name: g.pow(2).sum(0) for name, g in grads.items()}

    squares = vmap(one, in_dims=(None, 0, 0))(wanted, x, y)
    for name, sq in squares.items():
        total[name].add_(sq.sum(0))
