"""Numeric precision of a training run: fp32, bf16 autocast, fp16 autocast with loss scaling.

============  =======================================  ==========================================
precision     CPU                                      CUDA
============  =======================================  ==========================================
``fp32``      plain fp32                               fp32; TF32 matmuls/convs when ``tf32``
``bf16``      ``torch.autocast("cpu", bfloat16)``      ``torch.autocast("cuda", bfloat16)``
``fp16``      refused (no loss scaling on CPU here)    ``torch.autocast("cuda", float16)`` with a
                                                       ``torch.amp.GradScaler``
``auto``      bf16 where the CPU computes it natively   bf16 where the GPU supports it, else fp32
              (oneDNN: AVX-512 BF16 or AMX), else fp32
============  =======================================  ==========================================

``auto`` is the defaults' choice: bf16 autocast on a CPU without native bf16 runs every op through
conversions and is an order of magnitude slower than fp32 (11 against ~150 audio s/s for the default
QuartzNet on a 2-core AVX2 EPYC), so a time-capped recipe would train a fraction of its steps.
``bf16`` asks for bf16 whatever the hardware.

Weights, optimizer state and gradients stay fp32 in every mode (autocast casts per op);
bf16 keeps fp32's exponent range, so it needs no loss scaling. fp16 does: the scaler
multiplies the loss before ``backward``, unscales the gradients before clipping and skips
the optimizer step (halving the scale) when they overflowed. Its state (the scale and
the growth tracker) goes into checkpoints so a resumed fp16 run continues with the same
scale. TF32 is a CUDA-only switch (fp32 matmuls on tensor cores, ~10-bit mantissa).
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any

import torch

PRECISIONS = ("fp32", "bf16", "fp16", "auto")


def native_bf16(device: str | torch.device) -> bool:
    """Whether ``device`` computes bf16 natively (CPU: oneDNN's bf16 kernels; CUDA: Ampere and later)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - a build without oneDNN
        return False


def resolve_precision(precision: str, device: str | torch.device) -> str:
    """``auto`` -> ``bf16`` or ``fp32`` for ``device``; any other value unchanged."""
    if precision != "auto":
        return precision
    return "bf16" if native_bf16(device) else "fp32"


def set_tf32(enabled: bool) -> None:
    """Allow (or forbid) TF32 for fp32 matmuls and cuDNN convolutions on CUDA."""
    mode = "tf32" if enabled else "ieee"
    try:  # torch >= 2.9: the per-backend precision API (mixing it with allow_tf32 is refused)
        torch.backends.cuda.matmul.fp32_precision = mode
        torch.backends.cudnn.conv.fp32_precision = mode
    except AttributeError:  # pragma: no cover - older torch
        torch.backends.cuda.matmul.allow_tf32 = enabled
        torch.backends.cudnn.allow_tf32 = enabled


class Precision:
    """Autocast context, loss scaling and TF32 for one device.

    Usage in a loop::

        with prec.autocast():
            loss = model(...)
        prec.backward(loss)
        prec.unscale_(optimizer)      # fp16: before clipping or reading the gradients
        norm = prec.clip_(model.parameters(), clip_norm)
        prec.step(optimizer)          # skipped by the scaler on overflow (fp16)
    """

    def __init__(self, precision: str = "fp32", device: str | torch.device = "cpu", tf32: bool = False) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {list(PRECISIONS)}, got {precision!r}")
        self.device = torch.device(device)
        self.requested = precision
        precision = self.precision = resolve_precision(precision, self.device)
        kind = self.device.type
        if precision == "fp16" and kind != "cuda":
            raise ValueError(
                f"precision 'fp16' needs a CUDA device (loss scaling with torch.amp.GradScaler); "
                f"got device {self.device}. Use 'bf16' (autocast on CPU and GPU) or 'fp32'."
            )
        if tf32 and kind != "cuda":
            tf32 = False  # TF32 is a tensor-core format: nothing to switch on the CPU
        if kind == "cuda":
            set_tf32(tf32)
        self.tf32 = tf32
        self.dtype = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]
        self.scaler = torch.amp.GradScaler("cuda") if precision == "fp16" else None

    def autocast(self) -> contextlib.AbstractContextManager:
        """The forward-pass context: autocast for bf16/fp16, nothing for fp32."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.dtype)

    def backward(self, loss: torch.Tensor) -> None:
        (self.scaler.scale(loss) if self.scaler is not None else loss).backward()

    def unscale_(self, optimizer: torch.optim.Optimizer) -> None:
        """fp16: divide the gradients by the loss scale (once per step, before touching them)."""
        if self.scaler is not None:
            self.scaler.unscale_(optimizer)

    @staticmethod
    def clip_(parameters, max_norm: float | None) -> torch.Tensor:
        """Clip the gradient norm to ``max_norm`` (None or <= 0: measure only); returns the norm."""
        params = [p for p in parameters if p.grad is not None]
        if max_norm is not None and max_norm > 0:
            return torch.nn.utils.clip_grad_norm_(params, max_norm)
        if not params:
            return torch.zeros(())
        return torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(p.grad.float()) for p in params]))

    def step(self, optimizer: torch.optim.Optimizer) -> bool:
        """Optimizer step (through the scaler for fp16). False when the scaler skipped it."""
        if self.scaler is None:
            optimizer.step()
            return True
        before = self.scaler.get_scale()
        self.scaler.step(optimizer)
        self.scaler.update()
        return self.scaler.get_scale() >= before  # the scale drops only on a skipped (overflowed) step

    def state_dict(self) -> dict[str, Any]:
        return {"precision": self.precision, "scaler": self.scaler.state_dict() if self.scaler is not None else None}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if state.get("precision") != self.precision:
            warnings.warn(
                f"checkpoint was trained with precision {state.get('precision')!r}, this run "
                f"uses {self.precision!r}: it continues, but not as the original run would",
                stacklevel=2,
            )
        if self.scaler is not None and state.get("scaler"):
            self.scaler.load_state_dict(state["scaler"])


def flush_denormals() -> bool:
    """Flush subnormal floats to zero on the CPU (FTZ/DAZ), for this thread and every thread it starts.

    Once a transducer has learned to be confident, its LSTM backward pass meets subnormal values,
    which x86 cores compute in microcode: the backward of the CPU transducer profile took 4.5x
    longer per batch at step 500 than at initialisation (223 against 50 ms), and training fell
    from ~107 to ~65 audio s/s. The mode is per thread and inherited by threads created later,
    so call this first thing in a training process, before any op starts a thread: set only after
    the first batches, the same backward still took 103 ms. Values below ~1.2e-38 become zero: no
    effect on what a model learns. Returns whether the CPU supports it.
    """
    import torch

    return bool(torch.set_flush_denormal(True))
