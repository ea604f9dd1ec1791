"""The wav2vec 2.0 pre-training objective: contrastive, diversity and feature-penalty terms.

    B: batch, T: frames, C: conv channels, N: masked frames, K: negatives, F: final dim.

For each masked frame t of an utterance: the context vector ``c_t = final_proj(transformer)``
is compared (cosine similarity / ``logit_temp``) with its quantised target ``q_t`` and K
negatives ``q_j`` drawn from the same utterance's other masked frames; the loss is the cross
entropy of picking ``q_t`` (fairseq: a negative equal to the target gets logit -inf). Summed
over the masked frames.

Diversity: ``(G*V - prob_perplexity) / (G*V)`` with the perplexity of the mean soft codebook
assignment over the batch's masked frames (fairseq and DLE: a *batch* statistic, the one term
that depends on the batch by design). Feature penalty: the mean square of the conv features,
here over each utterance's valid frames (fairseq averages over the padded batch).

Total, per masked frame (fairseq's criterion divides by the number of targets N):
``sum(contrastive) / N + diversity_weight * diversity + feature_pen_weight * feature_pen``,
with DLE's weights 0.1 and 10.

Random draws (masks, Gumbel noise, negatives) come from one generator per utterance, in that
order, so with the same generators an utterance's ``contrastive`` and ``feature_pen`` terms are
the same alone or in any padded batch (``tests/asr_core/train/test_wav2vec2_pretrain.py``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from asr_core.models.wav2vec2.frontend import length_mask
from asr_core.models.wav2vec2.masking import sample_negatives, span_mask


def utterance_generators(seeds: list[int], device: torch.device | str) -> list[torch.Generator]:
    """One generator per utterance, seeded with ``seeds[b]`` (on ``device``)."""
    out = []
    for s in seeds:
        g = torch.Generator(device=device)
        g.manual_seed(int(s))
        out.append(g)
    return out


def contrastive_terms(model, wave: torch.Tensor, lens: torch.Tensor,
                      generators: list[torch.Generator] | None = None) -> dict[str, torch.Tensor]:
    """Run the pre-training model on a padded batch; per-utterance terms and batch statistics.

    Returns ``contrastive`` (B,) summed cross entropy, ``num_targets`` (B,) masked frames scored
    (0 for an utterance with fewer than 2 masked frames: it has no negatives), ``feature_pen``
    (B,) mean square of its conv features, ``num_frames`` (B,), and the batch's
    ``prob_perplexity``, ``code_perplexity``, ``diversity``, ``temp``.
    """
    cfg, enc = model.cfg, model.encoder
    B = wave.size(0)
    if generators is None:
        generators = utterance_generators(torch.randint(0, 2**62, (B,)).tolist(), wave.device)
    if len(generators) != B:
        raise ValueError(f"{len(generators)} generators for a batch of {B}")
    feats, flens = enc.extract(wave, lens)  # (B, T, C)
    T = feats.size(1)
    valid = length_mask(flens, T)
    sq = feats.float().pow(2).mean(-1) * valid
    feature_pen = sq.sum(1) / flens.clamp(min=1)

    feats = enc.layer_norm(feats)
    unmasked = model.dropout_features(feats)
    x = enc.project(feats)

    # draws, per utterance: its mask, then its Gumbel noise, then its negatives
    masks = torch.zeros(B, T, dtype=torch.bool, device=wave.device)
    for b, n in enumerate(flens.tolist()):
        masks[b, :n] = span_mask(n, cfg.mask_prob, cfg.mask_length, min_masks=cfg.mask_min_masks,
                                 generator=generators[b], device=wave.device)
    counts = masks.sum(1)
    masks &= (counts >= 2)[:, None]  # an utterance with < 2 masked frames has no negatives: left out
    counts = masks.sum(1)
    GV = cfg.latent_groups * cfg.latent_vars
    gumbel = [-torch.empty(int(m), GV, device=wave.device).exponential_(generator=generators[b]).log()
              for b, m in enumerate(counts.tolist())]
    negs = sample_negatives([int(m) for m in counts.tolist() if m > 0], cfg.num_negatives,
                            [g for g, m in zip(generators, counts.tolist()) if m > 0], device=wave.device)

    x = enc.apply_mask(x, masks)
    c = enc.transformer(x, flens)  # (B, T, D)

    q = model.quantizer(unmasked[masks], torch.cat(gumbel) if gumbel else None)  # row-major: b, then t
    y = model.project_q(q["x"])  # (N, F)
    c = model.final_proj(c[masks])  # (N, F)
    cand = torch.cat([y[:, None, :], y[negs]], dim=1)  # (N, 1 + K, F)
    logits = F.cosine_similarity(c.float()[:, None, :], cand.float(), dim=-1) / cfg.logit_temp
    neg_is_pos = (y[:, None, :] == y[negs]).all(-1)
    logits[:, 1:] = logits[:, 1:].masked_fill(neg_is_pos, float("-inf"))
    ce = F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device), reduction="none")
    owner = torch.arange(B, device=wave.device)[:, None].expand(B, T)[masks]
    contrastive = torch.zeros(B, device=wave.device, dtype=ce.dtype).index_add(0, owner, ce)
    diversity = (GV - q["prob_perplexity"]) / GV
    return {"contrastive": contrastive, "num_targets": counts, "feature_pen": feature_pen, "num_frames": flens,
            "prob_perplexity": q["prob_perplexity"], "code_perplexity": q["code_perplexity"],
            "diversity": diversity, "temp": q["temp"]}


def pretraining_loss(terms: dict[str, torch.Tensor], diversity_weight: float = 0.1,
                     feature_pen_weight: float = 10.0) -> tuple[torch.Tensor, int]:
    """``(loss per masked frame, number of masked frames)``, the engine's ``loss`` contract."""
    n = int(terms["num_targets"].sum())
    if n == 0:
        return terms["contrastive"].sum() * 0.0, 0
    frames = terms["num_frames"].to(terms["feature_pen"].dtype)
    pen = (terms["feature_pen"] * frames).sum() / frames.sum().clamp(min=1)
    loss = terms["contrastive"].sum() / n + diversity_weight * terms["diversity"] + feature_pen_weight * pen
    return loss, n
