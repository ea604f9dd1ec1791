"""Download machinery and the LibriSpeech source, against a local HTTP server (127.0.0.1 only)."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import shutil
import tarfile

import numpy as np
import pytest

from asr_core.data.download import (
    ArchiveError,
    ChecksumError,
    DownloadError,
    UnsafeArchiveError,
    download_file,
    md5_file,
    part_path,
    safe_extract_tar,
)
from asr_core.data.items import SourceItem
from asr_core.data.sources import librispeech as ls
from asr_core.data.sources.librispeech import LibriSpeechConfig, fetch_librispeech, read_librispeech_subset
from asr_core.testing.http_server import Fault, FileServer
from asr_core.testing.librispeech import make_librispeech_tarball, make_librispeech_tree

BLOB_SIZE = 300_000
CUT = 100_000


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    """A mirror folder laid out like openslr: <resource>/<subset>.tar.gz, plus a random blob."""
    root = tmp_path_factory.mktemp("mirror")
    fakes = {
        "dev-clean": make_librispeech_tarball(root / "12" / "dev-clean.tar.gz", "dev-clean", seed=1),
        "test-clean": make_librispeech_tarball(
            root / "12" / "test-clean.tar.gz", "test-clean", chapters={"61": ["70968"]}, seed=2
        ),
    }
    (root / "blob.bin").write_bytes(np.random.default_rng(0).bytes(BLOB_SIZE))
    return root, fakes


@pytest.fixture
def accept_fakes(monkeypatch, mirror):
    """Put the test tarballs' md5s in the official table."""
    _, fakes = mirror
    for name, fake in fakes.items():
        monkeypatch.setitem(ls.SUBSETS, name, dataclasses.replace(ls.SUBSETS[name], md5=fake.md5))
    return fakes


def config(tmp_path, srv: FileServer, splits=None, **kw) -> LibriSpeechConfig:
    splits = splits or {"dev": ["dev-clean"], "test": ["test-clean"]}
    return LibriSpeechConfig(
        splits=splits, mirror=srv.url(), cache_dir=str(tmp_path / "cache"), retries=2, backoff=0.01, timeout=5, **kw
    )


def expected_items(fake, split, audio=None) -> list[SourceItem]:
    return [
        SourceItem(utt, split, audio(utt) if audio else fake.audio_relpath(utt), text, fake.speakers[utt])
        for utt, text in fake.transcripts.items()
    ]


# ---------------------------------------------------------------- LibriSpeech end to end


def test_fetch_downloads_verifies_extracts_and_never_twice(tmp_path, mirror, accept_fakes):
    root, fakes = mirror
    out = tmp_path / "out"
    with FileServer(root) as srv:
        items = fetch_librispeech(config(tmp_path, srv), out, progress=False)
        assert [r.path for r in srv.get_requests] == ["/12/dev-clean.tar.gz", "/12/test-clean.tar.gz"]

        assert items == expected_items(fakes["dev-clean"], "dev") + expected_items(fakes["test-clean"], "test")
        assert len(items) == 8 and all((out / it.audio).is_file() for it in items)
        assert all(it.text.isupper() for it in items)
        assert sorted(p.name for p in (out / "LibriSpeech").iterdir()) == [
            "README.TXT", "SPEAKERS.TXT", "dev-clean", "test-clean"
        ]  # fmt: skip
        for name, fake in fakes.items():
            assert md5_file(tmp_path / "cache" / f"{name}.tar.gz") == fake.md5
        assert not list((tmp_path / "cache").glob("*.part"))

        # Same out_dir: already extracted. New out_dir: the cached tarballs are verified and reused.
        assert fetch_librispeech(config(tmp_path, srv), out, progress=False) == items
        assert fetch_librispeech(config(tmp_path, srv), tmp_path / "out2", progress=False) == items
        assert len(srv.get_requests) == 2


def test_bad_md5_raises_deletes_and_extracts_nothing(tmp_path, mirror, monkeypatch):
    root, fakes = mirror
    monkeypatch.setitem(ls.SUBSETS, "dev-clean", dataclasses.replace(ls.SUBSETS["dev-clean"], md5="0" * 32))
    out = tmp_path / "out"
    with FileServer(root) as srv, pytest.raises(ChecksumError) as err:
        fetch_librispeech(config(tmp_path, srv, splits={"dev": ["dev-clean"]}), out, progress=False)
    msg = str(err.value)
    assert "dev-clean.tar.gz" in msg and "0" * 32 in msg and fakes["dev-clean"].md5 in msg and "deleted" in msg
    assert list((tmp_path / "cache").iterdir()) == []  # neither the tarball nor its .part
    assert not out.exists() or not list(out.rglob("*.flac"))


