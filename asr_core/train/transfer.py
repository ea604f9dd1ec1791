"""Transfer: start a supervised run from the weights of a trained ``model.pt`` (``model.init_from``).

The use: a small corpus (a few speakers, a few words) fine-tunes a model trained on a larger one
(the built-in synthetic corpus has 8 accents x 59 voices). Whether that beats training from scratch
depends on the corpus: on four real speakers of spoken digits it helped beam search + LM and hurt
greedy decoding (RESULTS.md, "Small real corpus").

Every tensor whose name and shape match is copied. The model's family and front end must be the
init model's, and every encoder tensor must match (another architecture is an error naming the
tensors); output-layer tensors of another shape (another vocabulary) keep their fresh
initialisation, and the caller is told which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn


@dataclass
class TransferReport:
    path: str
    loaded: list[str] = field(default_factory=list)
    fresh: list[str] = field(default_factory=list)  # tensors left at their initialisation

    def summary(self) -> str:
        s = f"model.init_from {self.path}: {len(self.loaded)} tensors loaded"
        return s + (f", {len(self.fresh)} kept fresh ({', '.join(self.fresh)})" if self.fresh else "")


def load_init_weights(
    model: nn.Module, path: str | Path, *, family: str, frontend: str, features: dict, head_prefixes: tuple[str, ...]
) -> TransferReport:
    """Copy ``path``'s weights into ``model`` (see the module doc). ``head_prefixes``: the names of
    the tensors that may differ (the output layer); ``features``: this run's front-end config, whose
    shape-setting fields must be the init model's."""
    from asr_core.models.artifact import read_model_file

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model.init_from: {p} not found (train the model to start from first)")
    obj = read_model_file(p)
    if obj["family"] != family:
        raise ValueError(f"model.init_from: {p} is a {obj['family']} model, this run trains a {family} model")
    if obj["frontend"] != frontend:
        raise ValueError(f"model.init_from: {p} reads {obj['frontend']} features, this run {frontend}")
    theirs = obj.get("features") or {}
    differ = sorted(
        k
        for k in ("sample_rate", "n_mels", "n_fft", "window_size", "window_stride")
        if k in features and k in theirs and features[k] != theirs[k]
    )
    if differ:
        raise ValueError(
            f"model.init_from: {p} was trained with other features ({', '.join(f'{k}={theirs[k]}' for k in differ)}; "
            f"this run: {', '.join(f'{k}={features[k]}' for k in differ)}); set train.features to match"
        )
    source: dict[str, torch.Tensor] = obj["model"]
    own = model.state_dict()
    report = TransferReport(str(p))
    wrong = []
    for name, t in own.items():
        src = source.get(name)
        if src is not None and src.shape == t.shape:
            report.loaded.append(name)
        elif name.startswith(head_prefixes):
            report.fresh.append(name)
        else:
            wrong.append(f"{name} {tuple(t.shape)} vs {tuple(src.shape) if src is not None else 'absent'}")
    if wrong:
        shown = "; ".join(wrong[:5]) + (f"; ... ({len(wrong)} in all)" if len(wrong) > 5 else "")
        raise ValueError(f"model.init_from: {p} has another architecture than model.preset + overrides: {shown}")
    model.load_state_dict({**own, **{k: source[k] for k in report.loaded}})
    return report
