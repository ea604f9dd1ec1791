"""Training data: a compact manifest, an audio dataset, and the loader that ties them to the sampler.

Pieces, each usable on its own:

- :class:`Manifest`: a NeMo-style JSON-lines manifest held in compact arrays, filtered by duration.
- :class:`AudioDataset`: ``dataset[i]`` reads one clip with soundfile, applies a reproducible
  per-item augmentation and tokenizes the transcript.
- :func:`build_loader`: manifest -> (:class:`ResumableLoader`, :class:`BucketingBatchSampler`).

Bad audio. A clip that is missing, unreadable, at the wrong sample rate, empty or non-finite
is not raised out of ``dataset[i]``: the dataset *returns* the :class:`BadUtterance`
(an exception instance, so ``dataset.load(i)`` can raise the same thing), the collate drops
it and lists ``(utt_id, reason)`` under ``batch["skipped"]``. The rest of the batch survives
and the loop logs the ids and keeps going. A batch can therefore be empty (B = 0); a DDP loop
must still take part in the collective step for it. Errors in *code* (a ``tokenize`` or
``wave_transform`` that raises, a transform returning the wrong type) are raised, with the
utterance id attached as a note: they are bugs or configuration mismatches, not bad files.

Reproducible augmentation. ``wave_transform(wave, rng)`` receives a ``numpy.random.Generator``
seeded from ``(seed, epoch, index)`` only, so the augmentation of an utterance is the same
whatever the number of workers, the batch it lands in or whether the run was resumed. The epoch
lives in a shared-memory tensor, so :meth:`AudioDataset.set_epoch` reaches persistent workers too.

Memory. Strings (paths, transcripts, ids) are stored as one UTF-8 byte buffer plus offsets
(:class:`StringArray`), not as Python lists: 300k rows cost a few tens of MB, and forked
DataLoader workers do not copy them page by page through reference counting
(pytorch/pytorch#13246).
"""

from __future__ import annotations

import array
import functools
import logging
import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import soundfile as sf
import torch
from torch.utils.data import Dataset

from asr_core.data.sampler import BucketingBatchSampler, ResumableLoader
from asr_core.io import read_jsonl

log = logging.getLogger(__name__)

MAX_TRAIN_DURATION = 16.7  # seconds; DLE drops longer training clips (REFERENCE.md, "Features")

WaveTransform = Callable[[torch.Tensor, np.random.Generator], torch.Tensor]


class BadUtterance(Exception):
    """An utterance whose audio cannot be used. Returned by ``AudioDataset[i]``, raised by ``load(i)``."""

    def __init__(self, utt_id: str, path: str, reason: str) -> None:
        super().__init__(utt_id, path, reason)  # args round-trip through pickle (DataLoader workers)
        self.utt_id, self.path, self.reason = utt_id, path, reason

    def __str__(self) -> str:
        return f"{self.utt_id}: {self.reason} ({self.path})"


class StringArray(Sequence[str]):
    """An immutable sequence of strings in one UTF-8 buffer plus int64 offsets."""

    def __init__(self, data: np.ndarray, offsets: np.ndarray) -> None:
        assert data.dtype == np.uint8 and offsets.dtype == np.int64, (data.dtype, offsets.dtype)
        assert offsets.ndim == 1 and len(offsets) >= 1 and offsets[-1] == len(data), (offsets[-1:], len(data))
        data.setflags(write=False)
        offsets.setflags(write=False)
        self._data, self._offsets = data, offsets

    @classmethod
    def from_strings(cls, strings: Iterable[str]) -> "StringArray":
        b = StringArrayBuilder()
        for s in strings:
            b.append(s)
        return b.build()

    def __len__(self) -> int:
        return len(self._offsets) - 1

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[j] for j in range(*i.indices(len(self)))]
        i = int(i)
        if i < 0:
            i += len(self)
        if not 0 <= i < len(self):
            raise IndexError(f"index {i} out of range for {len(self)} strings")
        return self._data[self._offsets[i] : self._offsets[i + 1]].tobytes().decode("utf-8")

    def take(self, indices: np.ndarray) -> "StringArray":
        """A new array holding the strings at ``indices``."""
        indices = np.asarray(indices, dtype=np.int64)
        starts, ends = self._offsets[indices], self._offsets[indices + 1]
        new_offsets = np.zeros(len(indices) + 1, dtype=np.int64)
        np.cumsum(ends - starts, out=new_offsets[1:])
        pieces = [self._data[a:b] for a, b in zip(starts.tolist(), ends.tolist())]
        data = np.concatenate(pieces) if pieces else self._data[:0].copy()
        return StringArray(data, new_offsets)

    @property
    def nbytes(self) -> int:
        return self._data.nbytes + self._offsets.nbytes


