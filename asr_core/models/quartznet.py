"""QuartzNet BxR (Kriman et al. 2020) as in DLE ``configs/quartznet15x5_*.yaml``.

    C1   separable conv, 256 ch, k33, stride 2
    B1..B5, each repeated S times, each of R sub-blocks (separable, residual):
         256/k33, 256/k39, 512/k51, 512/k63, 512/k75
    C2   separable conv, 512 ch, k87, dilation 2
    C3   conv 1024 ch, k1
    head 1x1 conv 1024 -> V

B = 5 * S blocks; 15x5: S=3, 10x5: S=2, 5x5: S=1; R=5.
``encoder.layers`` = [C1, B1 * S, ..., B5 * S, C2, C3], as DLE numbers them.
"""

from __future__ import annotations

import dataclasses

from asr_core.models.conv import BlockSpec, ConvEncoder
from asr_core.models.ctc import CTCHead, CTCModel
from asr_core.models.encoder import EncoderConfig


@dataclasses.dataclass(frozen=True)
class QuartzNetConfig(EncoderConfig):
    """QuartzNet encoder; defaults are DLE's 15x5 (``quartznet15x5_speedp-online-1.15_speca.yaml``)."""

    in_features: int = 64  # n_filt (mel bins); frame_splicing 1
    prologue_channels: int = 256  # C1
    prologue_kernel: int = 33
    prologue_stride: int = 2
    block_channels: tuple[int, ...] = (256, 256, 512, 512, 512)  # B1..B5
    block_kernels: tuple[int, ...] = (33, 39, 51, 63, 75)
    block_repeats: int = 3  # S
    sub_blocks: int = 5  # R
    epilogue_channels: int = 512  # C2
    epilogue_kernel: int = 87
    epilogue_dilation: int = 2
    output_channels: int = 1024  # C3, the encoder output dim D
    dropout: float = 0.0  # every block; DLE's "_drop0.2" config uses 0.2

    def __post_init__(self) -> None:
        if len(self.block_channels) != len(self.block_kernels):
            raise ValueError(
                f"block_channels {self.block_channels} and block_kernels {self.block_kernels} differ in length"
            )
        if self.block_repeats < 1 or self.sub_blocks < 1:
            raise ValueError(f"block_repeats and sub_blocks must be >= 1: {self}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout}")

    def block_specs(self) -> list[BlockSpec]:
        """DLE's ``encoder.blocks`` list for this config."""
        d = self.dropout
        specs = [
            BlockSpec(
                self.prologue_channels,
                self.prologue_kernel,
                stride=self.prologue_stride,
                dropout=d,
                separable=True,
            )
        ]
        for ch, k in zip(self.block_channels, self.block_kernels):
            block = BlockSpec(ch, k, sub_blocks=self.sub_blocks, dropout=d, separable=True, residual=True)
            specs += [block] * self.block_repeats
        specs.append(
            BlockSpec(
                self.epilogue_channels,
                self.epilogue_kernel,
                dilation=self.epilogue_dilation,
                dropout=d,
                separable=True,
            )
        )
        specs.append(BlockSpec(self.output_channels, 1, dropout=d))
        return specs


def quartznet_encoder(config: QuartzNetConfig) -> ConvEncoder:
    return ConvEncoder(config.in_features, config.block_specs())


def quartznet_model(config: QuartzNetConfig, num_outputs: int) -> CTCModel:
    """QuartzNet with a CTC head of ``num_outputs`` (blank last)."""
    from asr_core.models.heads import attach_head

    return attach_head("ctc", quartznet_encoder(config), num_outputs, None)


def quartznet_15x5(**overrides) -> QuartzNetConfig:
    """18.92 M parameters with 29 outputs (DLE's shipped model)."""
    return QuartzNetConfig().replace(**overrides)


def quartznet_10x5(**overrides) -> QuartzNetConfig:
    """12.82 M parameters with 29 outputs."""
    return QuartzNetConfig(block_repeats=2).replace(**overrides)


def quartznet_5x5(**overrides) -> QuartzNetConfig:
    """6.71 M parameters with 29 outputs."""
    return QuartzNetConfig(block_repeats=1).replace(**overrides)


def quartznet_tiny(**overrides) -> QuartzNetConfig:
    """A 5x3 QuartzNet at half width for tests and the default CPU pipeline: 1.27 M parameters.

    C1 128/k33/s2; B1..B5 once each with R=3 sub-blocks, 128/k33, 128/k39, 256/k51,
    256/k63, 256/k75; C2 256/k87/d2; C3 512; head 512 -> V. Same kernels, stride
    and layer names as the full model, so every code path (masking, export, key
    mapping) is exercised.
    """
    return QuartzNetConfig(
        prologue_channels=128,
        block_channels=(128, 128, 256, 256, 256),
        block_repeats=1,
        sub_blocks=3,
        epilogue_channels=256,
        output_channels=512,
    ).replace(**overrides)


PRESETS = {"5x5": quartznet_5x5, "10x5": quartznet_10x5, "15x5": quartznet_15x5, "tiny": quartznet_tiny}
