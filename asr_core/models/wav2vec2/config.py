"""wav2vec 2.0 configuration, presets (tiny / base / large) and the Hourglass layer plan.

Field names follow fairseq's ``Wav2Vec2Config`` where one exists (``encoder_layers`` ->
``num_layers``, ``encoder_embed_dim`` -> ``embed_dim``, ...; the fairseq import maps them in
``fairseq.py``). Defaults are the Base model of the paper / DLE (REFERENCE.md, "wav2vec 2.0").

Hourglass (DLE, Nawrot et al. 2021): ``hourglass`` is the layer plan as a string, e.g.
``"[2, (8, 4), 2]"``: 2 layers at the full frame rate, then the sequence average-pooled 4x
in time, 8 layers there, repeated back 4x (plus the pooled stage's input as a residual), then
2 layers. An int is a run of layers at the current rate, a ``(layers, factor)`` pair a
shortened stage. ``None`` is the plain Transformer (fairseq's). The plan adds no parameters,
so a checkpoint loads into either, but it only *works* with the plan it was trained with.
"""

from __future__ import annotations

import ast
import dataclasses
from typing import Any

from asr_core.models.encoder import EncoderConfig

HOURGLASS_DEFAULT = "[2, (8, 4), 2]"
EXTRACTOR_MODES = ("group_norm", "layer_norm")


def parse_hourglass(plan: str | None, num_layers: int) -> list[tuple[int, int]]:
    """``"[2, (8, 4), 2]"`` -> ``[(2, 1), (8, 4), (2, 1)]``: (layers, shortening factor) stages.

    ``None`` -> one stage of ``num_layers`` at factor 1. The layers must add up to ``num_layers``.
    """
    if plan is None:
        return [(num_layers, 1)]
    try:
        items = ast.literal_eval(plan) if isinstance(plan, str) else plan
    except (ValueError, SyntaxError) as e:
        raise ValueError(f"hourglass: cannot parse layer plan {plan!r} ({e}); e.g. {HOURGLASS_DEFAULT!r}") from None
    if not isinstance(items, (list, tuple)) or not items:
        raise ValueError(f"hourglass: the plan must be a non-empty list, got {plan!r}")
    stages: list[tuple[int, int]] = []
    for it in items:
        if isinstance(it, int) and not isinstance(it, bool) and it >= 0:
            stages.append((it, 1))
        elif (isinstance(it, (list, tuple)) and len(it) == 2 and all(isinstance(v, int) for v in it)
              and it[0] >= 0 and it[1] >= 1):
            stages.append((int(it[0]), int(it[1])))
        else:
            raise ValueError(f"hourglass: plan item {it!r} in {plan!r} is neither a layer count nor "
                             f"a (layers, factor) pair")
    total = sum(n for n, _ in stages)
    if total != num_layers:
        raise ValueError(f"hourglass: plan {plan!r} has {total} layers, the model has num_layers={num_layers}")
    return stages