@pytest.mark.parametrize("layout", ["LibriSpeech/dev-clean", "dev-clean"])
def test_local_extracted_is_read_in_place(tmp_path, mirror, layout):
    root, _ = mirror
    local = tmp_path / "local"
    fake = make_librispeech_tree(local, "dev-clean", seed=3)
    if layout == "dev-clean":
        shutil.move(local / "LibriSpeech" / "dev-clean", local / "dev-clean")
    subset_dir = local / layout
    missing = next(iter(fake.transcripts))
    next(subset_dir.rglob(f"{missing}.flac")).unlink()

    out = tmp_path / "out"
    with FileServer(root) as srv:
        items = fetch_librispeech(
            config(tmp_path, srv, splits={"dev": ["dev-clean"]}, local_path=str(local)), out, progress=False
        )
        assert srv.requests == []
    speaker_chapter = lambda utt: "/".join(utt.split("-")[:2])
    assert items == expected_items(fake, "dev", lambda u: str(subset_dir / speaker_chapter(u) / f"{u}.flac"))
    assert missing in [it.utt_id for it in items]  # listed; prepare quarantines it
    assert not out.exists()  # nothing copied


def test_local_tarball_is_verified_and_extracted_without_download(tmp_path, mirror, accept_fakes):
    root, fakes = mirror
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(fakes["dev-clean"].path, local / "dev-clean.tar.gz")
    out = tmp_path / "out"
    with FileServer(root) as srv:
        cfg = config(tmp_path, srv, splits={"dev": ["dev-clean"]}, local_path=str(local))
        items = fetch_librispeech(cfg, out, progress=False)
        assert srv.requests == []
    assert items == expected_items(fakes["dev-clean"], "dev")
    assert all((out / it.audio).is_file() for it in items)
    assert not (tmp_path / "cache").exists()


def test_local_tarball_with_bad_md5_is_kept_but_not_extracted(tmp_path, mirror, monkeypatch):
    root, fakes = mirror
    monkeypatch.setitem(ls.SUBSETS, "dev-clean", dataclasses.replace(ls.SUBSETS["dev-clean"], md5="1" * 32))
    local = tmp_path / "local"
    local.mkdir()
    shutil.copy(fakes["dev-clean"].path, local / "dev-clean.tar.gz")
    with FileServer(root) as srv, pytest.raises(ChecksumError, match="left in place"):
        cfg = config(tmp_path, srv, splits={"dev": ["dev-clean"]}, local_path=str(local))
        fetch_librispeech(cfg, tmp_path / "out", progress=False)
    assert srv.requests == []
    assert (local / "dev-clean.tar.gz").is_file()
    assert not list((tmp_path / "out").rglob("*.flac"))


def test_read_subset_rejects_a_malformed_transcript_line(tmp_path):
    fake = make_librispeech_tree(tmp_path, "dev-clean", chapters={"19": ["198"]}, utts_per_chapter=1)
    trans = tmp_path / "LibriSpeech" / "dev-clean" / "19" / "198" / "19-198.trans.txt"
    trans.write_text(trans.read_text() + "19-999-0001 WRONG CHAPTER\n")
    with pytest.raises(ValueError, match=r"19-198\.trans\.txt:2"):
        read_librispeech_subset(tmp_path / "LibriSpeech" / "dev-clean", "dev")
    assert len(fake.transcripts) == 1


# ---------------------------------------------------------------- config


def test_config_round_trip_and_errors():
    cfg = LibriSpeechConfig(splits={"train": ["train-clean-5"], "dev": ["dev-clean-2"]}, retries=1)
    assert LibriSpeechConfig.from_dict(cfg.to_dict()) == cfg
    assert LibriSpeechConfig().splits == {"train": ["train-clean-100"], "dev": ["dev-clean"], "test": ["test-clean"]}
    with pytest.raises(ValueError, match="unknown key.*'mirrors'"):
        LibriSpeechConfig.from_dict({"mirrors": "x"})
    with pytest.raises(ValueError, match="unknown subset 'dev-dirty'.*train-clean-360"):
        LibriSpeechConfig(splits={"dev": ["dev-dirty"]})
    with pytest.raises(ValueError, match="'dev-clean' is in splits 'train' and 'dev'"):
        LibriSpeechConfig(splits={"train": ["dev-clean"], "dev": ["dev-clean"]})
    with pytest.raises(ValueError, match="non-empty list"):
        LibriSpeechConfig(splits={"dev": "dev-clean"})
    assert ls.SUBSETS["train-clean-5"].url() == "https://www.openslr.org/resources/31/train-clean-5.tar.gz"
    assert ls.SUBSETS["test-other"].url("http://m/") == "http://m/12/test-other.tar.gz"


# ---------------------------------------------------------------- download_file


