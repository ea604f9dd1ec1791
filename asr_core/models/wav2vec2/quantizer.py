"""Gumbel-softmax product quantiser (fairseq ``GumbelVectorQuantizer``, ``combine_groups=False``).

    N: frames to quantise, C: input dim, G: groups, V: entries per group, d: ``vq_dim // G``.

Each frame picks one entry per group: logits ``weight_proj(x)`` (N, G*V); in training a hard
Gumbel-softmax (straight-through: the forward uses the one-hot, the backward the soft
probabilities) at temperature ``tau``, annealed per update as
``max(max_temp * decay ** updates, min_temp)``; in eval the argmax. The chosen entries of
``vars`` (1, G*V, d) are concatenated into a (N, G*d) vector.
"""

from __future__ import annotations

import torch
from torch import nn


class GumbelVectorQuantizer(nn.Module):
    def __init__(self, dim: int, num_vars: int, groups: int, vq_dim: int,
                 temp: tuple[float, float, float] = (2.0, 0.5, 0.999995)) -> None:
        super().__init__()
        if vq_dim % groups:
            raise ValueError(f"vq_dim {vq_dim} is not divisible by groups {groups}")
        self.groups, self.num_vars = groups, num_vars
        self.vars = nn.Parameter(torch.empty(1, groups * num_vars, vq_dim // groups).uniform_())
        self.weight_proj = nn.Linear(dim, groups * num_vars)
        nn.init.normal_(self.weight_proj.weight, mean=0, std=1)
        nn.init.zeros_(self.weight_proj.bias)
        self.max_temp, self.min_temp, self.temp_decay = temp
        self.curr_temp = self.max_temp

    def set_num_updates(self, num_updates: int) -> None:
        self.curr_temp = max(self.max_temp * self.temp_decay ** num_updates, self.min_temp)

    def forward(self, x: torch.Tensor, gumbel: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """x: (N, C); ``gumbel``: (N, G*V) Gumbel(0, 1) noise for training (drawn here if None).

        Returns ``x`` (N, G*d) quantised, ``prob_perplexity`` (sum over groups of the perplexity
        of the mean soft assignment over the N frames), ``code_perplexity`` (the same for the
        hard choices), ``temp``.
        """
        N = x.size(0)
        G, V = self.groups, self.num_vars
        logits = self.weight_proj(x).float().view(N, G, V)
        k = logits.argmax(-1, keepdim=True)
        hard = torch.zeros_like(logits).scatter_(-1, k, 1.0)
        hard_probs = hard.mean(0)
        code_ppl = torch.exp(-(hard_probs * torch.log(hard_probs + 1e-7)).sum(-1)).sum()
        avg_probs = logits.softmax(-1).mean(0)
        prob_ppl = torch.exp(-(avg_probs * torch.log(avg_probs + 1e-7)).sum(-1)).sum()
        if self.training:
            if gumbel is None:
                gumbel = -torch.empty_like(logits).exponential_().log()
            soft = ((logits + gumbel.view(N, G, V).float()) / self.curr_temp).softmax(-1)
            onehot = torch.zeros_like(soft).scatter_(-1, soft.argmax(-1, keepdim=True), 1.0)
            sel = onehot - soft.detach() + soft  # straight-through
        else:
            sel = hard
        vars_ = self.vars.view(G, V, -1)
        q = torch.einsum("ngv,gvd->ngd", sel.to(vars_.dtype), vars_).reshape(N, -1)
        return {"x": q, "prob_perplexity": prob_ppl, "code_perplexity": code_ppl,
                "temp": torch.tensor(self.curr_temp)}
