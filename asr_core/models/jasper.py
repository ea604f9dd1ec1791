"""Jasper 10x5 dense residual (Li et al. 2019) as in DLE ``configs/jasper10x5dr_*.yaml``.

    C1   conv 256 ch, k11, stride 2, dropout 0.2
    B1..B5, each repeated 2x, 5 plain-conv sub-blocks (channels/kernel/dropout):
         256/k11/0.2, 384/k13/0.2, 512/k17/0.2, 640/k21/0.3, 768/k25/0.3
    C2   conv 896 ch, k29, dilation 2, dropout 0.4
    C3   conv 1024 ch, k1, dropout 0.4
    head 1x1 conv 1024 -> V

Dense residual: the input of every block of B1..B5 is added, through its own
1x1 conv + BN, to the output of that block and of every later one (block k has k
residual branches). Parameter names follow NeMo's/DLE-QuartzNet's ``mconv``; DLE's
Jasper checkpoints call it ``conv``: load them through
``nemo_keys.dle_jasper_to_model_keys``.
"""

from __future__ import annotations

import dataclasses

from asr_core.models.conv import BlockSpec, ConvEncoder
from asr_core.models.ctc import CTCHead, CTCModel
from asr_core.models.encoder import EncoderConfig


@dataclasses.dataclass(frozen=True)
class JasperConfig(EncoderConfig):
    """Jasper encoder; defaults are DLE's 10x5 dense residual (``jasper10x5dr_speedp-online_speca.yaml``)."""

    in_features: int = 64
    prologue_channels: int = 256  # C1
    prologue_kernel: int = 11
    prologue_stride: int = 2
    prologue_dropout: float = 0.2
    block_channels: tuple[int, ...] = (256, 384, 512, 640, 768)  # B1..B5
    block_kernels: tuple[int, ...] = (11, 13, 17, 21, 25)
    block_dropouts: tuple[float, ...] = (0.2, 0.2, 0.2, 0.3, 0.3)
    block_repeats: int = 2
    sub_blocks: int = 5  # R
    dense_residual: bool = True  # False: each block only adds its own input (plain Jasper)
    epilogue_channels: int = 896  # C2
    epilogue_kernel: int = 29
    epilogue_dilation: int = 2
    epilogue_dropout: float = 0.4
    output_channels: int = 1024  # C3, the encoder output dim D
    output_dropout: float = 0.4

    def __post_init__(self) -> None:
        n = {len(self.block_channels), len(self.block_kernels), len(self.block_dropouts)}
        if len(n) != 1:
            raise ValueError(
                f"block_channels {self.block_channels}, block_kernels {self.block_kernels} and "
                f"block_dropouts {self.block_dropouts} differ in length"
            )
        if self.block_repeats < 1 or self.sub_blocks < 1:
            raise ValueError(f"block_repeats and sub_blocks must be >= 1: {self}")

    def block_specs(self) -> list[BlockSpec]:
        """DLE's ``encoder.blocks`` list for this config."""
        specs = [
            BlockSpec(
                self.prologue_channels,
                self.prologue_kernel,
                stride=self.prologue_stride,
                dropout=self.prologue_dropout,
            )
        ]
        for ch, k, p in zip(self.block_channels, self.block_kernels, self.block_dropouts):
            block = BlockSpec(
                ch, k, sub_blocks=self.sub_blocks, dropout=p, residual=True, dense=self.dense_residual
            )
            specs += [block] * self.block_repeats
        specs.append(
            BlockSpec(
                self.epilogue_channels,
                self.epilogue_kernel,
                dilation=self.epilogue_dilation,
                dropout=self.epilogue_dropout,
            )
        )
        specs.append(BlockSpec(self.output_channels, 1, dropout=self.output_dropout))
        return specs


def jasper_encoder(config: JasperConfig) -> ConvEncoder:
    return ConvEncoder(config.in_features, config.block_specs())


def jasper_model(config: JasperConfig, num_outputs: int) -> CTCModel:
    """Jasper with a CTC head of ``num_outputs`` (blank last)."""
    from asr_core.models.heads import attach_head

    return attach_head("ctc", jasper_encoder(config), num_outputs, None)


def jasper_10x5(**overrides) -> JasperConfig:
    """Jasper 10x5 DR: 332.6 M parameters with 29 outputs (DLE says 333 M)."""
    return JasperConfig().replace(**overrides)


def jasper_tiny(**overrides) -> JasperConfig:
    """A 5x2 dense-residual Jasper at 1/8 width for tests: 1.27 M parameters.

    C1 32/k11/s2; B1..B5 once each with R=2, 32/k11, 48/k13, 64/k17, 80/k21, 96/k25
    (dense residual, DLE dropouts); C2 112/k29/d2; C3 128; head 128 -> V.
    """
    return JasperConfig(
        prologue_channels=32,
        block_channels=(32, 48, 64, 80, 96),
        block_repeats=1,
        sub_blocks=2,
        epilogue_channels=112,
        output_channels=128,
    ).replace(**overrides)


PRESETS = {"10x5": jasper_10x5, "tiny": jasper_tiny}