def test_md5_file_is_streamed(tmp_path, mirror):
    root, _ = mirror
    data = (root / "blob.bin").read_bytes()
    assert md5_file(root / "blob.bin", chunk_size=4096) == hashlib.md5(data).hexdigest()


@pytest.mark.parametrize("fault", [Fault.cut(CUT), Fault.stall(CUT, seconds=5), Fault.reset(CUT)], ids=lambda f: f.kind)
def test_interrupted_download_resumes_with_range(tmp_path, mirror, fault):
    root, _ = mirror
    data = (root / "blob.bin").read_bytes()
    dest = tmp_path / "blob.bin"
    with FileServer(root, faults=[fault]) as srv:
        md5 = hashlib.md5(data).hexdigest()
        download_file(srv.url("blob.bin"), dest, md5=md5, backoff=0.01, timeout=0.5, progress=False)
    first, second = srv.get_requests
    assert first.range is None and first.sent == CUT
    assert second.status == 206 and second.range.startswith("bytes=")
    if fault.kind != "reset":  # a reset may drop bytes that were in flight
        assert second.range == f"bytes={CUT}-" and second.sent == BLOB_SIZE - CUT
    assert dest.read_bytes() == data and not part_path(dest).exists()


def test_server_ignoring_range_restarts_from_zero(tmp_path, mirror):
    root, _ = mirror
    data = (root / "blob.bin").read_bytes()
    dest = tmp_path / "blob.bin"
    with FileServer(root, faults=[Fault.cut(CUT)], ignore_range=True) as srv:
        download_file(srv.url("blob.bin"), dest, backoff=0.01, progress=False)
    assert [(r.range, r.status, r.sent) for r in srv.get_requests] == [
        (None, 200, CUT),
        (f"bytes={CUT}-", 200, BLOB_SIZE),
    ]
    assert dest.read_bytes() == data


@pytest.mark.parametrize("fault", [Fault.http_status(503), Fault.cut(0)], ids=["503", "cut"])
def test_retries_exhaust_with_a_clear_error(tmp_path, mirror, fault):
    root, _ = mirror
    dest = tmp_path / "blob.bin"
    with FileServer(root, default_fault=fault) as srv, pytest.raises(DownloadError) as err:
        download_file(srv.url("blob.bin"), dest, retries=2, backoff=0.01, progress=False)
    assert len(srv.get_requests) == 3
    msg = str(err.value)
    assert srv.url("blob.bin") in msg and "after 3 attempt(s)" in msg
    assert ("503" in msg) if fault.kind == "status" else ("0 of 300000 bytes" in msg)
    assert not dest.exists()


def test_progress_restarts_the_retry_count(tmp_path, mirror):
    root, _ = mirror
    dest = tmp_path / "blob.bin"
    with FileServer(root, default_fault=Fault.cut(60_000)) as srv:  # every reply cut after 60 kB
        download_file(srv.url("blob.bin"), dest, retries=1, backoff=0.01, progress=False)
    assert [r.range for r in srv.get_requests] == [None] + [f"bytes={n}-" for n in range(60_000, BLOB_SIZE, 60_000)]
    assert dest.read_bytes() == (root / "blob.bin").read_bytes()


def test_not_found_is_not_retried(tmp_path, mirror):
    root, _ = mirror
    with FileServer(root) as srv, pytest.raises(DownloadError, match="HTTP 404"):
        download_file(srv.url("nope.bin"), tmp_path / "nope.bin", retries=3, backoff=0.01, progress=False)
    assert len(srv.get_requests) == 1


def test_existing_dest_is_skipped_only_when_its_md5_matches(tmp_path, mirror):
    root, _ = mirror
    data = (root / "blob.bin").read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    dest = tmp_path / "blob.bin"
    with FileServer(root) as srv:
        dest.write_bytes(data)
        download_file(srv.url("blob.bin"), dest, md5=md5, progress=False)
        assert srv.requests == []
        dest.write_bytes(b"stale")
        download_file(srv.url("blob.bin"), dest, md5=md5, progress=False)
        assert len(srv.get_requests) == 1 and dest.read_bytes() == data


def test_leftover_part_file_is_resumed_or_discarded(tmp_path, mirror):
    root, _ = mirror
    data = (root / "blob.bin").read_bytes()
    md5 = hashlib.md5(data).hexdigest()
    dest = tmp_path / "blob.bin"
    with FileServer(root) as srv:
        part_path(dest).write_bytes(data)  # killed after the last byte, before the rename
        download_file(srv.url("blob.bin"), dest, md5=md5, progress=False)
        dest.unlink()
        part_path(dest).write_bytes(data + b"junk")  # longer than the file: start again
        download_file(srv.url("blob.bin"), dest, md5=md5, backoff=0.01, progress=False)
    assert [(r.range, r.status) for r in srv.get_requests] == [
        (f"bytes={BLOB_SIZE}-", 416),
        (f"bytes={BLOB_SIZE + 4}-", 416),
        (None, 200),
    ]
    assert dest.read_bytes() == data and not part_path(dest).exists()


