"""Conformer encoder (Gulati et al. 2020): convolution subsampling, then Conformer blocks.

    B: batch, F: mel bins, T: input frames, T' = ceil(ceil(T / 2) / 2): output frames,
    D: ``d_model``, H: heads, d_k = D / H.

Front end: two Conv2d 3x3 / stride 2 / padding 1 + ReLU over (time, freq), then
Linear(C * F'' -> D) and dropout, with F'' = ceil(ceil(F / 2) / 2) (20 for 80 mels). Each
conv maps n frames to ``(n + 1) // 2``, so zero-length utterances give zero output frames and
any T >= 1 is accepted. Padded frames are zeroed before each conv, so a padded utterance sees
the same zero padding at its end as when it is alone.

Block (paper Fig. 1)::

    x = x + 1/2 FF(x)          FF: LN, Linear(D, 4D), Swish, Dropout, Linear(4D, D), Dropout
    x = x + Dropout(MHSA(LN(x)))
    x = x + Conv(x)            Conv: LN, Linear(D, 2D), GLU, depthwise Conv1d(k), BN | LN, Swish,
                                     Linear(D, D), Dropout
    x = x + 1/2 FF(x)
    x = LN(x)

Self-attention uses Transformer-XL relative positions (Dai et al. 2019, section 3.3):
``score(i, j) = (q_i + u)^T k_j + (q_i + v)^T W_R r_{i-j}``, scaled by 1/sqrt(d_k), with u, v
learned per layer and head, W_R a per-layer projection without bias, and r the sinusoidal
embedding of the distance i - j. The embeddings of the 2T' - 1 distances are computed on the
fly from ``arange`` of the actual length, so there is no maximum length and the ONNX graph has
dynamic time. The pointwise convs are Linear layers on (B, T', D) (same maths and parameters).

Padding: padded keys get the dtype's lowest finite score (exactly zero weight after softmax,
and a zero-length utterance gives finite, uniform weights rather than NaN), and the depthwise
conv's input is zeroed on padded frames. In eval mode a padded utterance's valid outputs equal
its outputs alone. In training, the conv module's BatchNorm statistics include padded frames,
as in the usual implementations.

Depthwise kernel: the paper's 32 is even; an even kernel k is padded k/2 frames on the left and
k/2 - 1 on the right (one more past frame than future), an odd one (k - 1)/2 on both sides.

Parameter counts. The paper reports 10.3 / 30.7 / 118.8 M for Conformer S / M / L as
transducers: this encoder plus a one-layer LSTM prediction network (320 units for S, 640 for M
and L) and a joint network, with no CTC head. The convention here: the project's transducer
modules at the paper's sizes, ``Predictor`` (Embedding(V, P), LSTM(P -> P), Linear(P -> P)) and
``Joint`` (Linear(D + P -> P), tanh, Linear(P -> V)), with V = 1024 word pieces (an assumption:
the paper gives no vocabulary; 512 gives -1.8 % for S, 2048 +7.8 %)::

    preset  encoder      transducer (V = 1024)  paper    without Predictor's Linear(P -> P)
    tiny     2,239,760
    s        8,713,152   10,442,816             10.3 M   10,340,096  (+1.4 % / +0.4 %)
    m       27,331,584   32,909,568             30.7 M   32,499,328  (+7.2 % / +5.9 %)
    l      115,120,128  120,861,952            118.8 M  120,451,712  (+1.7 % / +1.4 %)

The paper's decoder is described as a single LSTM layer, so the last column is the closer
reading. M is off under any vocabulary: its encoder and a 640-unit LSTM alone already make
30.6 M before the embedding and the joint, so the paper's M must differ in a detail it does not
state.
"""

from __future__ import annotations

import dataclasses
import math

import torch
import torch.nn.functional as F
from torch import nn

from asr_core.models.conv import sequence_mask
from asr_core.models.encoder import Encoder, EncoderConfig

CONV_NORMS = ("batch", "layer")


