"""LibriSpeech audio plus the official LibriSpeech LM files (openslr resource 11).

``download.source: librispeech_lm`` fetches the audio exactly as the ``librispeech``
source does (its options go under ``librispeech:``) and, beside it, the LM files
named in ``files`` (``4-gram.arpa.gz``, ``3-gram.pruned.1e-7.arpa.gz``,
``librispeech-lexicon.txt``...) into ``<out>/librispeech_lm/``, where the lm stage's
``lm.arpa`` can point (``data/raw/librispeech_lm/4-gram.arpa.gz``).

Checksums: openslr does not list md5s for resource 11 on a page this project could
check, so no md5 is built in. Give the md5 of each file you trust in ``md5:``
(a mismatch is fatal and the file is deleted, as for the audio). A file without one
is refused unless ``allow_unverified: true``; then a gzipped file is still read
through once, which checks its gzip CRC-32 and length (a truncated or corrupted
download fails), and every file's size is reported.

Downloads go to ``cache_dir`` (outside DVC outputs, resumable, never fetched twice)
and are hard-linked (copied where links are impossible) into the output folder.
With ``local_path``, files found there are used instead of downloading.
"""

from __future__ import annotations

import gzip
import logging
import os
import shutil
import zlib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from asr_core.data.download import download_file, verify_md5
from asr_core.data.download.checksums import normalize_md5
from asr_core.data.items import SourceItem
from asr_core.data.sources.librispeech import (
    DEFAULT_MIRROR,
    LibriSpeechConfig,
    fetch_librispeech,
)
from asr_core.io.atomic import atomic_path

log = logging.getLogger(__name__)

RESOURCE = 11
LM_FILES = (
    "3-gram.arpa.gz",
    "3-gram.pruned.1e-7.arpa.gz",
    "3-gram.pruned.3e-7.arpa.gz",
    "4-gram.arpa.gz",
    "librispeech-lexicon.txt",
    "librispeech-vocab.txt",
    "librispeech-lm-norm.txt.gz",
)
OUT_SUBDIR = "librispeech_lm"


def _default_files() -> list[str]:
    return ["4-gram.arpa.gz", "librispeech-lexicon.txt"]


@dataclass
class LibriSpeechLMConfig:
    files: list[str] = field(default_factory=_default_files)  # names from LM_FILES
    md5: dict[str, str] = field(default_factory=dict)  # file -> md5 you trust
    allow_unverified: bool = False  # files without an md5: gzip CRC check only
    librispeech: dict[str, Any] = field(default_factory=dict)  # the audio: LibriSpeechConfig options
    mirror: str = DEFAULT_MIRROR
    local_path: str | None = None  # a folder already holding some of the files
    cache_dir: str = "data/cache/downloads"
    retries: int = 5
    backoff: float = 2.0
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if isinstance(self.files, str) or not isinstance(self.files, (list, tuple)):
            raise ValueError(f"LibriSpeechLMConfig.files must be a list of file names, got {self.files!r}")
        bad = [f for f in self.files if f not in LM_FILES]
        if bad:
            raise ValueError(
                f"LibriSpeechLMConfig.files: unknown file(s) {bad}; openslr resource 11 has {list(LM_FILES)}"
            )
        if not isinstance(self.md5, dict):
            raise ValueError(f"LibriSpeechLMConfig.md5 must map file names to md5s, got {self.md5!r}")
        for name, value in self.md5.items():
            if name not in LM_FILES:
                raise ValueError(f"LibriSpeechLMConfig.md5: unknown file {name!r}")
            try:
                self.md5[name] = normalize_md5(str(value))
            except ValueError as e:
                raise ValueError(f"LibriSpeechLMConfig.md5[{name!r}]: {e}") from None
        unverified = [f for f in self.files if f not in self.md5]
        if unverified and not self.allow_unverified:
            raise ValueError(
                f"LibriSpeechLMConfig: no md5 for {unverified}: give md5: {{file: md5}} "
                f"or set allow_unverified: true (gzip files are then CRC-checked only)"
            )
        LibriSpeechConfig.from_dict(dict(self.librispeech))  # fail early on bad audio options

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LibriSpeechLMConfig:
        names = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(names))
        if unknown:
            raise ValueError(f"LibriSpeechLMConfig: unknown key(s) {unknown}; valid keys: {names}")
        return cls(**d)


def fetch_librispeech_lm(
    cfg: LibriSpeechLMConfig, out_dir: str | os.PathLike, progress: bool = True
) -> list[SourceItem]:
    """Fetch the LM files into ``out_dir/librispeech_lm/``, then the LibriSpeech audio; return its items."""
    obtain_lm_files(cfg, Path(out_dir) / OUT_SUBDIR, progress=progress)
    return fetch_librispeech(LibriSpeechConfig.from_dict(dict(cfg.librispeech)), out_dir, progress=progress)


def obtain_lm_files(cfg: LibriSpeechLMConfig, dest_dir: str | os.PathLike, progress: bool = True) -> list[Path]:
    """Each of ``cfg.files`` verified in ``dest_dir``: from ``local_path`` or the mirror (via ``cache_dir``)."""
    dest_dir = Path(dest_dir)
    out = []
    for name in cfg.files:
        md5 = cfg.md5.get(name)
        local = Path(cfg.local_path).expanduser() / name if cfg.local_path else None
        if local is not None and local.is_file():
            src = local
            if md5:
                verify_md5(src, md5, delete=False)  # the user's file: reported, never deleted
        else:
            url = f"{cfg.mirror.rstrip('/')}/{RESOURCE}/{name}"
            src = download_file(
                url,
                Path(cfg.cache_dir) / name,
                md5=md5,
                retries=cfg.retries,
                backoff=cfg.backoff,
                timeout=cfg.timeout,
                progress=progress,
            )
        if not md5:
            check_unverified(src)
        out.append(_place(src, dest_dir / name))
        log.info(
            "LibriSpeech LM file %s: %d bytes, %s",
            name,
            out[-1].stat().st_size,
            "md5 verified" if md5 else "no md5 given (gzip CRC checked where gzipped)",
        )
    return out


def check_unverified(path: Path) -> None:
    """A file without an md5: non-empty, and a ``.gz`` must decompress whole (CRC-32 and length)."""
    if path.stat().st_size == 0:
        raise ValueError(f"{path}: empty file")
    if path.suffix == ".gz":
        try:
            with gzip.open(path, "rb") as f:
                while f.read(1 << 22):
                    pass
        except (OSError, EOFError, zlib.error) as e:
            raise ValueError(f"{path}: corrupt or truncated gzip file ({e}); delete it and download again") from e


def _place(src: Path, dst: Path) -> Path:
    """``dst`` holds ``src``'s bytes: a hard link if possible, else an atomic copy."""
    if dst.is_file() and dst.stat().st_size == src.stat().st_size and dst.samefile(src):
        return dst
    dst.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(dst) as tmp:
        tmp.unlink()
        try:
            os.link(src, tmp)
        except OSError:
            shutil.copyfile(src, tmp)
    return dst
