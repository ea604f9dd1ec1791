"""Safe, all-or-nothing tar extraction.

Two lines of defence against a hostile or broken archive:

1. Every member is checked *before anything is written*: absolute names, ``..``
   components, device and fifo members, and links whose target resolves outside the
   destination are refused with :class:`UnsafeArchiveError`. Link targets are resolved
   the way the kernel would, but within the archive's own namespace (the extraction
   folder is new and empty, so the archive's symlinks are the only ones that matter).
2. ``tarfile``'s ``filter="data"`` (Python 3.11.4+) re-checks each member as it is
   written and drops set-uid bits, device files and ownership.

All or nothing: members are extracted into a fresh temporary folder beside ``dest``
(``.<dest name>.partial-XXXXXXXX`` in ``dest``'s parent, so on the same filesystem),
which is renamed to ``dest`` only after the last member is written. Rename is atomic,
so ``dest`` either does not exist or holds the whole archive. An exception removes the
temporary folder; a killed process may leave one behind, which is safe to delete and
is never mistaken for ``dest``.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
import tempfile
import zlib
from pathlib import Path, PurePosixPath

MAX_LINK_HOPS = 40  # as the kernel's ELOOP limit


class ArchiveError(ValueError):
    """The archive cannot be read (truncated, corrupt, not a tar)."""


class UnsafeArchiveError(ArchiveError):
    """A member could write outside the destination, or is a device/fifo; nothing was extracted."""

    def __init__(self, archive: str | os.PathLike, member: str, reason: str):
        self.archive = Path(archive)
        self.member = member
        self.reason = reason
        super().__init__(f"{archive}: refusing unsafe member {member!r}: {reason}; nothing was extracted")


def safe_extract_tar(archive: str | os.PathLike, dest: str | os.PathLike) -> list[Path]:
    """Extract ``archive`` (any compression tarfile reads) so that it becomes folder ``dest``.

    ``dest`` must not exist, or be an empty folder. Returns the extracted paths under
    ``dest`` in archive order. A compressed archive is decompressed twice: once to
    check every member, once to extract.
    """
    archive, dest = Path(archive), Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise FileExistsError(f"cannot extract {archive} into {dest}: it exists and is not an empty folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.partial-", dir=dest.parent))
    try:
        try:
            with tarfile.open(archive, "r:*") as tf:
                members = tf.getmembers()
                check_members(members, archive)
                tf.extractall(tmp, members=members, filter="data")
        except tarfile.FilterError as e:  # the second line of defence caught what the first missed
            raise UnsafeArchiveError(archive, e.tarinfo.name, str(e)) from e
        except (tarfile.ReadError, tarfile.CompressionError, gzip.BadGzipFile, EOFError, zlib.error) as e:
            raise ArchiveError(f"{archive}: cannot read the tar archive: {type(e).__name__}: {e}") from e
        if dest.exists():
            dest.rmdir()  # empty, checked above
        os.rename(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return [dest / m.name for m in members]


def check_members(members: list[tarfile.TarInfo], archive: str | os.PathLike = "<archive>") -> None:
    """Raise :class:`UnsafeArchiveError` on the first member that is unsafe to extract."""
    symlinks = {_key(m.name): m.linkname for m in members if m.issym()}
    for m in members:
        name = m.name
        path = PurePosixPath(name)
        if path.is_absolute():
            raise UnsafeArchiveError(archive, name, "absolute path")
        if ".." in path.parts:
            raise UnsafeArchiveError(archive, name, "'..' path component")
        if not (m.isreg() or m.isdir() or m.issym() or m.islnk()):
            kind = {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device", tarfile.FIFOTYPE: "fifo"}
            raise UnsafeArchiveError(archive, name, f"{kind.get(m.type, f'member type {m.type!r}')} not allowed")
        # The folder the member lands in, following the archive's own symlinks.
        parent = _resolve(list(path.parts[:-1]), symlinks)
        if parent is None:
            raise UnsafeArchiveError(archive, name, "its folder resolves outside the destination through a symlink")
        if m.issym():
            if not m.linkname or m.linkname.startswith("/"):
                raise UnsafeArchiveError(archive, name, f"symlink to {m.linkname!r}: absolute or empty target")
            if _resolve(parent + m.linkname.split("/"), symlinks) is None:
                reason = f"symlink target {m.linkname!r} resolves outside the destination"
                raise UnsafeArchiveError(archive, name, reason)
        elif m.islnk():
            if not m.linkname or m.linkname.startswith("/"):
                raise UnsafeArchiveError(archive, name, f"hard link to {m.linkname!r}: absolute or empty target")
            if _resolve(m.linkname.split("/"), symlinks) is None:  # hard link targets are archive-relative
                reason = f"hard link target {m.linkname!r} resolves outside the destination"
                raise UnsafeArchiveError(archive, name, reason)


def _key(name: str) -> str:
    return "/".join(p for p in name.split("/") if p not in ("", "."))


def _resolve(parts: list[str], symlinks: dict[str, str]) -> list[str] | None:
    """Resolve a relative path inside the archive's namespace; None if it leaves the root or loops."""
    out: list[str] = []
    queue = list(parts)
    hops = 0
    while queue:
        p = queue.pop(0)
        if p in ("", "."):
            continue
        if p == "..":
            if not out:
                return None
            out.pop()
            continue
        out.append(p)
        target = symlinks.get("/".join(out))
        if target is not None:
            hops += 1
            if hops > MAX_LINK_HOPS or target.startswith("/"):
                return None
            out.pop()
            queue = target.split("/") + queue
    return out
