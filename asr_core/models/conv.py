"""Masked 1-D convolution building blocks shared by QuartzNet and Jasper.

The layer structure and names follow NVIDIA DeepLearningExamples (DLE)
``quartznet/model.py`` so that DLE state dicts load unchanged and NeMo's map with
``nemo_keys``. A block ``encoder.layers.<i>`` holds::

    mconv  flat ModuleList of sub-blocks:
           separable: [depthwise, pointwise, BN, ReLU, Dropout] * (R - 1) + [depthwise, pointwise, BN]
           plain:     [conv, BN, ReLU, Dropout] * (R - 1) + [conv, BN]
    res    one [1x1 conv, BN] branch per residual input (None without residual)
    mout   [ReLU, Dropout], applied after the residual sum

Every convolution zeroes the padded frames of its input first (in eval mode only
those with a kernel wider than 1), so a padded utterance gives the same valid
outputs as the utterance alone, whatever the padding holds. Inside this module tensors are channel-first, (B, C, T).

Export layout: while ``torch.onnx`` traces, the encoder runs every convolution as a 2-D one on
(B, C, 1, T) (the same weights, viewed (O, I, 1, k)), and squeezes back at its output. The numbers
are the same; the reason is OpenVINO's CPU plugin, which runs a 2-D depthwise convolution with its
brgemm kernel and a 1-D one with an older kernel about twice as slow (QuartzNet 15x5, batch 1 x 7 s:
depthwise 17.8 -> 8.7 ms, the whole net ~88x -> ~103x real time in fp32; README, "Benchmark").
Eager PyTorch keeps the 1-D path (it turns conv1d into conv2d itself).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from asr_core.models.encoder import Encoder

BN_EPS = 1e-3  # DLE/NeMo BatchNorm1d(eps=1e-3, momentum=0.1)


def sequence_mask(lens: torch.Tensor, max_len: int) -> torch.Tensor:
    """(B, max_len) bool, True on valid frames ``t < lens[b]``."""
    return torch.arange(max_len, device=lens.device) < lens.unsqueeze(1)


class MaskedConv1d(nn.Conv1d):
    """``nn.Conv1d`` that zeroes frames ``t >= x_lens`` before convolving.

    Subclassing (as DLE does, not wrapping as NeMo does) keeps the parameter at
    ``<name>.weight``; ``nemo_keys`` adds/removes NeMo's ``.conv`` infix.
    Bias is off by default: every conv is followed by BatchNorm.
    """

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C_in, T), x_lens: (B,) -> y: (B, C_out, T_out), y_lens: (B,).

        x may also be (B, C_in, 1, T) (the export layout, see the module docstring): y is then
        (B, C_out, 1, T_out).
        """
        # masked_fill, not a multiply: NaN/inf in padding must not leak either. In eval mode a 1x1
        # conv skips it: each output frame depends on its own input frame only, so the valid frames
        # are the same either way (padded ones are undefined anyway); in training BatchNorm's batch
        # statistics see the padded frames, so they stay zero there, as in DLE.
        if self.training or self.kernel_size[0] > 1:
            mask = sequence_mask(x_lens, x.size(-1)).unsqueeze(1)
            x = x.masked_fill(~(mask if x.dim() == 3 else mask.unsqueeze(1)), 0.0)
        if x.dim() == 4:
            y = F.conv2d(x, self.weight.unsqueeze(2), self.bias, (1, self.stride[0]), (0, self.padding[0]),
                         (1, self.dilation[0]), self.groups)
            return y, self.output_lengths(x_lens)
        return super().forward(x), self.output_lengths(x_lens)

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        (k,), (s,), (d,), (p,) = self.kernel_size, self.stride, self.dilation, self.padding
        if s == 1 and 2 * p == d * (k - 1):
            return x_lens  # 'same' padding: no ops in the exported graph
        # floor, not trunc: a zero-length input must give zero output frames
        return torch.div(x_lens + 2 * p - d * (k - 1) - 1, s, rounding_mode="floor") + 1