@dataclasses.dataclass(frozen=True)
class ConformerConfig(EncoderConfig):
    """Conformer encoder; defaults are the paper's Conformer-S on 80 mel bins."""

    in_features: int = 80  # mel bins per 10 ms frame
    d_model: int = 144  # D, the encoder output dim
    num_layers: int = 16
    num_heads: int = 4
    ff_expansion: int = 4  # FF hidden = ff_expansion * D
    conv_kernel: int = 32  # depthwise kernel; see the module docstring for even kernels
    subsampling_channels: int = 144  # C of both subsampling convs
    dropout: float = 0.1  # front end, FF, attention output, conv module
    attention_dropout: float = 0.1  # on the attention weights
    conv_norm: str = "batch"  # "batch" (paper) or "layer" (no batch statistics)

    def __post_init__(self) -> None:
        for name in (
            "in_features",
            "d_model",
            "num_layers",
            "num_heads",
            "ff_expansion",
            "conv_kernel",
            "subsampling_channels",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ConformerConfig.{name} must be an integer >= 1, got {value!r}")
        if self.d_model % self.num_heads:
            raise ValueError(f"ConformerConfig.d_model={self.d_model} must be divisible by num_heads={self.num_heads}")
        if self.d_model % 2:  # sin/cos pairs of the positional embedding
            raise ValueError(f"ConformerConfig.d_model must be even, got {self.d_model}")
        for name in ("dropout", "attention_dropout"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0.0 <= value < 1.0:
                raise ValueError(f"ConformerConfig.{name} must be in [0, 1), got {value!r}")
        if self.conv_norm not in CONV_NORMS:
            raise ValueError(f"ConformerConfig.conv_norm must be one of {CONV_NORMS}, got {self.conv_norm!r}")


def _halve(n: torch.Tensor | int) -> torch.Tensor | int:
    """Frames after a 3-wide, stride-2 conv padded by 1: floor((n - 1) / 2) + 1, 0 for n = 0."""
    return (n + 1) // 2


class ConvSubsampling(nn.Module):
    """(B, F, T) features -> (B, T', D): two 3x3 stride-2 Conv2d + ReLU, Linear, dropout."""

    def __init__(self, in_features: int, channels: int, d_model: int, dropout: float) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=2, padding=1)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=2, padding=1)
        self.proj = nn.Linear(channels * _halve(_halve(in_features)), d_model)
        self.dropout = nn.Dropout(dropout)

    @staticmethod
    def _masked(x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        """Zero the frames t >= lens of (B, C, T, F)."""
        return x.masked_fill(~sequence_mask(lens, x.size(2))[:, None, :, None], 0.0)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = self._masked(x.transpose(1, 2).unsqueeze(1), x_lens)  # (B, 1, T, F)
        lens = self.output_lengths(x_lens, 1)
        x = self._masked(F.relu(self.conv1(x)), lens)
        x = F.relu(self.conv2(x))  # padded frames here are masked by every consumer downstream
        lens = self.output_lengths(lens, 1)
        return self.dropout(self.proj(x.transpose(1, 2).flatten(2))), lens

    @staticmethod
    def output_lengths(x_lens: torch.Tensor, convs: int = 2) -> torch.Tensor:
        for _ in range(convs):
            x_lens = _halve(x_lens)
        return x_lens


def relative_positions(length: int | torch.Tensor, inv_freq: torch.Tensor) -> torch.Tensor:
    """(2 * length - 1, D) sinusoidal embeddings of the distances length - 1, ..., -(length - 1).

    ``length`` may be a traced size: only tensor ops, so the ONNX graph keeps time dynamic.
    Computed in float32 whatever the model's dtype: half precision cannot hold the angles of
    long distances.
    """
    dist = (length - 1) - torch.arange(2 * length - 1, device=inv_freq.device, dtype=torch.float32)
    angles = dist[:, None] * inv_freq.float()[None, :]
    return torch.stack([angles.sin(), angles.cos()], dim=-1).flatten(1)


def rel_shift(x: torch.Tensor, length: int | torch.Tensor) -> torch.Tensor:
    """(B, H, T, 2T - 1) scores against distances T - 1 .. -(T - 1) -> (B, H, T, T) with
    ``out[..., i, j] = x[..., i, T - 1 - i + j]`` (the score for distance i - j).

    Transformer-XL's pad-and-reshape: one zero column on the left, view as (2T, T), drop the
    first row, view back; a copy and reshapes only, no index tensor. T comes in as ``length``
    and the batch as -1: the TorchScript ONNX exporter turns the sizes of a matmul output into
    the trace's constants, which would pin batch and time in the graph.
    """
    heads = x.size(1)  # a model constant either way
    x = F.pad(x, (1, 0)).reshape(-1, heads, 2 * length, length)[:, :, 1:]
    return x.reshape(-1, heads, length, 2 * length - 1)[..., :length]


class RelPositionSelfAttention(nn.Module):
    """Multi-head self-attention with Transformer-XL relative positions and a key padding mask."""

    def __init__(self, d_model: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.d_k = heads, d_model // heads
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(d_model, d_model) for _ in range(4))
        self.pos_proj = nn.Linear(d_model, d_model, bias=False)  # W_R
        # zero start: the scores begin as plain content + position terms
        self.pos_bias_u = nn.Parameter(torch.zeros(heads, self.d_k))
        self.pos_bias_v = nn.Parameter(torch.zeros(heads, self.d_k))
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D), pos: (2T - 1, D) from ``relative_positions``, valid: (B, T) bool."""
        shape = (self.heads, self.d_k)
        q = self.q_proj(x).unflatten(-1, shape)  # (B, T, H, d_k)
        k = self.k_proj(x).unflatten(-1, shape).transpose(1, 2)  # (B, H, T, d_k)
        v = self.v_proj(x).unflatten(-1, shape).transpose(1, 2)
        r = self.pos_proj(pos).unflatten(-1, shape).transpose(0, 1)  # (H, 2T - 1, d_k)
        content = (q + self.pos_bias_u).transpose(1, 2) @ k.transpose(-1, -2)
        position = rel_shift((q + self.pos_bias_v).transpose(1, 2) @ r.transpose(-1, -2), x.size(1))
        scores = (content + position) / math.sqrt(self.d_k)
        scores = scores.masked_fill(~valid[:, None, None, :], torch.finfo(scores.dtype).min)
        y = self.dropout(scores.softmax(-1)) @ v
        return self.out_proj(y.transpose(1, 2).flatten(2))


class FeedForward(nn.Sequential):
    def __init__(self, d_model: int, expansion: int, dropout: float) -> None:
        super().__init__(
            nn.LayerNorm(d_model),
            nn.Linear(d_model, expansion * d_model),
            nn.SiLU(),
            nn.Dropout(dropout),
            nn.Linear(expansion * d_model, d_model),
            nn.Dropout(dropout),
        )


class ConvModule(nn.Module):
    """LN, pointwise to 2D + GLU, masked depthwise conv, BN or LN, Swish, pointwise, dropout."""

    def __init__(self, d_model: int, kernel: int, norm: str, dropout: float) -> None:
        super().__init__()
        self.layer_norm = nn.LayerNorm(d_model)
        self.pointwise1 = nn.Linear(d_model, 2 * d_model)
        self.depthwise = nn.Conv1d(d_model, d_model, kernel, groups=d_model)
        self.padding = (kernel // 2, (kernel - 1) // 2)  # (past, future) frames
        self.norm = nn.BatchNorm1d(d_model) if norm == "batch" else nn.LayerNorm(d_model)
        self.pointwise2 = nn.Linear(d_model, d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D), valid: (B, T) bool -> (B, T, D)."""
        y = F.glu(self.pointwise1(self.layer_norm(x)), dim=-1)
        # masked_fill, not a multiply: NaN/inf on padded frames must not leak either
        y = y.masked_fill(~valid[:, :, None], 0.0).transpose(1, 2)  # (B, D, T)
        y = self.depthwise(F.pad(y, self.padding))
        if isinstance(self.norm, nn.BatchNorm1d):
            y = self.norm(y).transpose(1, 2)
        else:
            y = self.norm(y.transpose(1, 2))
        return self.dropout(self.pointwise2(F.silu(y)))


