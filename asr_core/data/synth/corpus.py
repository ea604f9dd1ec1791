"""The built-in synthetic speech corpus: grammar sentences spoken by espeak-ng voices, offline.

Everything is planned before any audio exists (:func:`plan_corpus`): each utterance's
sentence, voice, rate, pitch, margins, gain and noise follow from ``(seed, split, index)``
alone, so the plan is cheap and the same for any worker count.

- Splits share no sentence: a keyed hash of the sentence text puts every possible
  sentence in exactly one split, and a split only keeps sentences hashed to it (also
  unique within the split).
- ``test_unseen_voice`` speaks with accent+variant voices that no other split uses:
  ``held_out_voices`` of them, spread over the accents, chosen from the seed (or listed).
- Audio bytes are reproducible. espeak carries state from one utterance to the next that
  no call resets (see ``espeak.py``), so a split is cut into fixed shards of
  :data:`SHARD_SIZE` consecutive utterances and every shard is spoken, in order, by a
  fresh process (a process pool with ``max_tasks_per_child=1`` over a fork server that
  never runs espeak itself). A file's bytes thus depend on the seed, the config and its shard, never
  on the worker count or on scheduling.

Audio goes to ``out_dir/audio/<split>/<utt_id>.flac`` (16-bit FLAC at espeak's 22050 Hz);
the prepare stage resamples. Callers that run this from a script need the usual
``if __name__ == "__main__":`` guard, as for any multiprocessing code.
"""

from __future__ import annotations

import hashlib
import logging
import math
import multiprocessing
import random
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
from tqdm import tqdm

from asr_core.config import reject_unknown
from asr_core.data.items import SourceItem
from asr_core.data.synth import espeak
from asr_core.data.synth.grammar import make_sentence
from asr_core.io import atomic_path, atomic_write_json, write_jsonl

log = logging.getLogger(__name__)

SPLITS: tuple[str, ...] = ("train", "dev", "test", "test_unseen_voice")
SHARD_SIZE = 100  # utterances per fresh process; part of what fixes the audio bytes
# share of the sentence-hash space owned by each split (sums to 100)
_SPLIT_BUCKETS = {"train": (0, 70), "dev": (70, 80), "test": (80, 90), "test_unseen_voice": (90, 100)}
_SPLIT_KEY = b"asr-synth-split-v1"  # fixed, so a sentence belongs to one split for every seed
_MAX_TRIES = 20000