class StringArrayBuilder:
    """Append strings into one growing byte buffer (no list of Python strings on the way)."""

    def __init__(self) -> None:
        self._buf, self._ends = bytearray(), array.array("q", [0])

    def append(self, s: str) -> None:
        self._buf += s.encode("utf-8")
        self._ends.append(len(self._buf))

    def build(self) -> StringArray:
        return StringArray(np.frombuffer(bytes(self._buf), dtype=np.uint8), np.array(self._ends, dtype=np.int64))


@dataclass(frozen=True, eq=False)
class Manifest:
    """A manifest in compact arrays. Immutable: filters return a new manifest.

    ``paths`` are kept as written; :meth:`audio_path` resolves a relative one against ``root``
    (the manifest's folder). ``dropped`` counts rows removed by duration filters so far
    (``too_short`` / ``too_long``).
    """

    root: Path
    paths: StringArray
    texts: StringArray
    utt_ids: StringArray
    durations: np.ndarray  # (N,) float32 seconds
    dropped: dict[str, int] = field(default_factory=lambda: {"too_short": 0, "too_long": 0})
    source: str = ""

    def __post_init__(self) -> None:
        n = len(self.durations)
        assert len(self.paths) == len(self.texts) == len(self.utt_ids) == n, (
            len(self.paths),
            len(self.texts),
            len(self.utt_ids),
            n,
        )
        assert self.durations.dtype == np.float32, self.durations.dtype
        self.durations.setflags(write=False)

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        min_duration: float | None = None,
        max_duration: float | None = None,
        require_text: bool = True,
    ) -> "Manifest":
        """Read a JSON-lines manifest, keeping rows with ``min_duration <= duration <= max_duration``.

        Each row needs ``audio_filepath`` and ``duration`` (seconds, > 0) and ``text``; ``utt_id``
        defaults to the audio file's stem. A bad row or a repeated ``utt_id`` raises naming the row.
        ``require_text=False`` (self-supervised pre-training) accepts rows without ``text`` (read as "").
        """
        path = Path(path)
        # compared in float32, as stored, so that filter_duration() later agrees at the boundary
        lo = np.float32(-np.inf if min_duration is None else min_duration)
        hi = np.float32(np.inf if max_duration is None else max_duration)
        if lo > hi:
            raise ValueError(f"min_duration {min_duration} > max_duration {max_duration}")
        paths, texts, ids, durs = StringArrayBuilder(), StringArrayBuilder(), StringArrayBuilder(), array.array("f")
        dropped = {"too_short": 0, "too_long": 0}
        seen: set[str] = set()
        for row_no, row in enumerate(read_jsonl(path), 1):
            where = f"{path}: row {row_no}"
            audio, text, dur = row.get("audio_filepath"), row.get("text"), row.get("duration")
            if not isinstance(audio, str) or not audio:
                raise ValueError(f"{where}: 'audio_filepath' must be a non-empty string, got {audio!r}")
            if text is None and not require_text:
                text = ""
            if not isinstance(text, str):
                raise ValueError(f"{where}: 'text' must be a string, got {text!r}")
            if isinstance(dur, bool) or not isinstance(dur, (int, float)) or not dur > 0 or dur == float("inf"):
                raise ValueError(f"{where}: 'duration' must be a positive number of seconds, got {dur!r}")
            utt_id = row.get("utt_id") or Path(audio).stem
            if utt_id in seen:
                raise ValueError(f"{where}: duplicate utt_id {utt_id!r}")
            seen.add(utt_id)
            dur = np.float32(dur)
            if dur < lo:
                dropped["too_short"] += 1
                continue
            if dur > hi:
                dropped["too_long"] += 1
                continue
            paths.append(audio)
            texts.append(text)
            ids.append(utt_id)
            durs.append(dur)
        m = cls(
            root=Path(os.path.abspath(path.parent)),
            paths=paths.build(),
            texts=texts.build(),
            utt_ids=ids.build(),
            durations=np.frombuffer(durs, dtype=np.float32).copy(),
            dropped=dropped,
            source=str(path),
        )
        if dropped["too_short"] or dropped["too_long"]:
            log.info(
                "%s: kept %d rows (%.2f h); dropped %d shorter than %s s and %d longer than %s s",
                path,
                len(m),
                m.total_seconds / 3600,
                dropped["too_short"],
                min_duration,
                dropped["too_long"],
                max_duration,
            )
        return m

    def __len__(self) -> int:
        return len(self.durations)

    @property
    def total_seconds(self) -> float:
        return float(self.durations.sum(dtype=np.float64))

    def audio_path(self, i: int) -> str:
        return os.path.join(self.root, self.paths[i])  # an absolute path stays as it is

    def subset(self, indices: np.ndarray, dropped: dict[str, int] | None = None) -> "Manifest":
        indices = np.asarray(indices, dtype=np.int64)
        return Manifest(
            root=self.root,
            paths=self.paths.take(indices),
            texts=self.texts.take(indices),
            utt_ids=self.utt_ids.take(indices),
            durations=self.durations[indices],
            dropped=dict(self.dropped) if dropped is None else dropped,
            source=self.source,
        )

    def filter_duration(self, min_duration: float | None = None, max_duration: float | None = None) -> "Manifest":
        """A new manifest without the rows outside [min_duration, max_duration]; ``dropped`` accumulates."""
        d = self.durations
        short = d < min_duration if min_duration is not None else np.zeros(len(d), dtype=bool)
        long = d > max_duration if max_duration is not None else np.zeros(len(d), dtype=bool)
        dropped = {
            "too_short": self.dropped.get("too_short", 0) + int(short.sum()),
            "too_long": self.dropped.get("too_long", 0) + int((long & ~short).sum()),
        }
        return self.subset(np.flatnonzero(~(short | long)), dropped)


