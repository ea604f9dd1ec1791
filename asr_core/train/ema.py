"""Exponential moving average of model weights (DLE QuartzNet/Jasper: decay 0.999).

After every optimizer update: ``shadow = decay * shadow + (1 - decay) * current``.
The shadow is a copy of the model taken at construction (as DLE's
``copy.deepcopy(model)``), its half-precision tensors promoted to fp32 so that
many small increments are not rounded away.

Buffers: DLE averages the whole ``state_dict``, so BatchNorm running means and
variances are averaged like the weights; that is the default here
(``buffers="average"``). ``buffers="copy"`` instead takes the model's current
statistics at each update. Integer buffers (``num_batches_tracked``) are always
copied (DLE's arithmetic on them truncated to an integer anyway).

DDP / DataParallel / torch.compile wrappers are unwrapped, so the shadow and the
saved EMA weights carry the plain module's keys. The update is two ``_foreach``
calls over all tensors (one kernel launch per op group on GPU).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import nn

from asr_core.train.optim import unwrap_model

_HALF = (torch.float16, torch.bfloat16)


def _named_tensors(module: nn.Module) -> list[tuple[str, torch.Tensor]]:
    return list(module.named_parameters()) + list(module.named_buffers())


class EMA:
    """EMA of ``model``'s parameters and buffers.

    Args:
        model: the module being trained (wrapped or not).
        decay: weight of the old average per update, in [0, 1].
        buffers: ``"average"`` (DLE) or ``"copy"`` for floating-point buffers.
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, buffers: str = "average"):
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"EMA decay must be in [0, 1], got {decay}")
        if buffers not in ("average", "copy"):
            raise ValueError(f"EMA buffers must be 'average' or 'copy', got {buffers!r}")
        self.decay = decay
        self.buffers = buffers
        self.num_updates = 0
        shadow = copy.deepcopy(unwrap_model(model))
        shadow._apply(lambda t: t.float() if t.dtype in _HALF else t)
        shadow.requires_grad_(False)
        self.shadow = shadow
        self._names = [n for n, _ in _named_tensors(shadow)]
        n_params = len(list(shadow.parameters()))
        self._avg_idx, self._copy_idx = [], []
        for i, (_, t) in enumerate(_named_tensors(shadow)):
            averaged = t.is_floating_point() and (i < n_params or buffers == "average")
            (self._avg_idx if averaged else self._copy_idx).append(i)

    def _pairs(self, model: nn.Module) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        named = _named_tensors(unwrap_model(model))
        names = [n for n, _ in named]
        if names != self._names:
            missing = sorted(set(self._names) - set(names))
            extra = sorted(set(names) - set(self._names))
            raise ValueError(f"model does not match the EMA shadow: missing {missing}, unexpected {extra}")
        return [t for _, t in _named_tensors(self.shadow)], [t.detach() for _, t in named]

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Fold the model's current weights into the average; call after optimizer.step()."""
        shadow, current = self._pairs(model)
        dst = [shadow[i] for i in self._avg_idx]
        src = [
            current[i] if current[i].dtype == shadow[i].dtype else current[i].to(shadow[i].dtype) for i in self._avg_idx
        ]
        if dst and dst[0].device != src[0].device:
            raise ValueError(f"EMA shadow is on {dst[0].device}, model on {src[0].device}; call ema.to()")
        if dst and hasattr(torch, "_foreach_mul_"):
            torch._foreach_mul_(dst, self.decay)
            torch._foreach_add_(dst, src, alpha=1.0 - self.decay)
        else:  # pragma: no cover - torch without foreach ops
            for d, s in zip(dst, src):
                d.mul_(self.decay).add_(s, alpha=1.0 - self.decay)
        for i in self._copy_idx:
            shadow[i].copy_(current[i])
        self.num_updates += 1

    @torch.no_grad()
    def copy_to(self, model: nn.Module) -> None:
        """Overwrite the model's parameters and buffers with the EMA values (cast to its dtypes)."""
        shadow, current = self._pairs(model)
        for s, c in zip(shadow, current):
            c.copy_(s)

    @contextmanager
    def swapped(self, model: nn.Module) -> Iterator[nn.Module]:
        """Run the block with EMA weights in ``model``; its own weights come back afterwards.

        Holds one extra copy of the model's tensors while inside.
        """
        _, current = self._pairs(model)
        backup = [t.clone() for t in current]
        self.copy_to(model)
        try:
            yield model
        finally:
            with torch.no_grad():
                for c, b in zip(current, backup):
                    c.copy_(b)

    def ema_model(self) -> nn.Module:
        """A standalone copy of the averaged module (fp32), e.g. for saving or export."""
        return copy.deepcopy(self.shadow)

    def to(self, device) -> EMA:
        self.shadow.to(device)
        return self

    def state_dict(self) -> dict:
        """Tensors are references, as in nn.Module.state_dict: save before the next update."""
        return {
            "decay": self.decay,
            "buffers": self.buffers,
            "num_updates": self.num_updates,
            "shadow": self.shadow.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        for k in ("decay", "buffers"):
            if state[k] != getattr(self, k):
                raise ValueError(f"checkpoint EMA {k}={state[k]!r} but this EMA has {getattr(self, k)!r}")
        self.shadow.load_state_dict(state["shadow"])
        self.num_updates = int(state["num_updates"])
