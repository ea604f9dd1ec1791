"""Fixtures of the serving tests (test_serve.py, test_serve_page.py): tiny models and utterances."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from asr_core.data.audio import resample
from asr_core.testing import make_wave
from tests.support import rnnt_corpus, tiny_ctc_file, tiny_transducer_file


@dataclass(frozen=True)
class ServeAssets:
    transducer: Path  # model.pt of an untrained tiny transducer that emits tokens
    ctc: Path  # model.pt of an untrained small QuartzNet whose best path holds several words
    corpus: Path  # a tiny corpus (the export gate's utterances)
    utterances: list[Path]  # 16 kHz PCM16 WAVs of about 2 s
    utterance_8k: Path  # the first utterance at 8 kHz


@pytest.fixture(scope="session")
def serve_assets(tmp_path_factory) -> ServeAssets:
    import torch

    torch.set_num_threads(1)  # the tests share the machine with whatever else runs
    root = tmp_path_factory.mktemp("serve")
    corpus, spm = rnnt_corpus(root / "corpus", splits=(("train", 6), ("dev", 2)))
    utterances = []
    for i in range(4):  # three clips back to back: words, pauses and level changes in one utterance
        wave = np.concatenate([make_wave(0.5 + 0.15 * k, seed=10 * i + k) for k in range(3)])
        path = root / "audio" / f"utt{i}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(path, wave, 16000, subtype="PCM_16")
        utterances.append(path)
    x, _ = sf.read(utterances[0], dtype="float32")
    utterance_8k = root / "audio" / "utt0_8k.wav"
    sf.write(utterance_8k, resample(x, 16000, 8000), 8000, subtype="PCM_16")
    return ServeAssets(
        transducer=tiny_transducer_file(root / "rnnt" / "model.pt", spm),
        ctc=tiny_ctc_file(root / "ctc" / "model.pt"),
        corpus=corpus,
        utterances=utterances,
        utterance_8k=utterance_8k,
    )


@pytest.fixture(scope="session")
def offline_texts(serve_assets):
    """``(model.pt, wav) -> transcript`` as ``python -m tasks.transcribe`` prints it (memoised)."""
    from tasks import transcribe

    cache: dict[tuple[Path, Path], str] = {}

    def text(model: Path, wav: Path) -> str:
        if (model, wav) not in cache:
            cache[(model, wav)] = transcribe.main(["--model", str(model), str(wav)])[0]
        return cache[(model, wav)]

    return text