class AudioDataset(Dataset):
    """``dataset[i]`` -> ``{"utt_id", "wave": float32 (T,), "tokens": int64 (U,), "duration"}`` or a BadUtterance.

    ``duration`` is the manifest's (source audio seconds, before augmentation); the real
    length after ``wave_transform`` is ``len(wave)``. Multi-channel files are averaged to mono;
    a file at another sample rate is a bad utterance (resampling belongs to the prepare stage).
    """

    def __init__(
        self,
        manifest: Manifest,
        tokenize: Callable[[str], list[int]],
        wave_transform: WaveTransform | None = None,
        sample_rate: int = 16000,
        seed: int = 0,
    ) -> None:
        self.manifest = manifest
        self.tokenize = tokenize
        self.wave_transform = wave_transform
        self.sample_rate = sample_rate
        self.seed = seed
        # shared memory: an update made in the main process is seen by (persistent) workers
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def __len__(self) -> int:
        return len(self.manifest)

    @property
    def epoch(self) -> int:
        return int(self._epoch.item())

    def set_epoch(self, epoch: int) -> None:
        self._epoch.fill_(int(epoch))

    def rng(self, index: int) -> np.random.Generator:
        """The augmentation generator of item ``index`` in the current epoch."""
        return np.random.default_rng([self.seed, self.epoch, int(index)])

    def __getitem__(self, index: int) -> dict[str, Any] | BadUtterance:
        try:
            return self.load(index)
        except BadUtterance as bad:
            return bad

    def load(self, index: int) -> dict[str, Any]:
        """Like ``dataset[index]`` but raises :class:`BadUtterance` for unusable audio."""
        m = self.manifest
        utt_id, path = m.utt_ids[index], m.audio_path(index)
        wave = self._read(utt_id, path)
        try:
            if self.wave_transform is not None:
                wave = self.wave_transform(wave, self.rng(index))
                if not (isinstance(wave, torch.Tensor) and wave.ndim == 1 and wave.dtype == torch.float32):
                    raise TypeError(
                        f"wave_transform must return a float32 tensor of shape (T,), got "
                        f"{type(wave).__name__} {getattr(wave, 'dtype', '')} {tuple(getattr(wave, 'shape', ()))}"
                    )
            tokens = torch.tensor(self.tokenize(m.texts[index]), dtype=torch.long)
        except Exception as e:
            e.add_note(f"while preparing utterance {utt_id!r} ({path})")
            raise
        return {"utt_id": utt_id, "wave": wave, "tokens": tokens, "duration": float(m.durations[index])}

    def _read(self, utt_id: str, path: str) -> torch.Tensor:
        if not os.path.isfile(path):
            raise BadUtterance(utt_id, path, "missing file")
        try:
            x, sr = sf.read(path, dtype="float32", always_2d=True)
        except Exception as e:  # any decoder failure is this file's problem; it is reported, not hidden
            raise BadUtterance(utt_id, path, f"unreadable: {type(e).__name__}: {e}") from None
        if sr != self.sample_rate:
            raise BadUtterance(utt_id, path, f"sample rate {sr} Hz, expected {self.sample_rate}")
        if x.shape[0] == 0:
            raise BadUtterance(utt_id, path, "empty audio")
        x = x[:, 0] if x.shape[1] == 1 else x.mean(axis=1)
        if not np.isfinite(x).all():
            raise BadUtterance(utt_id, path, "non-finite samples")
        return torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))