@dataclass
class SynthConfig:
    """Options of the synthetic corpus. Ranges are ``[min, max]``, sampled uniformly per utterance."""

    seed: int = 1234
    train: int = 15000  # utterances per split
    dev: int = 600
    test: int = 600
    test_unseen_voice: int = 600
    rate_wpm: tuple[int, int] = (140, 210)  # espeak speaking rate, words per minute
    pitch: tuple[int, int] = (30, 70)  # espeak base pitch, 0-99 (50 = the voice's own)
    pitch_range: tuple[int, int] = (30, 80)  # espeak intonation range, 0-99
    words: tuple[int, int] = (4, 18)  # sentence length in words
    margin_s: tuple[float, float] = (0.1, 0.2)  # silence kept before and after the speech
    gain_db: tuple[float, float] = (-6.0, 0.0)
    snr_db: tuple[float, float] | None = (25.0, 45.0)  # white noise level; None: no noise
    accents: tuple[str, ...] = espeak.ACCENTS
    variants: tuple[str, ...] = espeak.VARIANTS
    held_out_voices: int | tuple[str, ...] = 32  # how many accent+variant voices, or which
    workers: int = 2

    def __post_init__(self) -> None:
        for name in ("rate_wpm", "pitch", "pitch_range", "words", "margin_s", "gain_db", "snr_db"):
            value = getattr(self, name)
            if value is None and name == "snr_db":
                continue
            if not isinstance(value, (list, tuple)) or len(value) != 2 or value[0] > value[1]:
                raise ValueError(f"{name} must be [min, max] with min <= max, got {value!r}")
            setattr(self, name, tuple(value))
        for name in SPLITS + ("seed",):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {getattr(self, name)!r}")
        if not isinstance(self.workers, int) or self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {self.workers!r}")
        if self.rate_wpm[0] < espeak.RATE_LIMITS[0] or self.rate_wpm[1] > espeak.RATE_LIMITS[1]:
            raise ValueError(f"rate_wpm {self.rate_wpm} outside espeak's {espeak.RATE_LIMITS}")
        for name in ("pitch", "pitch_range"):
            lo, hi = getattr(self, name)
            if lo < espeak.PITCH_LIMITS[0] or hi > espeak.PITCH_LIMITS[1]:
                raise ValueError(f"{name} {(lo, hi)} outside {espeak.PITCH_LIMITS}")
        if self.words[0] < 1 or self.margin_s[0] < 0:
            raise ValueError(f"words / margin_s must be positive, got {self.words} / {self.margin_s}")
        for name in ("accents", "variants"):
            value = tuple(getattr(self, name))
            if not value or len(set(value)) != len(value):
                raise ValueError(f"{name} must be a non-empty list without repeats, got {value!r}")
            setattr(self, name, value)
        if isinstance(self.held_out_voices, (list, tuple)):
            self.held_out_voices = tuple(self.held_out_voices)
            unknown = sorted(set(self.held_out_voices) - set(voice_grid(self)))
            if unknown:
                raise ValueError(f"held_out_voices: {unknown} are not accent+variant voices of this config")
            n_held = len(set(self.held_out_voices))
        elif isinstance(self.held_out_voices, int) and not isinstance(self.held_out_voices, bool):
            n_held = self.held_out_voices
        else:
            raise ValueError(f"held_out_voices must be a count or a list of voices, got {self.held_out_voices!r}")
        n_voices = len(self.accents) * len(self.variants)
        if not 0 <= n_held < n_voices or (self.test_unseen_voice > 0 and n_held == 0):
            raise ValueError(
                f"held_out_voices: need 1..{n_voices - 1} held-out voices "
                f"(test_unseen_voice={self.test_unseen_voice}), got {self.held_out_voices!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> SynthConfig:
        reject_unknown(cls, d, "synthetic corpus")
        return cls(**d)


@dataclass(frozen=True)
class UttSpec:
    """Everything that decides one utterance's audio."""

    utt_id: str
    split: str
    index: int
    text: str
    voice: str  # espeak voice name, accent+variant: "en-gb-scotland+f3"
    rate_wpm: int
    pitch: int
    pitch_range: int
    margin_s: float
    gain_db: float
    snr_db: float | None
    seed: int  # espeak's noise seed and the added noise's seed

    @property
    def audio(self) -> str:
        return f"audio/{self.split}/{self.utt_id}.flac"


# ---------------------------------------------------------------------------- planning


def _rng(*parts: object) -> random.Random:
    return random.Random("/".join(map(str, parts)))  # str seeds hash with sha512: stable across runs


def _seed32(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("/".join(map(str, parts)).encode(), digest_size=4).digest(), "little")


def split_of_sentence(text: str) -> str:
    """The one split a sentence may appear in."""
    h = int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8, key=_SPLIT_KEY).digest(), "little") % 100
    return next(s for s, (lo, hi) in _SPLIT_BUCKETS.items() if lo <= h < hi)


def voice_grid(cfg: SynthConfig) -> list[str]:
    return [f"{a}+{v}" for a in cfg.accents for v in cfg.variants]


def held_out_voices(cfg: SynthConfig) -> list[str]:
    """Voices only ``test_unseen_voice`` uses: listed, or drawn from the seed round-robin over accents."""
    if isinstance(cfg.held_out_voices, tuple):
        return sorted(set(cfg.held_out_voices))
    rng = _rng(cfg.seed, "held_out_voices")
    pools = {a: rng.sample(cfg.variants, len(cfg.variants)) for a in cfg.accents}
    picked = [f"{a}+{pools[a].pop()}" for i in range(cfg.held_out_voices) for a in [cfg.accents[i % len(cfg.accents)]]]
    return sorted(picked)


