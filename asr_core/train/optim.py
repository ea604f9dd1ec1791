"""Optimizers: Novograd as in NVIDIA DeepLearningExamples (DLE) / NeMo, and a builder.

Novograd (Ginsburg et al. 2019, arXiv:1905.11286) keeps Adam's first moment per
element but a *layer-wise* second moment: one scalar per parameter tensor, the
running average of the squared L2 norm of its gradient. One step, for each
parameter ``p`` with gradient ``g`` (DLE ``common/optimizers.py``, NeMo
``nemo/core/optim/novograd.py``; both are the same algorithm)::

    n   = sum(g ** 2)                                  # squared norm, a scalar
    v   = n                       if v == 0            # first step (v starts at 0)
          beta2 * v + (1 - beta2) * n   otherwise
    u   = g / (sqrt(v) + eps) + weight_decay * p       # decay added AFTER normalising
    u  *= (1 - beta1)             if grad_averaging
    m   = beta1 * m + u
    p  -= lr * m

No bias correction. With the DLE recipe betas (0.95, 0.0), ``v`` is simply this
step's squared norm. AMSGrad, if asked, normalises by the running max of ``v``.
apex ``FusedNovoGrad(bias_correction=False, reg_inside_moment=True,
grad_averaging=False)``, which DLE's QuartzNet script selects on GPU, computes the
same update in a fused kernel.

Two deliberate differences from the DLE/NeMo code, neither changing the numbers:
the gradient is not overwritten in place (DLE divides ``p.grad`` by the norm, so
anything reading grads after ``step()`` saw normalised values), and the
``v == 0`` test is a ``torch.where`` instead of a Python ``if`` on a tensor, so a
GPU step never waits on a device-to-host copy. As in DLE, the test is on the
value, not on the step count: a tensor whose gradient is exactly zero keeps
``v == 0`` and is re-initialised by its next non-zero gradient.

``build_optimizer`` follows DLE by default: QuartzNet/Jasper give
``model.parameters()`` to the optimizer, so weight decay reaches every tensor,
BatchNorm scales and biases included. ``exclude_norm_and_bias=True`` moves the
parameters owned by normalisation layers and every ``bias`` into a group with
weight decay 0 (the usual practice for AdamW on transformers; not in DLE).
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import nn
from torch.optim import Optimizer

_NORM_TYPES = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
    nn.RMSNorm,
)


class Novograd(Optimizer):
    """Novograd with layer-wise second moments, numerically as DLE/NeMo (see module doc).

    Args:
        params: parameters or parameter-group dicts.
        lr: learning rate (the schedule overwrites it every step).
        betas: (beta1 for the first moment, beta2 for the layer-wise second moment).
            DLE QuartzNet/Jasper use (0.95, 0.0); NeMo's default is (0.95, 0.98).
        eps: added to sqrt(v).
        weight_decay: L2 term added to the normalised gradient, inside the moment.
        grad_averaging: scale the normalised gradient by (1 - beta1) before the moment.
        amsgrad: normalise by the running maximum of v.

    State per parameter: ``step`` (int), ``exp_avg`` (like p), ``exp_avg_sq`` (0-dim),
    and ``max_exp_avg_sq`` (0-dim) with amsgrad.
    """

    def __init__(
        self,
        params,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.95, 0.0),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
        grad_averaging: bool = False,
        amsgrad: bool = False,
    ):
        if lr < 0.0:
            raise ValueError(f"Novograd: invalid lr {lr}")
        if eps < 0.0:
            raise ValueError(f"Novograd: invalid eps {eps}")
        if len(betas) != 2 or not all(0.0 <= b < 1.0 for b in betas):
            raise ValueError(f"Novograd: betas must be two values in [0, 1), got {betas}")
        if weight_decay < 0.0:
            raise ValueError(f"Novograd: invalid weight_decay {weight_decay}")
        defaults = dict(
            lr=lr,
            betas=tuple(betas),
            eps=eps,
            weight_decay=weight_decay,
            grad_averaging=grad_averaging,
            amsgrad=amsgrad,
        )
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure=None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()

        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if grad.is_sparse:
                    raise RuntimeError("Novograd does not support sparse gradients")

                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                    state["exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)
                    if group["amsgrad"]:
                        state["max_exp_avg_sq"] = torch.zeros((), dtype=p.dtype, device=p.device)
                state["step"] += 1
                exp_avg, exp_avg_sq = state["exp_avg"], state["exp_avg_sq"]

                norm = torch.sum(torch.pow(grad, 2))
                blended = exp_avg_sq.mul(beta2).add_(norm, alpha=1.0 - beta2)
                exp_avg_sq.copy_(torch.where(exp_avg_sq == 0, norm, blended))

                if group["amsgrad"]:
                    max_sq = state["max_exp_avg_sq"]
                    torch.max(max_sq, exp_avg_sq, out=max_sq)
                    denom = max_sq.sqrt().add_(group["eps"])
                else:
                    denom = exp_avg_sq.sqrt().add_(group["eps"])

                update = grad / denom
                if group["weight_decay"] != 0:
                    update.add_(p, alpha=group["weight_decay"])
                if group["grad_averaging"]:
                    update.mul_(1.0 - beta1)
                exp_avg.mul_(beta1).add_(update)
                p.add_(exp_avg, alpha=-group["lr"])
        return loss


def unwrap_model(model: nn.Module) -> nn.Module:
    """The module inside DistributedDataParallel / DataParallel / torch.compile wrappers."""
    while True:
        if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):  # torch.compile
            model = model._orig_mod
        else:
            return model


def weight_decay_groups(model: nn.Module, weight_decay: float, exclude_norm_and_bias: bool = False) -> list[dict]:
    """Trainable parameters of ``model`` as optimizer groups.

    Without exclusion: one group with ``weight_decay`` (DLE). With it: a decayed group
    and a group with weight decay 0 holding every ``bias`` and every parameter owned by
    a normalisation layer (BatchNorm/InstanceNorm/LayerNorm/GroupNorm/RMSNorm). Shared
    parameters appear once; frozen ones (requires_grad False) are left out.
    """
    model = unwrap_model(model)
    decay, no_decay, seen = [], [], set()
    for module in model.modules():
        is_norm = isinstance(module, _NORM_TYPES)
        for name, p in module.named_parameters(recurse=False):
            if not p.requires_grad or id(p) in seen:
                continue
            seen.add(id(p))
            if exclude_norm_and_bias and (is_norm or name == "bias"):
                no_decay.append(p)
            else:
                decay.append(p)
    if not decay and not no_decay:
        raise ValueError(f"{type(model).__name__} has no trainable parameters")
    groups = [{"params": decay, "weight_decay": weight_decay}]
    if exclude_norm_and_bias:
        groups.append({"params": no_decay, "weight_decay": 0.0})
    return [g for g in groups if g["params"]]


OPTIMIZERS = ("novograd", "adamw", "adam")


def build_optimizer(
    name: str,
    params_or_model: nn.Module | Iterable,
    lr: float,
    weight_decay: float = 0.0,
    betas: tuple[float, float] | None = None,
    eps: float | None = None,
    exclude_norm_and_bias: bool = False,
) -> Optimizer:
    """Build ``name`` over a model's trainable parameters, or over given params/groups.

    ``betas``/``eps`` left as None take the optimizer's defaults: Novograd (0.95, 0.0) and
    1e-8 (DLE QuartzNet/Jasper); Adam/AdamW torch's (0.9, 0.999) and 1e-8. The wav2vec 2.0
    recipe passes (0.9, 0.98) and 1e-6 explicitly.

    ``adam`` is torch.optim.Adam: weight decay is an L2 term added to the gradient.
    ``adamw`` decouples it. fairseq's and DLE wav2vec 2.0's "adam" (FairseqAdam, apex
    FusedAdam in its default AdamW mode) decouple the decay, so that recipe is ``adamw``
    here.

    ``exclude_norm_and_bias`` needs a model (it looks at module types); see
    :func:`weight_decay_groups`. DLE does not exclude anything.
    """
    if name not in OPTIMIZERS:
        raise ValueError(f"unknown optimizer {name!r}; known: {list(OPTIMIZERS)}")
    if isinstance(params_or_model, nn.Module):
        params = weight_decay_groups(params_or_model, weight_decay, exclude_norm_and_bias)
    else:
        if exclude_norm_and_bias:
            raise ValueError("exclude_norm_and_bias needs the model, not a parameter list")
        params = list(params_or_model)
        if not params:
            raise ValueError("no parameters to optimise")
    kw: dict = {"lr": lr, "weight_decay": weight_decay}
    if betas is not None:
        kw["betas"] = tuple(betas)
    if eps is not None:
        kw["eps"] = eps
    if name == "novograd":
        return Novograd(params, **kw)
    if name == "adamw":
        return torch.optim.AdamW(params, **kw)
    return torch.optim.Adam(params, **kw)
