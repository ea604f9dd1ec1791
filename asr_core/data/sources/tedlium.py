"""TED-LIUM from a local release: STM segments of the talks' SPHERE files.

Layouts (``release`` picks the folder names)::

    TEDLIUM_release1/{train,dev,test}/{sph,stm}/            release 1 (release 2 alike)
    TEDLIUM_release-3/legacy/{train,dev,test}/{sph,stm}/    release 3

``path`` may be the folder holding the release folder, the release folder itself
(for release 3 also its ``legacy/``), or the release tarball, extracted safely
into ``out_dir/extracted``. ``splits`` maps our split name to a folder under the
release (under ``legacy/`` for release 3).

STM lines are ``<file> <channel> <speaker> <start> <end> [<label>] <transcript...>``;
the sixth field is the label when it is one ``<...>`` token other than ``<unk>``
and ``<sil>`` (TED-LIUM has ``<o,f0,male>``, ``<F0_M>`` in release 1/2 dev, ``<NA>``
in release 3). Lines starting with ``;;`` are comments. Segments whose transcript
holds ``ignore_time_segment_in_scoring`` are skipped, and so are segments with
``end <= start`` (counted and logged: they hold no audio).

Transcript cleaning (:func:`clean_transcript`), in order (as Kaldi's recipes do):

1. Brace tokens (``{NOISE}``, ``{SMACK}``, ``{BREATH}``...) and ``<sil>`` are removed.
2. Alternate-pronunciation markers are stripped: ``the(2)`` -> ``the``; a final
   ``(...)`` token (the utterance name some release 1 train lines end with) is dropped.
3. Detached contractions join the word before: ``it 's`` -> ``it's``
   (``'s 're 've 'll 'd 'm 't n't``; other ``'`` tokens stay as they are).
4. ``<unk>`` tokens (and words they were joined to, ``<unk>'s``) are removed and
   counted; the count per split is logged. A segment may end up with empty text:
   it is kept, and the prepare stage rejects it.

Items: ``audio`` = the talk's ``.sph`` (absolute when read in place, relative to
``out_dir`` when extracted), ``offset`` = start, ``duration`` = end - start,
``utt_id`` = ``<file>-<start in cs, 7 digits>-<end in cs, 7 digits>`` (Kaldi
style; centiseconds are rounded, not truncated), ``speaker`` = the STM speaker.
The STM channel is not kept: TED-LIUM talks are mono.
"""

from __future__ import annotations

import logging
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterator, Mapping

from tqdm import tqdm

from asr_core.data.items import SourceItem
from asr_core.data.sources.local import (
    audio_ref,
    check_path,
    check_splits,
    config_from_dict,
    local_or_extracted,
)

log = logging.getLogger(__name__)

RELEASE_DIRS = {1: "TEDLIUM_release1", 2: "TEDLIUM_release2", 3: "TEDLIUM_release-3"}
IGNORE = "ignore_time_segment_in_scoring"
UNK = "<unk>"
SIL = "<sil>"
CLITICS = frozenset({"'s", "'re", "'ve", "'ll", "'d", "'m", "'t", "n't"})

_BRACES = re.compile(r"^\{[^{}]*\}$")
_ALT_PRON = re.compile(r"\(\d+\)$")
_LABEL = re.compile(r"^<[^<>]*>$")
_UTT_NAME = re.compile(r"^\(\S*\)$")


@dataclass(frozen=True)
class TedliumConfig:
    path: str  # folder holding the release, the release folder, or the release tarball
    release: int = 3
    splits: dict[str, str] = field(default_factory=lambda: {"train": "train", "dev": "dev", "test": "test"})

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", check_path(self.path, "TedliumConfig"))
        if isinstance(self.release, bool) or self.release not in RELEASE_DIRS:
            raise ValueError(f"TedliumConfig.release must be one of {sorted(RELEASE_DIRS)}, got {self.release!r}")
        object.__setattr__(self, "splits", check_splits(self.splits, "TedliumConfig"))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "TedliumConfig":
        return config_from_dict(cls, d)


@dataclass(frozen=True)
class StmSegment:
    file: str
    channel: str
    speaker: str
    start: float
    end: float
    label: str
    transcript: str
    where: str  # "file.stm:line", for error messages


@dataclass
class TedliumStats:
    segments: int = 0  # items produced
    ignored: int = 0  # ignore_time_segment_in_scoring
    bad_times: int = 0  # end <= start, skipped
    unk_removed: int = 0  # <unk> tokens removed
    empty_text: int = 0  # items whose text is empty after cleaning


