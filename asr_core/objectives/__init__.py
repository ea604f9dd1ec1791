"""The objectives a model is trained and decoded with, by ``kind``: the one registry stages dispatch on.

Each objective is a package with the same four modules (``evaluate``, ``export``, ``benchmark``,
``transcribe``), whose functions the generic stages call with the model a ``model.pt`` holds
(``model.kind``), never with a family name:

    evaluate(model, features, vocab, opts, out_dir) -> report        # tasks/evaluate.py
    export(model, features, vocab, opts, tmp, manifest) -> (parity, doc)   # tasks/export.py
    benchmark(section, model_path, exports, out_dir, preset, log) -> report  # tasks/benchmark.py
    add_transcribe_args(parser); transcribe(args, model, features, vocab, parser) -> texts
    evaluate.OPTIONS: the evaluate section's keys of this objective, with their defaults

``ctc``: QuartzNet, Jasper, Conformer, wav2vec 2.0 fine-tuned (greedy and beam search + LM, the
single-graph exports, the latency grid). ``transducer``: the RNN-T (greedy and beam search,
streaming, three graphs with state, the streaming benchmark).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

OBJECTIVES: dict[str, str] = {
    "ctc": "asr_core.objectives.ctc",
    "transducer": "asr_core.objectives.transducer",
}


@dataclass(frozen=True)
class Objective:
    """What the stages run for one kind of model (each from the module of the same name in its package)."""

    kind: str
    evaluate: Callable[..., dict[str, Any]]
    export: Callable[..., tuple[dict, dict[str, Any]]]
    benchmark: Callable[..., dict[str, Any]]
    add_transcribe_args: Callable[[Any], None]
    transcribe: Callable[..., list[str]]
    evaluate_options: Mapping[str, Any]


def objective(kind: str) -> Objective:
    """The objective for ``kind`` (``model.kind``, a model file's ``kind``)."""
    try:
        package = OBJECTIVES[kind]
    except KeyError:
        raise ValueError(f"unknown model kind {kind!r}; known: {sorted(OBJECTIVES)}") from None
    ev, ex, be, tr = (
        importlib.import_module(f"{package}.{m}") for m in ("evaluate", "export", "benchmark", "transcribe")
    )
    return Objective(kind, ev.evaluate, ex.export, be.benchmark, tr.add_transcribe_args, tr.transcribe, ev.OPTIONS)
