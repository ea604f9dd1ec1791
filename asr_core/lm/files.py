"""Bringing an existing LM file into the ``lm`` stage's folder (official LibriSpeech LMs, KenLM builds).

An ARPA file (``.arpa`` or gzipped ``.arpa.gz``) is copied, decompressed, to
``lm.arpa``; a KenLM binary (``build_binary`` output, recognised by its header) to
``lm.bin``. Both are what :class:`~asr_core.decoding.beam.LexiconBeamDecoder` loads.
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path

from asr_core.io.atomic import atomic_path

KENLM_MAGIC = b"mmap lm http://kheafield.com/code"
LM_NAMES = ("lm.bin", "lm.arpa")  # what the lm stage writes, in the order a reader looks for them


def lm_kind(path: str | os.PathLike) -> str:
    """``"kenlm"`` (binary), ``"arpa"`` or ``"arpa.gz"``; anything else is a ValueError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"language model file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(64)
    if head.startswith(KENLM_MAGIC):
        return "kenlm"
    if head[:2] == b"\x1f\x8b":
        with gzip.open(path, "rb") as g:
            head = g.read(4096)
        kind = "arpa.gz"
    else:
        kind = "arpa"
    if b"\\data\\" not in head:
        raise ValueError(f"{path}: neither an ARPA file (no '\\data\\' header) nor a KenLM binary")
    return kind


def install_lm(src: str | os.PathLike, out_dir: str | os.PathLike) -> Path:
    """Copy ``src`` into ``out_dir`` as ``lm.arpa`` (decompressed) or ``lm.bin``, atomically."""
    kind = lm_kind(src)
    dst = Path(out_dir) / ("lm.bin" if kind == "kenlm" else "lm.arpa")
    opener = gzip.open if kind == "arpa.gz" else open
    with opener(src, "rb") as fin, atomic_path(dst) as tmp, open(tmp, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return dst


def find_lm(lm_dir: str | os.PathLike) -> Path:
    """The LM file the ``lm`` stage wrote into ``lm_dir``."""
    lm_dir = Path(lm_dir)
    for name in LM_NAMES:
        if (lm_dir / name).is_file():
            return lm_dir / name
    raise FileNotFoundError(f"no {' or '.join(LM_NAMES)} in {lm_dir} (run the lm stage first)")