def _worker_init(worker_id: int) -> None:
    # One torch thread per worker: parallelism comes from the workers; more threads oversubscribe.
    torch.set_num_threads(1)
    # Global RNGs differ per worker (DataLoader already seeds torch); augmentation should use
    # the per-item rng instead, which alone is independent of the number of workers.
    seed = torch.initial_seed() % 2**32
    np.random.seed(seed)
    random.seed(seed)


def build_loader(
    manifest_path: str | os.PathLike,
    tokenize: Callable[[str], list[int]],
    *,
    batch_size: int | None = None,
    max_batch_seconds: float | None = None,
    num_buckets: int = 10,
    num_workers: int = 0,
    shuffle: bool = True,
    seed: int = 0,
    num_replicas: int = 1,
    rank: int = 0,
    min_duration: float | None = None,
    max_duration: float | None = MAX_TRAIN_DURATION,
    wave_transform: WaveTransform | None = None,
    sample_rate: int = 16000,
    drop_last: bool = False,
    pad_id: int = 0,
    persistent_workers: bool = False,
    pin_memory: bool | None = None,
    prefetch_factor: int | None = None,
    require_text: bool = True,
    wrap_dataset: Callable[[AudioDataset], Dataset] | None = None,
) -> tuple[ResumableLoader, BucketingBatchSampler]:
    """Manifest -> (loader, sampler). Give exactly one of ``batch_size`` / ``max_batch_seconds``.

    Per epoch: ``sampler.set_epoch(e)`` then iterate the loader (it passes the epoch on to the
    dataset). To resume: build the loader again, ``sampler.load_state_dict(saved)``, iterate.
    ``pin_memory`` defaults to on only when CUDA is available. Workers run one torch thread each
    and their global numpy/random seeds follow torch's per-worker seed (from a generator seeded
    with ``seed``); reproducible augmentation comes from the per-item rng, not from those.
    ``wrap_dataset``: the loader reads ``wrap_dataset(dataset)`` instead (e.g. a
    :class:`~asr_core.data.feature_cache.FeatureCache`; it keeps the dataset's ``set_epoch``).
    """
    from asr_core.data.collate import collate_batch

    manifest = Manifest.load(
        manifest_path, min_duration=min_duration, max_duration=max_duration, require_text=require_text
    )
    if len(manifest) == 0:
        raise ValueError(
            f"{manifest_path}: no rows left after the duration filter "
            f"[{min_duration}, {max_duration}] s (dropped: {manifest.dropped}); "
            f"widen train.data.min_duration / max_duration"
        )
    dataset = AudioDataset(manifest, tokenize, wave_transform=wave_transform, sample_rate=sample_rate, seed=seed)
    if wrap_dataset is not None:
        dataset = wrap_dataset(dataset)
    sampler = BucketingBatchSampler(
        manifest.durations,
        batch_size=batch_size,
        max_batch_seconds=max_batch_seconds,
        num_buckets=num_buckets,
        shuffle=shuffle,
        seed=seed,
        drop_last=drop_last,
        num_replicas=num_replicas,
        rank=rank,
    )
    if pin_memory is None:
        pin_memory = torch.cuda.is_available()
    workers_kw: dict[str, Any] = {}
    if num_workers > 0:
        workers_kw = {"persistent_workers": persistent_workers, "worker_init_fn": _worker_init}
        if prefetch_factor is not None:
            workers_kw["prefetch_factor"] = prefetch_factor
    loader = ResumableLoader(
        dataset,
        batch_sampler=sampler,
        collate_fn=functools.partial(collate_batch, pad_id=pad_id),
        num_workers=num_workers,
        pin_memory=pin_memory,
        generator=torch.Generator().manual_seed(seed),
        **workers_kw,
    )
    return loader, sampler
