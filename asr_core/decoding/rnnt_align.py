"""The alignment picture: an utterance's output lattice with its best path (Graves 2012, fig. 1).

``lattice_logprobs`` gives, for the reference tokens y (U of them), the (T, U + 1) log-probs
of emitting y[u] at node (t, u) and of the blank there; ``viterbi`` the most probable
monotone path; ``alignment_png`` draws the emission log-probs over time x tokens with the
path on top (matplotlib, imported on demand).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from asr_core.io.atomic import atomic_path


@torch.no_grad()
def lattice_logprobs(model, feats: torch.Tensor, feat_len: int, tokens: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """feats (N, F) of one utterance -> (emit (T, U + 1), blank (T, U + 1)) log-probs; emit[:, U] = -inf."""
    y = torch.tensor([tokens], dtype=torch.long)
    logits, f_lens = model.lattice(feats[None, :, :feat_len], torch.tensor([feat_len]), y)
    logp = torch.log_softmax(logits[0, : int(f_lens[0])], dim=-1)  # (T, U + 1, V)
    blank = logp[..., model.blank]
    emit = torch.full_like(blank, float("-inf"))
    if tokens:
        emit[:, :-1] = logp[:, :-1].gather(-1, y[0][None, :, None].expand(logp.size(0), -1, 1))[..., 0]
    return emit, blank


def viterbi(emit: torch.Tensor, blank: torch.Tensor) -> list[tuple[int, int]]:
    """The best path's nodes (t, u) from (0, 0) to (T - 1, U), ending with the final blank."""
    t_max, u_max = emit.size(0), emit.size(1) - 1
    score = torch.full((t_max, u_max + 1), float("-inf"), dtype=torch.float64)
    score[0, 0] = 0.0
    for t in range(t_max):
        for u in range(u_max + 1):
            if t == 0 and u == 0:
                continue
            best = float("-inf")
            if t > 0:
                best = float(score[t - 1, u] + blank[t - 1, u])
            if u > 0:
                best = max(best, float(score[t, u - 1] + emit[t, u - 1]))
            score[t, u] = best
    path, t, u = [(t_max - 1, u_max)], t_max - 1, u_max
    while (t, u) != (0, 0):
        from_blank = float(score[t - 1, u] + blank[t - 1, u]) if t > 0 else float("-inf")
        from_emit = float(score[t, u - 1] + emit[t, u - 1]) if u > 0 else float("-inf")
        t, u = (t - 1, u) if from_blank >= from_emit else (t, u - 1)
        path.append((t, u))
    return path[::-1]


def alignment_png(
    path: str | os.PathLike,
    emit: torch.Tensor,
    blank: torch.Tensor,
    pieces: list[str],
    title: str = "",
    frame_seconds: float = 0.06,
) -> Path:
    """Write the picture: log P(y[u] | t, u) (and the blank row at u = U), the Viterbi path in white."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    img = emit.clone()
    img[:, -1] = blank[:, -1]
    nodes = viterbi(emit, blank)
    fig, ax = plt.subplots(figsize=(max(6.0, emit.size(0) * 0.12), max(3.0, emit.size(1) * 0.25)))
    im = ax.imshow(img.T.clamp(min=-20).numpy(), origin="lower", aspect="auto", cmap="viridis")
    ax.plot([t for t, _ in nodes], [u for _, u in nodes], color="white", linewidth=1.5)
    ax.set_yticks(range(len(pieces) + 1), [*pieces, "<end>"], fontsize=7)
    ax.set_xlabel(f"encoder frame ({frame_seconds * 1000:.0f} ms)")
    ax.set_ylabel("token")
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, label="log-prob")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
