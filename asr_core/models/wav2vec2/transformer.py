"""The context network: conv positional embedding and a Transformer, plain or Hourglass.

    B: batch, T: frames, D: ``embed_dim``, H: heads.

Module names follow fairseq's ``TransformerEncoder`` (``pos_conv.0``, ``layers.<i>.self_attn.
{q,k,v,out}_proj``, ``self_attn_layer_norm``, ``fc1``, ``fc2``, ``final_layer_norm``,
``layer_norm``) so that fairseq weights load by a few prefix renames (``fairseq.py``).

Padding: frames at t >= length are zeroed before the positional conv (an utterance alone is
zero-padded by the conv itself, so valid frames see the same inputs either way), and masked
as attention keys. The Hourglass shortening averages each group of ``factor`` frames over its
valid frames only, and the shortened lengths are ``ceil(length / factor)``: outputs stay
independent of the batch an utterance is in.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

from asr_core.models.wav2vec2.config import parse_hourglass
from asr_core.models.wav2vec2.frontend import length_mask


class SelfAttention(nn.Module):
    """Multi-head self-attention with a key padding mask (fairseq ``MultiheadAttention`` weights)."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = (nn.Linear(dim, dim) for _ in range(4))
        # initialised by TransformerEncoder: fairseq's init_bert_params, N(0, 0.02), overrides
        # MultiheadAttention's own xavier init in wav2vec 2.0

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        """x: (B, T, D); valid: (B, T) bool, True on real frames."""
        B, T, D = x.shape
        q, k, v = (p(x).view(B, T, self.heads, D // self.heads).transpose(1, 2)
                   for p in (self.q_proj, self.k_proj, self.v_proj))
        mask = valid[:, None, None, :]  # (B, 1, 1, T): keys
        p = self.dropout if self.training else 0.0
        if torch.onnx.is_in_onnx_export():  # plain ops: every exporter and runtime has them
            scores = (q @ k.transpose(-1, -2)) / math.sqrt(D // self.heads)
            y = scores.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        else:
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        return self.out_proj(y.transpose(1, 2).reshape(B, T, D))


class TransformerLayer(nn.Module):
    """fairseq ``TransformerSentenceEncoderLayer``: post-LN (Base) or pre-LN (``layer_norm_first``)."""

    def __init__(self, dim: int, ffn: int, heads: int, dropout: float, attention_dropout: float,
                 activation_dropout: float, layer_norm_first: bool) -> None:
        super().__init__()
        self.self_attn = SelfAttention(dim, heads, attention_dropout)
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1, self.fc2 = nn.Linear(dim, ffn), nn.Linear(ffn, dim)
        self.final_layer_norm = nn.LayerNorm(dim)
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(p) for p in (dropout, activation_dropout, dropout))
        self.layer_norm_first = layer_norm_first

    def _ffn(self, x: torch.Tensor) -> torch.Tensor:
        return self.dropout3(self.fc2(self.dropout2(F.gelu(self.fc1(x)))))

    def forward(self, x: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        if self.layer_norm_first:
            x = x + self.dropout1(self.self_attn(self.self_attn_layer_norm(x), valid))
            return x + self._ffn(self.final_layer_norm(x))
        x = self.self_attn_layer_norm(x + self.dropout1(self.self_attn(x, valid)))
        return self.final_layer_norm(x + self._ffn(x))


def positional_conv(dim: int, kernel: int, groups: int) -> nn.Conv1d:
    """fairseq's ``pos_conv.0``: a grouped conv (kernel K, padding K // 2) with weight norm over
    the kernel axis, here torch's parametrisation (``parametrizations.weight.original0/1`` for
    fairseq's ``weight_g`` / ``weight_v``). fairseq follows it with ``SamePad`` (drop the extra
    frame of an even kernel) and GELU: :meth:`TransformerEncoder._pos`."""
    conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2, groups=groups)
    nn.init.normal_(conv.weight, mean=0, std=math.sqrt(4 / (kernel * dim)))  # fairseq's init (dropout 0)
    nn.init.zeros_(conv.bias)
    return weight_norm(conv, name="weight", dim=2)


def shorten(x: torch.Tensor, lens: torch.Tensor, factor: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Average-pool time by ``factor`` over the valid frames: (B, T, D) -> (B, ceil(T/f), D)."""
    B, T, D = x.shape
    keep = (T + factor - 1) // factor * factor  # pad by factor - 1, then cut: symbolic under torch.onnx
    valid = length_mask(lens, T).to(x.dtype)[:, :, None]
    xs = F.pad(x * valid, (0, 0, 0, factor - 1))[:, :keep].reshape(B, -1, factor, D).sum(2)
    n = F.pad(valid, (0, 0, 0, factor - 1))[:, :keep].reshape(B, -1, factor, 1).sum(2)
    lens_s = torch.div(lens + factor - 1, factor, rounding_mode="floor")
    return xs / n.clamp(min=1), lens_s


def upsample(x: torch.Tensor, factor: int, length: int) -> torch.Tensor:
    """Repeat every frame ``factor`` times: (B, T', D) -> (B, length, D)."""
    return x.repeat_interleave(factor, dim=1)[:, :length]


class TransformerEncoder(nn.Module):
    """``(x (B, T, D), lens) -> (B, T, D)``: positional conv, layer norm, then the layers.

    ``hourglass``: the layer plan (``config.parse_hourglass``); stages with factor f > 1 run at
    T / f frames between an average-pool and a repeat, with the stage's input added back as a
    residual. The layers are ``layers.0 .. layers.<N-1>`` either way (same parameters).
    ``layerdrop``: in training each layer is skipped with this probability (fairseq; one draw
    per layer and batch from the global RNG).
    """

    def __init__(self, dim: int, num_layers: int, ffn: int, heads: int, *, pos_conv_kernel: int,
                 pos_conv_groups: int, dropout: float, attention_dropout: float, activation_dropout: float,
                 layer_norm_first: bool, layerdrop: float, hourglass: str | None = None) -> None:
        super().__init__()
        self.pos_conv = nn.ModuleList([positional_conv(dim, pos_conv_kernel, pos_conv_groups)])
        self._pos_remove = 1 if pos_conv_kernel % 2 == 0 else 0
        self.layer_norm = nn.LayerNorm(dim)
        self.layers = nn.ModuleList(
            TransformerLayer(dim, ffn, heads, dropout, attention_dropout, activation_dropout, layer_norm_first)
            for _ in range(num_layers))
        self.dropout = nn.Dropout(dropout)
        self.layer_norm_first, self.layerdrop = layer_norm_first, layerdrop
        self.stages = parse_hourglass(hourglass, num_layers)
        for m in self.layers.modules():  # fairseq: TransformerEncoder.apply(init_bert_params)
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, mean=0.0, std=0.02)
                nn.init.zeros_(m.bias)

    def _pos(self, x: torch.Tensor) -> torch.Tensor:
        y = self.pos_conv[0](x.transpose(1, 2))
        if self._pos_remove:
            y = y[:, :, : -self._pos_remove]
        return F.gelu(y).transpose(1, 2)

    def _run(self, x: torch.Tensor, lens: torch.Tensor, first: int, count: int) -> torch.Tensor:
        valid = length_mask(lens, x.size(1))
        for layer in self.layers[first: first + count]:
            if self.training and self.layerdrop > 0 and float(torch.rand(())) < self.layerdrop:
                continue
            x = layer(x, valid)
        return x

    def forward(self, x: torch.Tensor, lens: torch.Tensor) -> torch.Tensor:
        T = x.size(1)
        x = x * length_mask(lens, T).to(x.dtype)[:, :, None]
        x = x + self._pos(x)
        if not self.layer_norm_first:
            x = self.layer_norm(x)
        x = self.dropout(x)
        first = 0
        for count, factor in self.stages:
            if factor == 1:
                x = self._run(x, lens, first, count)
            else:
                xs, lens_s = shorten(x, lens, factor)
                x = x + upsample(self._run(xs, lens_s, first, count), factor, T)
            first += count
        if self.layer_norm_first:
            x = self.layer_norm(x)
        return x
