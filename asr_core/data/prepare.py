"""The prepare step: source index -> 16-bit mono audio at one rate + NeMo manifests.

For every :class:`~asr_core.data.items.SourceItem` of the index, in order:

1. Cheap checks first, in this process, so no decoding is wasted:
   ``duplicate_id`` (second and later occurrences), ``invalid_id`` (an id or split
   that is not a plain file name), ``invalid_segment`` (negative offset/duration),
   ``empty_transcript`` and ``out_of_alphabet`` (on the normalised text),
   ``missing_file``.
2. In a worker: header checks (``empty_audio`` for a 0-byte file or no frames,
   ``unreadable`` when libsndfile cannot open it, ``sample_rate_too_low``,
   ``too_short``/``too_long`` on the segment's duration), then decode only the
   segment (``unreadable`` on a decoder error or a short read), downmix, resample
   and write ``audio/<split>/<utt_id>.<format>`` atomically.

Fast path: a source that is already what we would write (16-bit mono FLAC at the
target rate, whole file, FLAC output) is decoded in full to validate it and then
copied byte for byte instead of being re-encoded; the copy carries the source's
FLAC metadata blocks along. Decoding stays because a header check alone would pass
a file whose audio frames are corrupt.

Durability: audio files are renamed into place without a per-file fsync; one
``os.sync()`` after the workers finish puts them on disk before the (fsync'd)
manifests are written.

Bad items never stop the run: they go to ``rejected.jsonl`` with a reason. Errors
that are not about an item (disk full, a bug) propagate. Outputs are written
atomically: audio by the workers, then ``rejected.jsonl``, ``summary.json`` and the
manifests ``<split>.jsonl`` last, so a manifest never names a file not yet written.
"""

from __future__ import annotations

import functools
import io
import math
import multiprocessing as mp
import os
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import soundfile as sf
import torch
from tqdm import tqdm

from asr_core.config import reject_unknown
from asr_core.data.audio import (
    FORMATS,
    audio_info,
    encode_audio,
    load_audio,
    resample,
    segment_frames,
    to_mono,
)
from asr_core.data.items import SourceItem, read_index
from asr_core.io import atomic_path, atomic_write_json, write_jsonl
from asr_core.text import normalize_text, out_of_alphabet

REASONS: tuple[str, ...] = (
    "missing_file",
    "unreadable",
    "empty_audio",
    "too_short",
    "too_long",
    "sample_rate_too_low",
    "empty_transcript",
    "out_of_alphabet",
    "duplicate_id",
    "invalid_id",  # utt_id or split not usable as a file/folder name ("a/b", "..", "rejected")
    "invalid_segment",  # negative or non-numeric offset/duration
)
REJECTED_NAME = "rejected.jsonl"
# the reasons a param decides: where to look when a corpus loses clips to one of them
PARAM_OF_REASON = {
    "too_short": "min_duration",
    "too_long": "max_duration",
    "sample_rate_too_low": "min_sample_rate",
}
SUMMARY_NAME = "summary.json"
STAGES = ("probe", "decode", "resample", "encode", "write")


