"""wav2vec 2.0: the encoder (waveform -> context vectors) and the pre-training model around it.

    B: batch, S: samples, T: frames (S / 320), C: conv channels, D: ``embed_dim``,
    N: masked frames in the batch, K: negatives, F: ``final_dim``.

``Wav2Vec2Encoder`` follows the project's :class:`~asr_core.models.encoder.Encoder` interface
(``(B, S)`` samples in, ``(B, T, D)`` out) and holds what fairseq's ``Wav2Vec2Model`` keeps for
fine-tuning: ``feature_extractor``, ``layer_norm``, ``post_extract_proj``, ``mask_emb`` and the
Transformer (fairseq's ``encoder``, here ``transformer``). In training mode it applies the
fine-tuning masks (time spans replaced by ``mask_emb``, channel spans zeroed). The CTC model is
``CTCModel(Wav2Vec2Encoder, CTCHead)``.

``Wav2Vec2ForPreTraining`` adds the quantiser, ``project_q`` and ``final_proj`` and computes the
contrastive task (see ``losses.py``): its forward returns per-utterance loss terms.
"""

from __future__ import annotations

import contextlib

import torch
from torch import nn

from asr_core.models.ctc import CTCHead, CTCModel
from asr_core.models.encoder import Encoder
from asr_core.models.wav2vec2.config import Wav2Vec2Config
from asr_core.models.wav2vec2.frontend import ConvFeatureEncoder, length_mask
from asr_core.models.wav2vec2.masking import batch_span_masks, channel_masks
from asr_core.models.wav2vec2.quantizer import GumbelVectorQuantizer
from asr_core.models.wav2vec2.transformer import TransformerEncoder


class Wav2Vec2Encoder(Encoder):
    """``forward(x (B, S), x_lens) -> (y (B, T, D), y_lens)``.

    ``freeze_feature_encoder``: the conv feature encoder runs without gradients (fine-tuning;
    fairseq ``feature_grad_mult=0``); its parameters should also have ``requires_grad=False``
    (:meth:`freeze_feature_encoder_`). Masking (``mask_prob``, ``mask_channel_prob``) applies in
    training mode only, so inference is deterministic and batch-independent.
    """

    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.feature_extractor = ConvFeatureEncoder(cfg.conv_dims, cfg.conv_kernels, cfg.conv_strides,
                                                    bias=cfg.conv_bias, mode=cfg.extractor_mode)
        c = self.feature_extractor.output_dim
        self.layer_norm = nn.LayerNorm(c)
        self.post_extract_proj = nn.Linear(c, cfg.embed_dim) if c != cfg.embed_dim else None
        self.mask_emb = nn.Parameter(torch.empty(cfg.embed_dim).uniform_())
        self.dropout_input = nn.Dropout(cfg.dropout_input)
        self.transformer = TransformerEncoder(
            cfg.embed_dim, cfg.num_layers, cfg.ffn_dim, cfg.num_heads, pos_conv_kernel=cfg.pos_conv_kernel,
            pos_conv_groups=cfg.pos_conv_groups, dropout=cfg.dropout, attention_dropout=cfg.attention_dropout,
            activation_dropout=cfg.activation_dropout, layer_norm_first=cfg.layer_norm_first,
            layerdrop=cfg.layerdrop, hourglass=cfg.hourglass)
        self.output_dim = cfg.embed_dim
        self.subsampling = cfg.subsampling
        self.freeze_feature_encoder = False

    def freeze_feature_encoder_(self, frozen: bool = True) -> Wav2Vec2Encoder:
        self.freeze_feature_encoder = frozen
        for p in self.feature_extractor.parameters():
            p.requires_grad_(not frozen)
        return self

    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        return self.feature_extractor.output_lengths(x_lens.long())

    def extract(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Conv features (B, T, C), zero past the lengths, and the lengths."""
        ctx = torch.no_grad() if self.freeze_feature_encoder else contextlib.nullcontext()
        with ctx:
            return self.feature_extractor(x, x_lens.long())

    def project(self, feats: torch.Tensor) -> torch.Tensor:
        x = self.post_extract_proj(feats) if self.post_extract_proj is not None else feats
        return self.dropout_input(x)

    def apply_mask(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Replace the frames of ``mask`` (B, T) by the learnt mask embedding."""
        return torch.where(mask[:, :, None], self.mask_emb.to(x.dtype), x)

    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        feats, lens = self.extract(x, x_lens)
        x = self.project(self.layer_norm(feats))
        if self.training and self.cfg.mask_channel_prob > 0:
            cm = channel_masks(x.size(0), x.size(2), self.cfg.mask_channel_prob, self.cfg.mask_channel_length,
                               device=x.device)
            x = x.masked_fill(cm[:, None, :], 0.0)
        if self.training and self.cfg.mask_prob > 0:
            x = self.apply_mask(x, batch_span_masks(lens, x.size(1), self.cfg.mask_prob, self.cfg.mask_length,
                                                    min_masks=self.cfg.mask_min_masks))
        y = self.transformer(x, lens)
        return y * length_mask(lens, y.size(1)).to(y.dtype)[:, :, None], lens


class Wav2Vec2ForPreTraining(nn.Module):
    """The encoder plus fairseq's pre-training modules: ``quantizer``, ``project_q``, ``final_proj``.

    ``forward(wave, lens, generators)`` masks, quantises the unmasked features of the masked
    frames and scores each masked frame's context vector against its quantised target and K
    negatives; see :func:`asr_core.models.wav2vec2.losses.contrastive_terms`.
    """

    def __init__(self, cfg: Wav2Vec2Config) -> None:
        super().__init__()
        self.cfg = cfg
        self.encoder = Wav2Vec2Encoder(cfg)
        c = self.encoder.feature_extractor.output_dim
        self.dropout_features = nn.Dropout(cfg.dropout_features)
        self.quantizer = GumbelVectorQuantizer(c, cfg.latent_vars, cfg.latent_groups, cfg.final_dim, cfg.latent_temp)
        self.project_q = nn.Linear(cfg.final_dim, cfg.final_dim)
        self.final_proj = nn.Linear(cfg.embed_dim, cfg.final_dim)

    def set_num_updates(self, num_updates: int) -> None:
        """Anneal the Gumbel temperature to its value after ``num_updates`` updates."""
        self.quantizer.set_num_updates(num_updates)

    def forward(self, wave: torch.Tensor, lens: torch.Tensor,
                generators: list[torch.Generator] | None = None) -> dict[str, torch.Tensor]:
        from asr_core.models.wav2vec2.losses import contrastive_terms

        return contrastive_terms(self, wave, lens, generators)


def wav2vec2_ctc_model(cfg: Wav2Vec2Config, num_outputs: int) -> CTCModel:
    """The fine-tuning / inference model: encoder + CTC head (blank last)."""
    from asr_core.models.heads import attach_head

    return attach_head("ctc", Wav2Vec2Encoder(cfg), num_outputs, None)


def wav2vec2_pretraining_model(cfg: Wav2Vec2Config) -> Wav2Vec2ForPreTraining:
    return Wav2Vec2ForPreTraining(cfg)