def same_padding(kernel: int, stride: int, dilation: int) -> int:
    if kernel % 2 == 0:
        raise ValueError(f"kernel must be odd for 'same' padding, got {kernel}")
    if stride > 1 and dilation > 1:
        raise ValueError(f"only stride or dilation may exceed 1, got stride={stride} dilation={dilation}")
    return (kernel // 2) * dilation


def separable_conv(
    in_ch: int, out_ch: int, kernel: int, stride: int = 1, dilation: int = 1
) -> list[nn.Module]:
    """Time-channel separable conv: depthwise over time, then pointwise over channels."""
    pad = same_padding(kernel, stride, dilation)
    return [
        MaskedConv1d(
            in_ch, in_ch, kernel, stride=stride, padding=pad, dilation=dilation, groups=in_ch, bias=False
        ),
        MaskedConv1d(in_ch, out_ch, 1, bias=False),
    ]


def sub_block(
    in_ch: int,
    out_ch: int,
    kernel: int,
    *,
    stride: int = 1,
    dilation: int = 1,
    separable: bool,
    dropout: float,
    activate: bool = True,
) -> list[nn.Module]:
    """conv (separable or plain) -> BatchNorm -> [ReLU -> Dropout].

    The block's last sub-block is built with ``activate=False``: its ReLU and
    dropout (the block's ``mout``) come after the residual is added.
    """
    if separable:
        layers = separable_conv(in_ch, out_ch, kernel, stride, dilation)
    else:
        pad = same_padding(kernel, stride, dilation)
        layers = [
            MaskedConv1d(in_ch, out_ch, kernel, stride=stride, padding=pad, dilation=dilation, bias=False)
        ]
    layers.append(nn.BatchNorm1d(out_ch, eps=BN_EPS, momentum=0.1))
    if activate:
        layers += [nn.ReLU(), nn.Dropout(dropout)]
    return layers


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    """One encoder block, one entry of DLE's ``encoder.blocks`` list.

    residual: a 1x1 conv + BN of the block input is added before the last ReLU.
    dense:    (Jasper DR) the inputs of this and of every earlier dense block are
              added, each through its own 1x1 conv + BN. Implies ``residual``.
    """

    channels: int
    kernel: int
    sub_blocks: int = 1  # R
    stride: int = 1
    dilation: int = 1
    dropout: float = 0.0
    separable: bool = False
    residual: bool = False
    dense: bool = False

    def __post_init__(self) -> None:
        if self.sub_blocks < 1 or self.channels < 1:
            raise ValueError(f"sub_blocks and channels must be >= 1: {self}")
        if (self.residual or self.dense) and self.stride != 1:
            raise ValueError(f"a residual block cannot stride (the residual is not strided): {self}")


class ConvBlock(nn.Module):
    """R sub-blocks plus residual branches; see the module docstring for names."""

    def __init__(self, in_ch: int, spec: BlockSpec, residual_channels: Sequence[int] = ()) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_ch
        for i in range(spec.sub_blocks):
            layers += sub_block(
                ch,
                spec.channels,
                spec.kernel,
                stride=spec.stride,
                dilation=spec.dilation,
                separable=spec.separable,
                dropout=spec.dropout,
                activate=i < spec.sub_blocks - 1,
            )
            ch = spec.channels
        self.mconv = nn.ModuleList(layers)
        self.res = (
            nn.ModuleList(
                nn.ModuleList(
                    [MaskedConv1d(c, spec.channels, 1, bias=False), nn.BatchNorm1d(spec.channels, eps=BN_EPS)]
                )
                for c in residual_channels
            )
            if residual_channels
            else None
        )
        self.mout = nn.Sequential(nn.ReLU(), nn.Dropout(spec.dropout))

    def forward(
        self, x: torch.Tensor, x_lens: torch.Tensor, residuals: Sequence[torch.Tensor] = ()
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, C_in, T); residuals: one (B, C_r, T) per branch -> (B, C, T'), (B,)."""
        n_res = 0 if self.res is None else len(self.res)
        assert len(residuals) == n_res, (len(residuals), n_res)
        y, y_lens = x, x_lens
        for layer in self.mconv:
            if isinstance(layer, MaskedConv1d):
                y, y_lens = layer(y, y_lens)
            else:
                y = _apply(layer, y)
        if self.res is not None:
            for (conv, bn), r in zip(self.res, residuals):
                y = y + _apply(bn, conv(r, x_lens)[0])
        return self.mout(y), y_lens

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        for layer in self.mconv:
            if isinstance(layer, MaskedConv1d):
                x_lens = layer.output_lengths(x_lens)
        return x_lens


def _apply(layer: nn.Module, y: torch.Tensor) -> torch.Tensor:
    """``layer(y)``; BatchNorm1d in eval mode also takes the (B, C, 1, T) export layout."""
    if y.dim() == 4 and isinstance(layer, nn.BatchNorm1d):
        if layer.training:
            raise RuntimeError("the (B, C, 1, T) export layout is for eval mode only")
        return F.batch_norm(y, layer.running_mean, layer.running_var, layer.weight, layer.bias, False, 0.0, layer.eps)
    return layer(y)


class ConvEncoder(Encoder):
    """Jasper-family encoder (Jasper, Jasper DR, QuartzNet): a stack of ``ConvBlock``.

    Built from a list of ``BlockSpec`` by the family builders in ``quartznet.py``
    and ``jasper.py``. Input (B, F, T) features, output (B, T', D).
    """

    export_layout = False  # True: run the (B, C, 1, T) export layout in eager mode too (tests)

    def __init__(self, in_features: int, specs: Sequence[BlockSpec]) -> None:
        super().__init__()
        if not specs:
            raise ValueError("an encoder needs at least one block")
        dense = [s.dense for s in specs]
        idx = [i for i, d in enumerate(dense) if d]
        if idx and idx != list(range(idx[0], idx[-1] + 1)):
            raise ValueError(f"dense blocks must be consecutive, got dense={dense}")
        self.in_features = in_features
        self.layers = nn.ModuleList()
        dense_channels: list[int] = []  # input channels of the dense blocks so far
        ch = in_features
        for spec in specs:
            if spec.dense:
                dense_channels.append(ch)
                res_channels: list[int] = list(dense_channels)
            else:
                res_channels = [ch] if spec.residual else []
            self.layers.append(ConvBlock(ch, spec, res_channels))
            ch = spec.channels
        self._dense = tuple(dense)
        self.output_dim = ch
        self.subsampling = math.prod(s.stride for s in specs)
        init_weights(self)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """x: (B, F, T), x_lens: (B,) -> y: (B, T', D), y_lens: (B,)."""
        if not torch.jit.is_tracing():  # shape checks would be baked into an ONNX trace as constants
            assert x.ndim == 3 and x.shape[1] == self.in_features, (x.shape, self.in_features)
        export_layout = self.export_layout or torch.onnx.is_in_onnx_export()
        if export_layout:
            x = x.unsqueeze(2)  # (B, F, 1, T): see the module docstring
        dense_inputs: list[torch.Tensor] = []
        for block, is_dense in zip(self.layers, self._dense):
            if is_dense:
                dense_inputs.append(x)
                residuals: list[torch.Tensor] = dense_inputs
            else:
                residuals = [x] if block.res is not None else []
            x, x_lens = block(x, x_lens, residuals)
        if export_layout:
            x = x.squeeze(2)
        return x.transpose(1, 2), x_lens

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        for block in self.layers:
            x_lens = block.output_lengths(x_lens)
        return x_lens


def init_weights(module: nn.Module) -> None:
    """DLE's ``init='xavier_uniform'``: conv weights xavier-uniform, BN weight 1 / bias 0."""
    for m in module.modules():
        if isinstance(m, nn.Conv1d):
            nn.init.xavier_uniform_(m.weight, gain=1.0)
        elif isinstance(m, nn.BatchNorm1d):
            m.reset_parameters()
