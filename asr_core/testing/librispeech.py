"""Tiny LibriSpeech-format corpora from synthetic audio, laid out like the openslr release.

    LibriSpeech/README.TXT, SPEAKERS.TXT
    LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>-<utt:04d>.flac
    LibriSpeech/<subset>/<spk>/<chapter>/<spk>-<chapter>.trans.txt   ("<utt_id> <UPPER CASE TEXT>" lines)

The tarball is byte-for-byte reproducible (fixed mtimes, owners, gzip header), so its
md5 is stable for a given set of arguments.
"""

from __future__ import annotations

import gzip
import io
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from asr_core.data.download.checksums import md5_file
from asr_core.testing.audio import write_audio

WORDS = [
    "THE",
    "OLD",
    "MAN",
    "SAID",
    "THAT",
    "HE",
    "WOULD",
    "NOT",
    "GO",
    "DOWN",
    "TO",
    "THE",
    "RIVER",
    "AGAIN",
    "BEFORE",
    "THE",
    "SPRING",
    "SHE",
    "DIDN'T",
    "KNOW",
    "WHY",
    "THE",
    "HOUSE",
    "WAS",
    "SO",
    "QUIET",
    "THAT",
    "EVENING",
    "AND",
    "MARY'S",
    "LETTER",
    "LAY",
    "UNOPENED",
]

DEFAULT_CHAPTERS: dict[str, list[str]] = {"19": ["198", "227"], "103": ["1240"]}


@dataclass(frozen=True)
class FakeLibriSpeech:
    path: Path  # the folder holding LibriSpeech/, or the .tar.gz
    subset: str
    transcripts: dict[str, str]  # utt_id -> text, sorted by utt_id
    speakers: dict[str, str]  # utt_id -> speaker
    md5: str | None = None  # of the tarball

    def audio_relpath(self, utt_id: str) -> str:
        """Where the flac sits relative to the folder holding LibriSpeech/."""
        spk, chapter, _ = utt_id.split("-")
        return f"LibriSpeech/{self.subset}/{spk}/{chapter}/{utt_id}.flac"


def make_librispeech_tree(
    root: str | Path,
    subset: str = "dev-clean",
    chapters: dict[str, list[str]] | None = None,
    utts_per_chapter: int = 2,
    seconds: float = 0.25,
    sample_rate: int = 16000,
    seed: int = 0,
) -> FakeLibriSpeech:
    """Write ``root/LibriSpeech/<subset>/...`` (and the top-level metadata files)."""
    root = Path(root)
    chapters = DEFAULT_CHAPTERS if chapters is None else chapters
    rng = np.random.default_rng(seed)
    top = root / "LibriSpeech"
    top.mkdir(parents=True, exist_ok=True)
    (top / "README.TXT").write_text("LibriSpeech ASR corpus (synthetic test copy)\n")
    speakers_txt = "".join(f"{spk:<4} | F | {subset:<16} | 1.00 | Speaker {spk}\n" for spk in sorted(chapters))
    (top / "SPEAKERS.TXT").write_text(";ID  |SEX| SUBSET           |MINUTES| NAME\n" + speakers_txt)

    transcripts: dict[str, str] = {}
    speakers: dict[str, str] = {}
    for spk in sorted(chapters):
        for chapter in sorted(chapters[spk]):
            folder = top / subset / spk / chapter
            lines = []
            for u in range(utts_per_chapter):
                utt_id = f"{spk}-{chapter}-{u:04d}"
                n = int(rng.integers(3, 9))
                text = " ".join(WORDS[int(i)] for i in rng.integers(0, len(WORDS), size=n))
                write_audio(folder / f"{utt_id}.flac", seconds, sample_rate, seed=int(rng.integers(1 << 31)))
                lines.append(f"{utt_id} {text}\n")
                transcripts[utt_id] = text
                speakers[utt_id] = spk
            (folder / f"{spk}-{chapter}.trans.txt").write_text("".join(lines))
    return FakeLibriSpeech(root, subset, dict(sorted(transcripts.items())), speakers)


def make_librispeech_tarball(path: str | Path, subset: str = "dev-clean", **kwargs) -> FakeLibriSpeech:
    """Write ``<path>`` (e.g. ``.../dev-clean.tar.gz``) holding ``LibriSpeech/...`` as the release does.

    Keyword arguments go to :func:`make_librispeech_tree`; the tree is built in a
    temporary folder and removed afterwards.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".fake-librispeech-") as tmp:
        tree = make_librispeech_tree(tmp, subset, **kwargs)
        _write_tar_gz(path, Path(tmp) / "LibriSpeech")
    return FakeLibriSpeech(path, subset, tree.transcripts, tree.speakers, md5=md5_file(path))


def _write_tar_gz(path: Path, top: Path) -> None:
    def normalise(ti: tarfile.TarInfo) -> tarfile.TarInfo:
        ti.mtime, ti.uid, ti.gid, ti.uname, ti.gname = 1_100_000_000, 0, 0, "", ""
        return ti

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tf:
        tf.add(top, arcname="LibriSpeech", filter=normalise)  # tarfile adds folder entries in sorted order
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
        gz.write(buf.getvalue())
