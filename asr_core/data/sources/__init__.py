"""Corpus sources. Each turns a corpus into :class:`~asr_core.data.items.SourceItem` rows.

A source is a module exposing a config dataclass (``from_dict`` rejects unknown keys)
and ``fetch_<name>(cfg, out_dir, progress) -> list[SourceItem]``. The registry maps
the ``download.source`` param to them; modules import lazily (torch-free start-up).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

from asr_core.data.items import SourceItem

# name -> (module, config class, fetch function)
SOURCES: dict[str, tuple[str, str, str]] = {
    "synthetic": ("asr_core.data.synth", "SynthConfig", "build_synthetic_corpus"),
    "librispeech": ("asr_core.data.sources.librispeech", "LibriSpeechConfig", "fetch_librispeech"),
    "librispeech_lm": ("asr_core.data.sources.librispeech_lm", "LibriSpeechLMConfig", "fetch_librispeech_lm"),
    "commonvoice": ("asr_core.data.sources.commonvoice", "CommonVoiceConfig", "fetch_commonvoice"),
    "tedlium": ("asr_core.data.sources.tedlium", "TedliumConfig", "fetch_tedlium"),
    "manifest": ("asr_core.data.sources.manifest", "ManifestConfig", "fetch_manifest"),
}


def fetch_source(name: str, options: dict[str, Any], out_dir: Path, progress: bool = True) -> list[SourceItem]:
    """Build the source ``name`` with ``options`` into ``out_dir``; return its items."""
    if name not in SOURCES:
        raise ValueError(f"download.source: unknown source {name!r}; choose one of {sorted(SOURCES)}")
    module, cfg_name, fn_name = SOURCES[name]
    mod = importlib.import_module(module)
    try:
        cfg = getattr(mod, cfg_name).from_dict(dict(options))
    except (TypeError, ValueError) as e:
        raise ValueError(f"download.{name}: {e}") from e
    return getattr(mod, fn_name)(cfg, out_dir, progress=progress)