def voices_for_split(cfg: SynthConfig, split: str) -> list[str]:
    held = held_out_voices(cfg)
    if split == "test_unseen_voice":
        return held
    held_set = set(held)
    return [v for v in voice_grid(cfg) if v not in held_set]


def _voice_block(voices: list[str]) -> list[str]:
    """One round of voices: each male voice once, each female voice twice.

    Only 17 of the 59 variants are female; doubling them brings female speech from ~29% to ~45%.
    """
    return voices + [v for v in voices if v.split("+", 1)[1] in espeak.FEMALE_VARIANTS]


def plan_split(cfg: SynthConfig, split: str, count: int | None = None) -> list[UttSpec]:
    """The first ``count`` utterances of ``split`` (default: the configured number), text only."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits are {SPLITS}")
    count = getattr(cfg, split) if count is None else count
    voices = _voice_block(voices_for_split(cfg, split))
    seen: set[str] = set()
    specs = []
    block_perm: list[str] = []
    for index in range(count):
        text_rng = _rng(cfg.seed, "text", split, index)
        for _ in range(_MAX_TRIES):
            text = make_sentence(text_rng, *cfg.words)
            if text not in seen and split_of_sentence(text) == split:
                break
        else:
            raise RuntimeError(
                f"{split}: no new sentence for item {index} after {_MAX_TRIES} draws "
                f"(words={cfg.words}); the grammar is exhausted for this range"
            )
        seen.add(text)
        # voices go round in seeded blocks, so each speaks a fixed share
        if index % len(voices) == 0:
            block_perm = _rng(cfg.seed, "voices", split, index // len(voices)).sample(voices, len(voices))
        r = _rng(cfg.seed, "params", split, index)
        specs.append(
            UttSpec(
                utt_id=f"synth-{split}-{index:06d}",
                split=split,
                index=index,
                text=text,
                voice=block_perm[index % len(voices)],
                rate_wpm=r.randint(*cfg.rate_wpm),
                pitch=r.randint(*cfg.pitch),
                pitch_range=r.randint(*cfg.pitch_range),
                margin_s=round(r.uniform(*cfg.margin_s), 3),
                gain_db=round(r.uniform(*cfg.gain_db), 2),
                snr_db=None if cfg.snr_db is None else round(r.uniform(*cfg.snr_db), 1),
                seed=_seed32(cfg.seed, "audio", split, index),
            )
        )
    return specs


def plan_corpus(cfg: SynthConfig) -> list[UttSpec]:
    return [spec for split in SPLITS for spec in plan_split(cfg, split)]


# ---------------------------------------------------------------------------- audio


def render(samples: np.ndarray, spec: UttSpec, sample_rate: int = espeak.SAMPLE_RATE) -> np.ndarray:
    """espeak int16 output -> the stored int16 clip: fixed silence margins, gain, white noise.

    Sums are integer and the float64 steps element-wise (no BLAS or SIMD reductions whose rounding
    depends on the CPU), so the bytes depend only on the input and the package versions.
    """
    x = samples.astype(np.int64)
    loud = np.flatnonzero(np.abs(x) > max(64, int(np.abs(x).max(initial=0)) // 50))
    if loud.size == 0:
        raise ValueError(f"{spec.utt_id}: espeak produced silence for {spec.text!r} ({spec.voice})")
    margin = int(round(spec.margin_s * sample_rate))
    speech = x[loud[0] : loud[-1] + 1]
    y = np.zeros(len(speech) + 2 * margin, dtype=np.float64)
    y[margin : margin + len(speech)] = speech
    y *= 10.0 ** (spec.gain_db / 20.0)
    if spec.snr_db is not None:
        power = float(np.dot(speech, speech)) / len(y) * (10.0 ** (spec.gain_db / 10.0))  # int64: exact
        sigma = math.sqrt(power / (10.0 ** (spec.snr_db / 10.0)))
        # RandomState: numpy keeps its stream frozen across versions, unlike Generator's
        y += sigma * np.random.RandomState(spec.seed).standard_normal(len(y))
    np.rint(y, out=y)
    np.clip(y, -32768, 32767, out=y)
    return y.astype(np.int16)


def synthesize_utterance(spec: UttSpec) -> np.ndarray:
    """One utterance's clip. Bytes match the corpus only for a shard's first utterance in a fresh process."""
    samples = espeak.synthesize(spec.text, spec.voice, spec.rate_wpm, spec.pitch, spec.pitch_range, spec.seed)
    return render(samples, spec)


def _init_worker() -> None:
    if espeak.utterances_synthesised():
        raise RuntimeError("worker inherited a used espeak engine: shards need a fresh process")
    espeak.init()


def _synthesize_shard(job: tuple[list[UttSpec], str]) -> tuple[int, int]:
    """Speak one shard in order into its files; return (utterances, samples)."""
    specs, out_dir = job
    total = 0
    for spec in specs:
        clip = synthesize_utterance(spec)
        with atomic_path(Path(out_dir) / spec.audio) as tmp:
            sf.write(tmp, clip, espeak.SAMPLE_RATE, format="FLAC", subtype="PCM_16")
        total += len(clip)
    return len(specs), total


def shards(specs: list[UttSpec]) -> list[list[UttSpec]]:
    """Consecutive blocks of SHARD_SIZE utterances of one split (``index // SHARD_SIZE``)."""
    groups: dict[tuple[str, int], list[UttSpec]] = {}
    for spec in specs:
        groups.setdefault((spec.split, spec.index // SHARD_SIZE), []).append(spec)
    return [sorted(g, key=lambda s: s.index) for g in groups.values()]


def build_synthetic_corpus(cfg: SynthConfig, out_dir: Path, progress: bool = True) -> list[SourceItem]:
    """Plan and synthesise the corpus into ``out_dir``; return its items (audio relative to out_dir).

    Also writes ``synth_config.json`` and ``synth_params.jsonl`` (every utterance's parameters).
    """
    out_dir = Path(out_dir)
    missing = espeak.missing_voices(cfg.accents, cfg.variants)
    if missing:
        raise ValueError(f"synthetic: espeak-ng data has no {', '.join(missing)}")
    t0 = time.perf_counter()
    specs = plan_corpus(cfg)
    jobs = [(shard, str(out_dir)) for shard in shards(specs)]
    t_plan = time.perf_counter() - t0
    samples = 0
    if jobs:
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload([__name__])  # children fork from a server that imported, never ran, espeak
        # one shard per process; a worker that dies raises BrokenProcessPool here instead of hanging
        with (
            ProcessPoolExecutor(
                min(cfg.workers, len(jobs)), mp_context=ctx, initializer=_init_worker, max_tasks_per_child=1
            ) as pool,
            tqdm(total=len(specs), unit="utt", desc="synthesising", disable=not progress) as bar,
        ):
            futures = [pool.submit(_synthesize_shard, job) for job in jobs]
            try:
                for future in as_completed(futures):
                    n, n_samples = future.result()
                    samples += n_samples
                    bar.update(n)
            except BaseException:
                for future in futures:  # drop queued shards; leaving the block waits for running ones
                    future.cancel()
                raise
    wall = time.perf_counter() - t0
    seconds = samples / espeak.SAMPLE_RATE
    log.info(
        "synthetic corpus: %d utterances, %.2f h of audio in %.1f s (plan %.1f s): %.0fx real time",
        len(specs),
        seconds / 3600,
        wall,
        t_plan,
        seconds / max(wall, 1e-9),
    )
    atomic_write_json(out_dir / "synth_config.json", cfg.to_dict())
    write_jsonl(out_dir / "synth_params.jsonl", (asdict(s) for s in specs))
    return [SourceItem(utt_id=s.utt_id, split=s.split, audio=s.audio, text=s.text, speaker=s.voice) for s in specs]