# ---------------------------------------------------------------- safe_extract_tar


def write_tar(path, *members):
    """members: (name, kind, payload) with kind file|dir|symlink|hardlink|fifo; payload = bytes or link target."""
    with tarfile.open(path, "w:gz") as tf:
        for name, kind, payload in members:
            ti = tarfile.TarInfo(name)
            if kind == "file":
                ti.size = len(payload)
                tf.addfile(ti, io.BytesIO(payload))
                continue
            ti.type = {"dir": tarfile.DIRTYPE, "symlink": tarfile.SYMTYPE, "hardlink": tarfile.LNKTYPE,
                       "fifo": tarfile.FIFOTYPE}[kind]  # fmt: skip
            ti.linkname = payload or ""
            tf.addfile(ti)
    return path


UNSAFE = {
    "dotdot": [("../x", "file", b"evil")],
    "absolute": [("/abs/path", "file", b"evil")],
    "symlink-out": [("link", "symlink", "../../outside")],
    "symlink-abs": [("link", "symlink", "/etc/passwd")],
    "symlink-chain": [("b", "symlink", "."), ("a", "symlink", "b/..")],  # each looks inside; a is dest/..
    "through-symlink": [("up/x", "file", b"evil"), ("up", "symlink", "..")],  # the file comes first
    "hardlink-out": [("hard", "hardlink", "../outside")],
    "fifo": [("pipe", "fifo", None)],
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_are_refused_and_nothing_is_extracted(tmp_path, case):
    work = tmp_path / "work"
    work.mkdir()
    archive = write_tar(tmp_path / "evil.tar.gz", ("data/ok.txt", "file", b"fine"), *UNSAFE[case])
    with pytest.raises(UnsafeArchiveError) as err:
        safe_extract_tar(archive, work / "dest")
    assert "evil.tar.gz" in str(err.value) and repr(err.value.member) in str(err.value)
    assert err.value.member in [m[0] for m in UNSAFE[case]]
    assert list(work.iterdir()) == []  # no dest, no temporary folder
    assert sorted(p.name for p in tmp_path.iterdir()) == ["evil.tar.gz", "work"]


def test_tarfile_data_filter_is_the_second_line_of_defence(tmp_path, monkeypatch):
    from asr_core.data.download import archive as archive_mod

    monkeypatch.setattr(archive_mod, "check_members", lambda members, archive: None)
    archive = write_tar(tmp_path / "evil.tar.gz", ("data/ok.txt", "file", b"fine"), ("../x", "file", b"evil"))
    with pytest.raises(UnsafeArchiveError, match=r"'\.\./x'") as err:
        safe_extract_tar(archive, tmp_path / "work" / "dest")
    assert isinstance(err.value.__cause__, tarfile.FilterError)
    assert list((tmp_path / "work").iterdir()) == [] and not (tmp_path / "x").exists()


def test_safe_archive_with_internal_symlink_extracts_atomically(tmp_path, monkeypatch):
    archive = write_tar(
        tmp_path / "ok.tar.gz", ("data/a.txt", "file", b"a"), ("data/sub/b.txt", "file", b"b"),
        ("link", "symlink", "data/sub/../a.txt"),
    )  # fmt: skip
    paths = safe_extract_tar(archive, tmp_path / "dest")
    assert paths == [tmp_path / "dest" / n for n in ("data/a.txt", "data/sub/b.txt", "link")]
    assert (tmp_path / "dest" / "link").read_bytes() == b"a"
    with pytest.raises(FileExistsError):
        safe_extract_tar(archive, tmp_path / "dest")

    # Interrupted after the first member: no half tree, no temporary folder left.
    real = tarfile.TarFile.extract

    def extract_then_die(self, member, *args, **kwargs):
        real(self, member, *args, **kwargs)
        raise KeyboardInterrupt("killed mid-extraction")

    monkeypatch.setattr(tarfile.TarFile, "extract", extract_then_die)
    monkeypatch.setattr(tarfile.TarFile, "extractall", lambda self, path, members, filter: [
        self.extract(m, path, filter=filter) for m in members
    ])  # fmt: skip
    with pytest.raises(KeyboardInterrupt):
        safe_extract_tar(archive, tmp_path / "dest2")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dest", "ok.tar.gz"]


def test_truncated_archive_is_an_archive_error(tmp_path, mirror):
    _, fakes = mirror
    data = fakes["dev-clean"].path.read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ArchiveError, match="cut.tar.gz"):
        safe_extract_tar(tmp_path / "cut.tar.gz", tmp_path / "dest")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cut.tar.gz"]