def fetch_tedlium(cfg: TedliumConfig, out_dir: Path, progress: bool = True) -> list[SourceItem]:
    """Turn every configured split's STM segments into items; nothing is downloaded."""
    out_dir = Path(out_dir)
    base, extracted = local_or_extracted(cfg.path, out_dir, "TedliumConfig")
    split_base = find_split_base(base, cfg)
    dirs = {split: split_base / name for split, name in cfg.splits.items()}
    for split, d in dirs.items():  # check all before reading any
        for sub in ("stm", "sph"):
            if not (d / sub).is_dir():
                raise FileNotFoundError(
                    f"{d / sub}: TED-LIUM folder not found (TedliumConfig.splits[{split!r}] = {cfg.splits[split]!r})"
                )
    items: list[SourceItem] = []
    for split, d in dirs.items():
        stms = sorted((d / "stm").glob("*.stm"))
        if not stms:
            raise FileNotFoundError(f"{d / 'stm'}: no .stm files (TedliumConfig.splits[{split!r}])")
        stats = TedliumStats()
        for stm in tqdm(stms, desc=f"tedlium {split}", unit=" talks", disable=not progress):
            for seg in _segments(stm, d / "sph", stats):
                text, n_unk = clean_transcript(seg.transcript)
                stats.unk_removed += n_unk
                stats.empty_text += not text
                stats.segments += 1
                items.append(
                    SourceItem(
                        utt_id=f"{seg.file}-{round(seg.start * 100):07d}-{round(seg.end * 100):07d}",
                        split=split,
                        audio=audio_ref(d / "sph" / f"{seg.file}.sph", out_dir, extracted),
                        text=text,
                        speaker=seg.speaker,
                        offset=seg.start,
                        duration=round(seg.end - seg.start, 6),
                    )
                )
        log.info("tedlium %s: %s", split, stats)
        if stats.bad_times:
            log.warning("tedlium %s: skipped %d segment(s) with end <= start", split, stats.bad_times)
    return items


def find_split_base(base: Path, cfg: TedliumConfig) -> Path:
    """The folder holding the split folders: ``<release>/`` (1, 2) or ``<release>/legacy/`` (3)."""
    rel = RELEASE_DIRS[cfg.release]
    if cfg.release == 3:
        candidates = [base / rel / "legacy", base / "legacy", base]
    else:
        candidates = [base / rel, base]
    for c in candidates:
        if any((c / name / "stm").is_dir() for name in cfg.splits.values()):
            return c
    layout = f"{rel}/legacy/<split>/{{sph,stm}}" if cfg.release == 3 else f"{rel}/<split>/{{sph,stm}}"
    raise FileNotFoundError(
        f"{base}: no TED-LIUM release {cfg.release} layout ({layout}, splits {sorted(cfg.splits.values())}) "
        f"found there (TedliumConfig.path = {cfg.path!r}, TedliumConfig.release = {cfg.release})"
    )


def read_stm(path: Path) -> Iterator[StmSegment]:
    """Yield every segment line of an STM file (comments and blank lines skipped)."""
    with open(path, encoding="utf-8") as f:
        try:
            for lineno, line in enumerate(f, 1):
                seg = _parse_stm_line(line, f"{path}:{lineno}")
                if seg is not None:
                    yield seg
        except UnicodeDecodeError as e:  # decoded in chunks: no reliable line number
            raise ValueError(f"{path}: not UTF-8 ({e.reason})") from e


def _parse_stm_line(line: str, where: str) -> StmSegment | None:
    if not line.strip() or line.lstrip().startswith(";;"):
        return None
    parts = line.split()
    if len(parts) < 5:
        raise ValueError(f"{where}: expected '<file> <channel> <speaker> <start> <end> ...', got {line.strip()!r}")
    try:
        start, end = float(parts[3]), float(parts[4])
    except ValueError:
        raise ValueError(f"{where}: start/end must be seconds, got {parts[3]!r} {parts[4]!r}") from None
    rest = parts[5:]
    has_label = rest and _LABEL.match(rest[0]) and rest[0].lower() not in (UNK, SIL)
    label = rest.pop(0) if has_label else ""
    return StmSegment(parts[0], parts[1], parts[2], start, end, label, " ".join(rest), where)


def clean_transcript(text: str) -> tuple[str, int]:
    """Apply the module's cleaning rules; return ``(clean text, number of <unk> removed)``."""
    tokens = text.split()
    if tokens and _UTT_NAME.match(tokens[-1]):
        tokens.pop()
    words: list[str] = []
    for tok in tokens:
        if _BRACES.match(tok) or tok.lower() == SIL:
            continue
        tok = _ALT_PRON.sub("", tok)
        if not tok:
            continue
        if tok.lower() in CLITICS and words:
            words[-1] += tok
        else:
            words.append(tok)
    kept = [w for w in words if UNK not in w.lower()]
    return " ".join(kept), len(words) - len(kept)


def _segments(stm: Path, sph_dir: Path, stats: TedliumStats) -> Iterator[StmSegment]:
    """The usable segments of one STM file; checks each talk's .sph once."""
    seen: set[str] = set()
    for seg in read_stm(stm):
        if IGNORE in seg.transcript.split():
            stats.ignored += 1
            continue
        if seg.end <= seg.start:
            stats.bad_times += 1
            if stats.bad_times <= 5:
                log.warning("%s: segment end %s <= start %s, skipped", seg.where, seg.end, seg.start)
            continue
        if seg.file not in seen:
            sph = sph_dir / f"{seg.file}.sph"
            if not sph.is_file():
                raise FileNotFoundError(f"{sph}: audio for {seg.where} not found")
            seen.add(seg.file)
        yield seg