@dataclasses.dataclass(frozen=True)
class Wav2Vec2Config(EncoderConfig):
    """Everything that shapes the network, its masking and its pre-training head."""

    # feature encoder: conv layers (dim, kernel, stride); 320x down-sampling (20 ms frames at 16 kHz)
    conv_dims: tuple[int, ...] = (512,) * 7
    conv_kernels: tuple[int, ...] = (10, 3, 3, 3, 3, 2, 2)
    conv_strides: tuple[int, ...] = (5, 2, 2, 2, 2, 2, 2)
    conv_bias: bool = False
    extractor_mode: str = "group_norm"  # group norm on the first layer (Base); "layer_norm": on every layer
    # Transformer
    embed_dim: int = 768
    num_layers: int = 12
    ffn_dim: int = 3072
    num_heads: int = 12
    layer_norm_first: bool = False  # pre-LN layers (fairseq's LV-60 Large); post-LN otherwise
    pos_conv_kernel: int = 128
    pos_conv_groups: int = 16
    hourglass: str | None = None  # layer plan, e.g. HOURGLASS_DEFAULT; None: plain Transformer
    # regularisation (fairseq Base pre-training values)
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    dropout_input: float = 0.1
    dropout_features: float = 0.1
    layerdrop: float = 0.05
    # masking (training only)
    mask_prob: float = 0.65
    mask_length: int = 10
    mask_min_masks: int = 2
    mask_channel_prob: float = 0.0
    mask_channel_length: int = 64
    # pre-training head: quantiser, contrastive task
    final_dim: int = 256
    latent_vars: int = 320
    latent_groups: int = 2
    latent_temp: tuple[float, float, float] = (2.0, 0.5, 0.999995)  # max, min, decay per update
    num_negatives: int = 100
    logit_temp: float = 0.1

    def __post_init__(self) -> None:
        n = len(self.conv_dims)
        if not n or len(self.conv_kernels) != n or len(self.conv_strides) != n:
            raise ValueError(f"conv_dims / conv_kernels / conv_strides need equal non-zero lengths: {self.conv_dims}, "
                             f"{self.conv_kernels}, {self.conv_strides}")
        if self.extractor_mode not in EXTRACTOR_MODES:
            raise ValueError(f"extractor_mode must be one of {EXTRACTOR_MODES}, got {self.extractor_mode!r}")
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by num_heads {self.num_heads}")
        if self.embed_dim % self.pos_conv_groups:
            raise ValueError(f"embed_dim {self.embed_dim} is not divisible by pos_conv_groups {self.pos_conv_groups}")
        if self.final_dim % self.latent_groups:
            raise ValueError(f"final_dim {self.final_dim} is not divisible by latent_groups {self.latent_groups}")
        if len(self.latent_temp) != 3:
            raise ValueError(f"latent_temp must be (max, min, decay), got {self.latent_temp}")
        for k in ("dropout", "attention_dropout", "activation_dropout", "dropout_input", "dropout_features",
                  "layerdrop", "mask_prob", "mask_channel_prob"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ValueError(f"{k} must be in [0, 1], got {getattr(self, k)}")
        parse_hourglass(self.hourglass, self.num_layers)

    @property
    def subsampling(self) -> int:
        s = 1
        for v in self.conv_strides:
            s *= v
        return s


def wav2vec2_base(**overrides: Any) -> Wav2Vec2Config:
    """Base: 12 x 768, FFN 3072, 12 heads; 95.0 M parameters with the pre-training head."""
    return Wav2Vec2Config().replace(**overrides)


def wav2vec2_large(**overrides: Any) -> Wav2Vec2Config:
    """Large (LibriSpeech 960 h config): 24 x 1024, FFN 4096, 16 heads, final_dim 768; 317 M parameters."""
    return Wav2Vec2Config(embed_dim=1024, num_layers=24, ffn_dim=4096, num_heads=16, final_dim=768,
                          dropout_input=0.1, dropout_features=0.1, layerdrop=0.2).replace(**overrides)


def wav2vec2_tiny(**overrides: Any) -> Wav2Vec2Config:
    """A CPU-sized model for tests and the synthetic corpus: the Base layout at width 96, 4 layers.

    The feature encoder keeps Base's kernels and strides (320x, 20 ms frames) at 32 channels: on raw
    16 kHz audio the conv stack dominates a CPU step at this size (64 channels: ~2x the step time).
    The CPU profiles widen the Transformer (``embed_dim`` 192, ``ffn_dim`` 768) by overrides.
    """
    return Wav2Vec2Config(conv_dims=(32,) * 7, embed_dim=96, num_layers=4, ffn_dim=192, num_heads=4,
                          pos_conv_kernel=16, pos_conv_groups=4, final_dim=64, latent_vars=32,
                          num_negatives=20, mask_length=5, layerdrop=0.0).replace(**overrides)


def wav2vec2_small(**overrides: Any) -> Wav2Vec2Config:
    """Base's 12-layer layout at width 256 (FFN 1024, 4 heads; conv 128 channels): the CPU Hourglass
    benchmark's model, where the Transformer, not the conv front end, dominates a step (10.1 M)."""
    return Wav2Vec2Config(conv_dims=(128,) * 7, embed_dim=256, ffn_dim=1024, num_heads=4, pos_conv_kernel=64,
                          final_dim=128, latent_vars=64).replace(**overrides)


PRESETS = {"tiny": wav2vec2_tiny, "small": wav2vec2_small, "base": wav2vec2_base, "large": wav2vec2_large}
