"""LibriSpeech (openslr resource 12) and Mini LibriSpeech (resource 31) as a corpus source.

For each configured subset, the first of these that applies is used:

1. ``local_path`` holds it extracted (``LibriSpeech/<subset>/`` or ``<subset>/``):
   read in place, audio paths absolute, nothing copied or downloaded.
2. ``out_dir/LibriSpeech/<subset>/`` exists: an earlier run extracted it.
3. ``local_path`` holds ``<subset>.tar.gz``: md5-verified, then extracted into out_dir.
4. Otherwise ``<mirror>/<resource>/<subset>.tar.gz`` is downloaded into ``cache_dir``
   (resumable, md5-verified, kept so a re-run never downloads it again) and extracted.

A tarball whose md5 differs from the official table is never extracted. A bad
download is deleted; a bad tarball under ``local_path`` is the user's file and is
left in place (the error says so). Extraction is all or nothing: the archive is
checked and extracted into a scratch folder under ``out_dir/LibriSpeech``, and
``<subset>/`` is renamed into place last, so its existence means it is complete.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from asr_core.data.download import ArchiveError, download_file, safe_extract_tar, verify_md5
from asr_core.data.items import SourceItem

log = logging.getLogger(__name__)

DEFAULT_MIRROR = "https://www.openslr.org/resources"


@dataclass(frozen=True)
class LibriSpeechSubset:
    name: str
    resource: int  # the openslr resource number
    md5: str  # of <name>.tar.gz, as openslr publishes it

    def url(self, mirror: str = DEFAULT_MIRROR) -> str:
        return f"{mirror.rstrip('/')}/{self.resource}/{self.name}.tar.gz"


SUBSETS: dict[str, LibriSpeechSubset] = {
    s.name: s
    for s in (
        LibriSpeechSubset("dev-clean", 12, "42e2234ba48799c1f50f24a7926300a1"),
        LibriSpeechSubset("dev-other", 12, "c8d0bcc9cca99d4f8b62fcc847357931"),
        LibriSpeechSubset("test-clean", 12, "32fa31d27d2e1cad72775fee3f4849a9"),
        LibriSpeechSubset("test-other", 12, "fb5a50374b501bb3bac4815ee91d3135"),
        LibriSpeechSubset("train-clean-100", 12, "2a93770f6d5c6c964bc36631d331a522"),
        LibriSpeechSubset("train-clean-360", 12, "c0e676e450a7ff2f54aeade5171606fa"),
        LibriSpeechSubset("train-other-500", 12, "d1a0fd59409feb2c614ce4d30c387708"),
        LibriSpeechSubset("train-clean-5", 31, "5df7d4e78065366204ca6845bb08f490"),
        LibriSpeechSubset("dev-clean-2", 31, "6d7ab67ac6a1d2c993d050e16d61080d"),
    )
}


def _default_splits() -> dict[str, list[str]]:
    return {"train": ["train-clean-100"], "dev": ["dev-clean"], "test": ["test-clean"]}


@dataclass
class LibriSpeechConfig:
    splits: dict[str, list[str]] = field(default_factory=_default_splits)  # split name -> subsets
    mirror: str = DEFAULT_MIRROR
    local_path: str | None = None  # extracted LibriSpeech/<subset>/, <subset>/, or <subset>.tar.gz files
    cache_dir: str = "data/cache/downloads"  # verified tarballs; relative to the working directory
    retries: int = 5
    backoff: float = 2.0
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.splits, dict) or not self.splits:
            raise ValueError(f"LibriSpeechConfig.splits must map split names to subset lists, got {self.splits!r}")
        seen: dict[str, str] = {}
        for split, subsets in self.splits.items():
            if isinstance(subsets, str) or not isinstance(subsets, (list, tuple)) or not subsets:
                raise ValueError(
                    f"LibriSpeechConfig.splits[{split!r}] must be a non-empty list of subsets, got {subsets!r}"
                )
            for subset in subsets:
                if subset not in SUBSETS:
                    raise ValueError(
                        f"LibriSpeechConfig.splits[{split!r}]: unknown subset {subset!r}; valid: {sorted(SUBSETS)}"
                    )
                if subset in seen:
                    raise ValueError(f"LibriSpeech subset {subset!r} is in splits {seen[subset]!r} and {split!r}")
                seen[subset] = split
        self.splits = {split: list(subsets) for split, subsets in self.splits.items()}
        if not isinstance(self.retries, int) or self.retries < 0:
            raise ValueError(f"LibriSpeechConfig.retries must be an int >= 0, got {self.retries!r}")
        if self.backoff < 0 or self.timeout <= 0:
            raise ValueError(
                f"LibriSpeechConfig needs backoff >= 0 and timeout > 0, got {self.backoff!r}, {self.timeout!r}"
            )

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["splits"] = {split: list(subsets) for split, subsets in self.splits.items()}
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "LibriSpeechConfig":
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"LibriSpeechConfig: unknown key(s) {unknown}; valid keys: {names}")
        return cls(**d)


def fetch_librispeech(cfg: LibriSpeechConfig, out_dir: str | os.PathLike, progress: bool = True) -> list[SourceItem]:
    """Make every configured subset available and list its utterances, sorted by (split, utt_id).

    Audio paths are relative to ``out_dir`` when extracted there, absolute when read
    in place from ``local_path``.
    """
    out_dir = Path(out_dir)
    items: list[SourceItem] = []
    for split, subsets in cfg.splits.items():
        for subset in subsets:
            subset_dir = obtain_subset(cfg, subset, out_dir, progress=progress)
            items.extend(read_librispeech_subset(subset_dir, split, relative_to=out_dir))
    _check_unique(items)
    return sorted(items, key=lambda it: (it.split, it.utt_id))


def obtain_subset(cfg: LibriSpeechConfig, subset: str, out_dir: str | os.PathLike, progress: bool = True) -> Path:
    """The folder holding ``<speaker>/<chapter>/`` of ``subset``, downloading/extracting it if needed."""
    info = SUBSETS[subset]
    out_dir = Path(out_dir)
    local = Path(cfg.local_path).expanduser() if cfg.local_path else None
    if local is not None:
        if not local.is_dir():
            raise FileNotFoundError(f"LibriSpeechConfig.local_path is not a folder: {local}")
        for candidate in (local / "LibriSpeech" / subset, local / subset):
            if candidate.is_dir():
                log.info("LibriSpeech %s: reading in place from %s", subset, candidate)
                return candidate.absolute()

    target = out_dir / "LibriSpeech" / subset
    if target.is_dir():
        log.info("LibriSpeech %s: already extracted in %s", subset, target)
        return target

    local_tar = local / f"{subset}.tar.gz" if local is not None else None
    if local_tar is not None and local_tar.is_file():
        log.info("LibriSpeech %s: verifying %s", subset, local_tar)
        verify_md5(local_tar, info.md5, delete=False)  # the user's file: report it, do not delete it
        tarball = local_tar
    else:
        tarball = download_file(
            info.url(cfg.mirror),
            Path(cfg.cache_dir) / f"{subset}.tar.gz",
            md5=info.md5,
            retries=cfg.retries,
            backoff=cfg.backoff,
            timeout=cfg.timeout,
            progress=progress,
        )
    extract_subset(tarball, subset, out_dir)
    return target


def extract_subset(tarball: str | os.PathLike, subset: str, out_dir: str | os.PathLike) -> Path:
    """Extract ``LibriSpeech/<subset>/`` of a verified tarball to ``out_dir/LibriSpeech/<subset>``.

    The top-level metadata files (README.TXT, SPEAKERS.TXT, CHAPTERS.TXT...) are kept
    beside it unless already there. Assumes one writer per ``out_dir`` at a time.
    """
    root = Path(out_dir) / "LibriSpeech"
    root.mkdir(parents=True, exist_ok=True)
    target = root / subset
    scratch = root / f".{subset}.extract"
    for leftover in [scratch, *root.glob(f".{scratch.name}.partial-*")]:  # from a killed run
        shutil.rmtree(leftover, ignore_errors=True)
    safe_extract_tar(tarball, scratch)
    try:
        src = scratch / "LibriSpeech" / subset
        if not src.is_dir():
            found = sorted(p.relative_to(scratch).as_posix() for p in scratch.glob("*/*"))[:10]
            raise ArchiveError(f"{tarball}: expected LibriSpeech/{subset}/ inside, found {found}")
        for meta in sorted((scratch / "LibriSpeech").iterdir()):
            if meta.is_file() and not (root / meta.name).exists():
                os.replace(meta, root / meta.name)
        os.rename(src, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    log.info("LibriSpeech %s: extracted %s into %s", subset, tarball, target)
    return target


def read_librispeech_subset(
    subset_dir: str | os.PathLike, split: str, relative_to: str | os.PathLike | None = None
) -> list[SourceItem]:
    """List a subset folder's utterances from its ``<spk>/<chapter>/<spk>-<chapter>.trans.txt`` files.

    Each transcript line is ``<utt_id> <TRANSCRIPT>``; the text is kept as written
    (normalised later, in prepare). ``audio`` is the ``.flac`` beside the transcript,
    relative to ``relative_to`` when under it, absolute otherwise. A line whose flac is
    missing is still listed (prepare quarantines it); a malformed line is an error.
    """
    subset_dir = Path(subset_dir).absolute()
    if not subset_dir.is_dir():
        raise FileNotFoundError(f"LibriSpeech subset folder not found: {subset_dir}")
    base = Path(relative_to).absolute() if relative_to is not None else None
    trans_files = sorted(subset_dir.glob("*/*/*.trans.txt"))
    if not trans_files:
        raise ValueError(f"{subset_dir}: no <speaker>/<chapter>/*.trans.txt files; is this a LibriSpeech subset?")

    items: list[SourceItem] = []
    for trans in trans_files:
        speaker, chapter = trans.parent.parent.name, trans.parent.name
        prefix = f"{speaker}-{chapter}-"
        with open(trans, encoding="utf-8") as f:
            for lineno, line in enumerate(f, 1):
                line = line.strip()
                if not line:
                    continue
                utt_id, _, text = line.partition(" ")
                if not utt_id.startswith(prefix) or not text.strip():
                    raise ValueError(f"{trans}:{lineno}: expected '{prefix}<NNNN> <TRANSCRIPT>', got {line!r}")
                audio = trans.parent / f"{utt_id}.flac"
                ref = _audio_ref(audio, base)
                items.append(SourceItem(utt_id=utt_id, split=split, audio=ref, text=text.strip(), speaker=speaker))
    _check_unique(items)

    listed = {Path(it.resolve_audio(base or "/")) for it in items}
    missing = sum(not p.is_file() for p in listed)
    unlisted = sum(p not in listed for p in subset_dir.glob("*/*/*.flac"))
    if missing:
        log.warning("%s: %d transcript line(s) have no flac (listed; prepare quarantines them)", subset_dir, missing)
    if unlisted:
        log.warning("%s: %d flac file(s) have no transcript line and are not listed", subset_dir, unlisted)
    return sorted(items, key=lambda it: it.utt_id)


def _audio_ref(audio: Path, base: Path | None) -> str:
    if base is not None and audio.is_relative_to(base):
        return audio.relative_to(base).as_posix()
    return str(audio)


def _check_unique(items: list[SourceItem]) -> None:
    seen: dict[str, str] = {}
    for it in items:
        if it.utt_id in seen:
            raise ValueError(f"duplicate LibriSpeech utterance id {it.utt_id!r}: {seen[it.utt_id]} and {it.audio}")
        seen[it.utt_id] = it.audio
