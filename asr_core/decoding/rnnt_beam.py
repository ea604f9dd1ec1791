"""Transducer beam search: frame-synchronous, at most ``max_symbols`` tokens per frame, equal
token sequences merged (log-sum of their probabilities).

Per encoder frame, the hypotheses ending the frame with a blank collect in ``B``; those that
emit a token instead go on to the next expansion round (``A``), at most ``max_symbols``
rounds, the prediction network run once per round on all of them (batched). ``A`` keeps
the ``beam`` best token candidates of a round, and a candidate already below the ``beam``-th
best of ``B`` is dropped (more tokens only lower a score). After the frame the ``beam`` best
of ``B`` go on. The result is the best hypothesis after the last frame (no length
normalisation). ``beam=1`` is close to, not always equal to, greedy decoding (greedy takes
the blank whenever it is the most likely output; the beam compares whole frame endings).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from asr_core.decoding.rnnt_stream import TorchBackend, TransducerBackend


@dataclass
class Hyp:
    tokens: tuple[int, ...]
    score: float
    g: torch.Tensor  # (P,) prediction output after the last token
    state: tuple  # prediction state, each (layers, 1, H)


def _add(pool: dict[tuple, Hyp], h: Hyp) -> None:
    old = pool.get(h.tokens)
    if old is None:
        pool[h.tokens] = h
    else:
        old.score = float(torch.logaddexp(torch.tensor(old.score), torch.tensor(h.score)))


@torch.no_grad()
def beam_search(backend: TransducerBackend, f: torch.Tensor, beam: int = 4, max_symbols: int = 5) -> list[int]:
    """Encoder frames f (T, D) of one utterance -> the best token sequence."""
    if beam < 1 or max_symbols < 1:
        raise ValueError(f"beam and max_symbols must be >= 1, got {beam}, {max_symbols}")
    blank = backend.blank
    g, state = backend.predict(torch.full((1, 1), blank, dtype=torch.long), backend.predictor_state(1))
    hyps = [Hyp((), 0.0, g[0], state)]
    for t in range(f.size(0)):
        done: dict[tuple, Hyp] = {}
        active = hyps
        for _ in range(max_symbols):
            if not active:
                break
            logp = torch.log_softmax(
                backend.joint(f[t].expand(len(active), -1), torch.stack([h.g for h in active])), -1
            )
            for i, h in enumerate(active):
                _add(done, Hyp(h.tokens, h.score + float(logp[i, blank]), h.g, h.state))
            floor = sorted((h.score for h in done.values()), reverse=True)[beam - 1] if len(done) >= beam else -1e30
            logp[:, blank] = float("-inf")
            scores = torch.tensor([h.score for h in active])[:, None] + logp
            top = scores.flatten().topk(min(beam, scores.numel()))
            picks = [
                (int(j) // scores.size(1), int(j) % scores.size(1), float(s))
                for s, j in zip(top.values, top.indices)
                if float(s) > floor
            ]
            if not picks:
                break
            parents = [active[i] for i, _, _ in picks]
            y = torch.tensor([[k] for _, k, _ in picks], dtype=torch.long)
            state = tuple(torch.cat([p.state[n] for p in parents], dim=1) for n in range(len(parents[0].state)))
            g, state = backend.predict(y, state)
            active = [
                Hyp(p.tokens + (k,), s, g[j], tuple(x[:, j : j + 1] for x in state))
                for j, (p, (_, k, s)) in enumerate(zip(parents, picks))
            ]
        hyps = sorted(done.values(), key=lambda h: h.score, reverse=True)[:beam]
    return list(max(hyps, key=lambda h: h.score).tokens)


@torch.no_grad()
def beam_decode(
    model_or_backend, feats: torch.Tensor, feat_lens: torch.Tensor, beam: int = 4, max_symbols: int = 5
) -> list[list[int]]:
    """A padded batch of features (B, N, F) -> the best token ids per utterance."""
    backend = TorchBackend(model_or_backend) if isinstance(model_or_backend, nn.Module) else model_or_backend
    f, f_lens = backend.encode_utterances(feats, feat_lens)
    return [beam_search(backend, f[i, : int(f_lens[i])], beam, max_symbols) for i in range(f.size(0))]