@dataclass
class PrepareConfig:
    sample_rate: int = 16000
    format: str = "flac"  # flac | wav
    min_duration: float = 0.1  # seconds of source audio (the segment, for segments); a spoken digit: 0.14-0.3 s
    max_duration: float = 30.0
    # Inputs below this rate are rejected: upsampling telephone audio mixes
    # bandwidths in one corpus. Set 8000 to accept it.
    min_sample_rate: int = 16000
    workers: int = 2  # 1 runs in this process

    def __post_init__(self) -> None:
        for name in ("sample_rate", "min_sample_rate", "workers"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise ValueError(f"PrepareConfig.{name} must be a positive int, got {v!r}")
        for name in ("min_duration", "max_duration"):
            v = getattr(self, name)
            if not isinstance(v, (int, float)) or isinstance(v, bool) or v < 0:
                raise ValueError(f"PrepareConfig.{name} must be a number >= 0, got {v!r}")
        if self.min_duration > self.max_duration:
            raise ValueError(f"PrepareConfig.min_duration {self.min_duration} > max_duration {self.max_duration}")
        if self.format not in FORMATS:
            raise ValueError(f"PrepareConfig.format must be one of {sorted(FORMATS)}, got {self.format!r}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PrepareConfig:
        reject_unknown(cls, d, "prepare")
        return cls(**d)


@dataclass(frozen=True)
class _Job:
    """One item's work for a worker: small and picklable."""

    pos: int
    src: str
    offset: float
    duration: float | None
    dst: str


class _Clock:
    """Wall and CPU seconds per stage: wall minus CPU is time spent waiting (I/O, other jobs)."""

    def __init__(self) -> None:
        self.wall = dict.fromkeys(STAGES, 0.0)
        self.cpu = dict.fromkeys(STAGES, 0.0)
        self._w, self._c = time.perf_counter(), time.thread_time()

    def lap(self, stage: str) -> None:
        w, c = time.perf_counter(), time.thread_time()
        self.wall[stage] += w - self._w
        self.cpu[stage] += c - self._c
        self._w, self._c = w, c


def _result(job: _Job, clock: _Clock, reason: str | None, detail: str = "", **kw: Any) -> dict:
    return {"pos": job.pos, "reason": reason, "detail": detail, "wall": clock.wall, "cpu": clock.cpu} | kw


def _process(job: _Job, cfg: PrepareConfig) -> dict:
    """Validate, decode, downmix, resample and write one item; never raises for a bad item."""
    clock = _Clock()
    path = Path(job.src)
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return _result(job, clock, "missing_file", f"no such file: {path}")
    if size == 0:
        return _result(job, clock, "empty_audio", "file is empty (0 bytes)")
    try:
        info = audio_info(path)
    except sf.SoundFileError as e:
        return _result(job, clock, "unreadable", str(e))
    if info.sample_rate < cfg.min_sample_rate:
        detail = f"{info.sample_rate} Hz < min_sample_rate {cfg.min_sample_rate} Hz"
        return _result(job, clock, "sample_rate_too_low", detail)
    if info.frames == 0:
        return _result(job, clock, "empty_audio", f"no audio frames ({info.format}/{info.subtype})")
    start, count = segment_frames(info.sample_rate, job.offset, job.duration)
    available = info.frames - start
    if available <= 0:
        detail = f"segment offset {job.offset} s is at or past the end of the file ({info.duration:.3f} s)"
        return _result(job, clock, "empty_audio", detail)
    n = available if count < 0 else min(count, available)
    if n == 0:
        return _result(job, clock, "empty_audio", f"segment duration {job.duration} s is zero frames")
    src_seconds = n / info.sample_rate
    if src_seconds < cfg.min_duration:
        detail = f"{src_seconds:.3f} s < min_duration {cfg.min_duration} s"
        return _result(job, clock, "too_short", detail, src_seconds=src_seconds)
    if src_seconds > cfg.max_duration:
        detail = f"{src_seconds:.3f} s > max_duration {cfg.max_duration} s"
        return _result(job, clock, "too_long", detail, src_seconds=src_seconds)
    passthrough = (
        cfg.format == "flac"
        and info.format == "FLAC"
        and info.subtype == "PCM_16"
        and info.channels == 1
        and info.sample_rate == cfg.sample_rate
        and start == 0
        and n == info.frames
    )
    clock.lap("probe")
    try:
        if passthrough:
            data = path.read_bytes()
            x, _ = load_audio(io.BytesIO(data), dtype="int16")  # full decode = validation
        else:
            x, _ = load_audio(path, job.offset, job.duration)
    except sf.SoundFileError as e:
        return _result(job, clock, "unreadable", str(e), src_seconds=src_seconds)
    clock.lap("decode")
    if len(x) < n:
        detail = f"decoded {len(x)} of {n} frames the header promises (truncated or corrupt)"
        return _result(job, clock, "unreadable", detail, src_seconds=src_seconds)
    if not passthrough:
        try:
            x = resample(to_mono(x), info.sample_rate, cfg.sample_rate)
        except ValueError as e:  # an unusual rate pair: stop, naming the file
            raise ValueError(f"{path}: {e}") from e
        clock.lap("resample")
        data = encode_audio(x, cfg.sample_rate, cfg.format)
        clock.lap("encode")
    # Temp file + rename, without a per-file fsync: under I/O from other jobs each
    # fsync waited ~10 ms for a journal commit. prepare_corpus syncs once instead,
    # before the manifests that name these files are written.
    with atomic_path(job.dst) as tmp:
        tmp.write_bytes(data)
    clock.lap("write")
    return _result(
        job, clock, None, src_seconds=src_seconds, out_seconds=len(x) / cfg.sample_rate, passthrough=passthrough
    )


def _init_worker() -> None:
    # Two workers on two cores: intra-op threads would only oversubscribe.
    torch.set_num_threads(1)


def _safe_name(name: str) -> bool:
    return bool(name) and name not in (".", "..") and not any(c in name for c in "/\\\0")


def _valid_split(split: str) -> bool:
    # The split names a folder and a manifest beside rejected.jsonl.
    return _safe_name(split) and split != Path(REJECTED_NAME).stem


def _precheck(item: SourceItem, seen: set[str]) -> tuple[str | None, str]:
    """Checks that need no audio: (reason, detail) for a reject, else (None, normalised text)."""
    if item.utt_id in seen:
        return "duplicate_id", f"utt_id {item.utt_id!r} already seen earlier in the index"
    seen.add(item.utt_id)
    if not _safe_name(item.utt_id):
        return "invalid_id", f"utt_id {item.utt_id!r} is not usable as a file name"
    if not _valid_split(item.split):
        return "invalid_id", f"split {item.split!r} is not usable as a folder and manifest name"
    if not _valid_segment(item.offset, item.duration):
        return "invalid_segment", f"offset {item.offset!r} / duration {item.duration!r} seconds"
    text = normalize_text(item.text)
    if not text:
        return "empty_transcript", f"transcript {item.text!r} is empty after normalisation"
    bad = out_of_alphabet(text)
    if bad:
        return "out_of_alphabet", f"characters {bad!r} in {text!r}"
    return None, text


def _valid_segment(offset: Any, duration: Any) -> bool:
    def number(v: Any) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v >= 0

    return number(offset) and (duration is None or number(duration))


def _run_jobs(jobs: list[_Job], cfg: PrepareConfig, progress: bool) -> list[dict]:
    work = functools.partial(_process, cfg=cfg)
    bar = tqdm(total=len(jobs), unit="utt", desc="prepare", disable=not progress, smoothing=0.05)
    results: list[dict] = []
    try:
        if cfg.workers == 1 or len(jobs) <= 1:
            for job in jobs:
                results.append(work(job))
                bar.update()
        else:
            # fork: workers inherit the imported modules (importing torch again in a
            # spawned worker costs ~2 s); each worker then uses one intra-op thread.
            ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
            workers = min(cfg.workers, len(jobs))
            chunksize = max(1, min(16, len(jobs) // (workers * 8)))
            with ctx.Pool(workers, initializer=_init_worker) as pool:
                for r in pool.imap(work, jobs, chunksize=chunksize):
                    results.append(r)
                    bar.update()
    finally:
        bar.close()
    return results


def prepare_corpus(index_path: Path, out_dir: Path, cfg: PrepareConfig, progress: bool = True) -> dict:
    """Prepare every item of the source index ``index_path`` into ``out_dir``; return the summary.

    Writes ``audio/<split>/<utt_id>.<format>``, ``<split>.jsonl`` manifests (index
    order), ``rejected.jsonl`` and ``summary.json``. See the module docstring.
    """
    t_start = time.perf_counter()
    index_path, out_dir = Path(index_path), Path(out_dir)
    items = list(read_index(index_path))
    base = index_path.parent

    seen: set[str] = set()
    texts: dict[int, str] = {}
    rejects: dict[int, tuple[str, str]] = {}
    jobs: list[_Job] = []
    for pos, item in enumerate(items):
        reason, detail_or_text = _precheck(item, seen)
        if reason is not None:
            rejects[pos] = (reason, detail_or_text)
            continue
        src = item.resolve_audio(base)
        if not src.is_file():
            rejects[pos] = ("missing_file", f"no such file: {src}")
            continue
        texts[pos] = detail_or_text
        dst = out_dir / "audio" / item.split / f"{item.utt_id}.{cfg.format}"
        jobs.append(_Job(pos, str(src), float(item.offset), item.duration, str(dst)))

    results = _run_jobs(jobs, cfg, progress)
    t_sync = time.perf_counter()
    if hasattr(os, "sync"):
        os.sync()  # audio on disk before any manifest names it (workers skip fsync)
    t_sync = time.perf_counter() - t_sync

    wall_profile, cpu_profile = dict.fromkeys(STAGES, 0.0), dict.fromkeys(STAGES, 0.0)
    input_seconds = processed_seconds = 0.0
    passthrough = 0
    out_seconds: dict[int, float] = {}
    for r in results:
        for k in STAGES:
            wall_profile[k] += r["wall"][k]
            cpu_profile[k] += r["cpu"][k]
        input_seconds += r.get("src_seconds", 0.0)
        if r["reason"] is not None:
            rejects[r["pos"]] = (r["reason"], r["detail"])
        else:
            out_seconds[r["pos"]] = r["out_seconds"]
            processed_seconds += r["src_seconds"]
            passthrough += r["passthrough"]

    # Every valid split gets a manifest, empty if all its items were rejected.
    splits: dict[str, list[dict]] = {item.split: [] for item in items if _valid_split(item.split)}
    rejected_rows = []
    for pos, item in enumerate(items):
        if pos in rejects:
            reason, detail = rejects[pos]
            rejected_rows.append(
                {"utt_id": item.utt_id, "split": item.split, "audio": item.audio, "reason": reason, "detail": detail}
            )
            continue
        splits[item.split].append(
            {
                "audio_filepath": f"audio/{item.split}/{item.utt_id}.{cfg.format}",
                "duration": round(out_seconds[pos], 4),
                "text": texts[pos],
                "utt_id": item.utt_id,
                "speaker": item.speaker,
            }
        )

    wall = time.perf_counter() - t_start
    by_reason = Counter(row["reason"] for row in rejected_rows)
    summary = {
        "index": str(index_path),
        "config": cfg.to_dict(),
        "items": len(items),
        "accepted": len(items) - len(rejected_rows),
        "rejected": len(rejected_rows),
        "rejects_by_reason": {reason: by_reason.get(reason, 0) for reason in REASONS},
        "splits": {
            split: {
                "utterances": len(rows),
                "seconds": round(sum(r["duration"] for r in rows), 3),
                "hours": round(sum(r["duration"] for r in rows) / 3600, 4),
            }
            for split, rows in splits.items()
        },
        # Duration of every source segment whose header could be read (kept or not).
        "input_audio_seconds": round(input_seconds, 3),
        # Source audio actually decoded and written.
        "processed_audio_seconds": round(processed_seconds, 3),
        "passthrough_copies": passthrough,
        "wall_seconds": round(wall, 3),
        "real_time_factor": round(wall / processed_seconds, 6) if processed_seconds else None,
        "rtfx": round(processed_seconds / wall, 1) if wall > 0 else None,
        # Seconds per stage summed over workers, wall and CPU (the byte-copy fast
        # path counts as decode + write).
        "profile": {
            "wall_seconds": {k: round(v, 3) for k, v in wall_profile.items()},
            "cpu_seconds": {k: round(v, 3) for k, v in cpu_profile.items()},
        },
        "sync_seconds": round(t_sync, 3),
    }

    out_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(out_dir / REJECTED_NAME, rejected_rows)
    atomic_write_json(out_dir / SUMMARY_NAME, summary)
    for split, rows in splits.items():
        write_jsonl(out_dir / f"{split}.jsonl", rows)

    _print_summary(summary)
    _check_splits(summary, rejected_rows)
    return summary


def _check_splits(summary: dict, rejected_rows: list[dict]) -> None:
    """A split left without any utterance cannot serve the stages after this one: stop here, naming
    why its clips were rejected and the param that decides (the manifests and rejected.jsonl are
    written, for a look)."""
    empty = [split for split, s in summary["splits"].items() if s["utterances"] == 0]
    if not empty:
        return
    why = []
    for split in empty:
        reasons = Counter(r["reason"] for r in rejected_rows if r["split"] == split)
        top = ", ".join(
            f"{n} {reason}" + (f" (prepare.{PARAM_OF_REASON[reason]})" if reason in PARAM_OF_REASON else "")
            for reason, n in reasons.most_common(3)
        )
        why.append(f"{split}: {top or 'no items'}")
    raise ValueError(f"prepare: every clip of split(s) {empty} was rejected ({'; '.join(why)}); see rejected.jsonl")


def _print_summary(summary: dict) -> None:
    print(
        f"prepare: {summary['accepted']}/{summary['items']} utterances kept, "
        f"{summary['processed_audio_seconds'] / 3600:.3f} h in {summary['wall_seconds']:.1f} s "
        f"({summary['rtfx']}x real time)"
    )
    for split, s in summary["splits"].items():
        print(f"  {split}: {s['utterances']} utterances, {s['hours']:.4f} h")
    for reason, n in summary["rejects_by_reason"].items():
        if n:
            knob = f" (prepare.{PARAM_OF_REASON[reason]} decides)" if reason in PARAM_OF_REASON else ""
            print(f"  rejected {reason}: {n}{knob}")
    if not summary["rejected"]:
        print("  rejected: none")