class ConformerBlock(nn.Module):
    def __init__(self, cfg: ConformerConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.ff1 = FeedForward(d, cfg.ff_expansion, cfg.dropout)
        self.attn_norm = nn.LayerNorm(d)
        self.attn = RelPositionSelfAttention(d, cfg.num_heads, cfg.attention_dropout)
        self.attn_dropout = nn.Dropout(cfg.dropout)
        self.conv = ConvModule(d, cfg.conv_kernel, cfg.conv_norm, cfg.dropout)
        self.ff2 = FeedForward(d, cfg.ff_expansion, cfg.dropout)
        self.out_norm = nn.LayerNorm(d)

    def forward(self, x: torch.Tensor, pos: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        x = x + 0.5 * self.ff1(x)
        x = x + self.attn_dropout(self.attn(self.attn_norm(x), pos, valid))
        x = x + self.conv(x, valid)
        x = x + 0.5 * self.ff2(x)
        return self.out_norm(x)


class ConformerEncoder(Encoder):
    """Input (B, F, T) features and (B,) lengths, output (B, T', D) and (B,) lengths.

    Frames at t >= y_lens[b] of the output hold finite values of no meaning.
    """

    def __init__(self, config: ConformerConfig) -> None:
        super().__init__()
        self.config = config
        self.in_features = config.in_features
        self.output_dim = config.d_model
        self.subsampling = 4
        self.frontend = ConvSubsampling(config.in_features, config.subsampling_channels, config.d_model, config.dropout)
        self.layers = nn.ModuleList(ConformerBlock(config) for _ in range(config.num_layers))
        inv_freq = torch.exp(torch.arange(0, config.d_model, 2) * (-math.log(10000.0) / config.d_model))
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, F, T), x_lens: (B,) -> y: (B, T', D), y_lens: (B,)."""
        if not torch.jit.is_tracing():  # shape checks would be baked into an ONNX trace as constants
            assert x.ndim == 3 and x.shape[1] == self.in_features, (x.shape, self.in_features)
        x, lens = self.frontend(x, x_lens)
        valid = sequence_mask(lens, x.size(1))
        pos = relative_positions(x.size(1), self.inv_freq).to(x.dtype)
        for layer in self.layers:
            x = layer(x, pos, valid)
        return x, lens

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        return ConvSubsampling.output_lengths(x_lens)


def conformer_tiny(**overrides) -> ConformerConfig:
    """A CPU-sized Conformer for tests and quick runs: 4 layers of D 144, kernel 15, 64 subsampling
    channels (a 144-channel front end would cost more than all four blocks): 2,239,760 parameters."""
    return ConformerConfig(num_layers=4, conv_kernel=15, subsampling_channels=64).replace(**overrides)


def conformer_s(**overrides) -> ConformerConfig:
    """Conformer-S: 16 layers, D 144, 4 heads, kernel 32: 8,713,152 encoder parameters."""
    return ConformerConfig().replace(**overrides)


def conformer_m(**overrides) -> ConformerConfig:
    """Conformer-M: 16 layers, D 256, 4 heads, kernel 32: 27,331,584 encoder parameters."""
    return ConformerConfig(d_model=256, subsampling_channels=256).replace(**overrides)


def conformer_l(**overrides) -> ConformerConfig:
    """Conformer-L: 17 layers, D 512, 8 heads, kernel 32: 115,120,128 encoder parameters."""
    return ConformerConfig(d_model=512, num_layers=17, num_heads=8, subsampling_channels=512).replace(**overrides)


PRESETS = {"tiny": conformer_tiny, "s": conformer_s, "m": conformer_m, "l": conformer_l}
