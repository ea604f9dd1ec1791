"""Resumable HTTP downloads with md5 verification (urllib only).

The bytes go to ``<dest>.part``; ``dest`` itself appears (by rename) only once the
file is complete and, when an md5 is given, verified. So an existing ``dest`` is
always a whole file, and an existing ``.part`` is a prefix to resume from.

Interruptions (connection reset or refused, a short read, a timeout, HTTP 5xx, 408,
429) are retried with exponential backoff, resuming with ``Range: bytes=<n>-``.
A ``206 Partial Content`` reply is appended to the ``.part`` file; a server that
ignores the range and answers ``200`` is read from byte zero again.
"""

from __future__ import annotations

import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

from tqdm import tqdm

from asr_core import __version__
from asr_core.data.download.checksums import ChecksumError, md5_file, normalize_md5

log = logging.getLogger(__name__)

CHUNK = 1 << 20
RETRYABLE_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})
SCHEMES = frozenset({"http", "https", "ftp", "file"})


class DownloadError(OSError):
    """A download failed for good: a non-retryable HTTP status, or retries exhausted."""


class _Transient(Exception):
    """An attempt failed in a way worth retrying (the message says how)."""


def part_path(dest: str | os.PathLike) -> Path:
    """Where the bytes of ``dest`` collect until the file is complete: ``<dest>.part``."""
    dest = Path(dest)
    return dest.with_name(dest.name + ".part")


def download_file(
    url: str,
    dest: str | os.PathLike,
    md5: str | None = None,
    retries: int = 5,
    backoff: float = 1.0,
    timeout: float = 60,
    progress: bool = True,
) -> Path:
    """Download ``url`` to ``dest`` and return ``dest``.

    If ``dest`` exists and matches ``md5`` (or no md5 is given) nothing is fetched;
    if it exists with another md5 it is deleted and fetched again.

    ``retries`` is how many retries are allowed in a row; a failed attempt that still
    added bytes to the ``.part`` file starts the count again, so a large file over a
    flaky link completes. The wait before retry ``k`` in a row is ``backoff * 2 ** (k - 1)``
    seconds. ``timeout`` applies to connecting and to each
    read. An md5 mismatch deletes the file and raises :class:`ChecksumError` (no
    retry: the mirror's file itself is likely wrong).
    """
    dest = Path(dest)
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ValueError(f"unsupported URL scheme {scheme!r} in {url!r} (expected one of {sorted(SCHEMES)})")
    if retries < 0 or backoff < 0 or timeout <= 0:
        raise ValueError(f"need retries >= 0, backoff >= 0, timeout > 0; got {retries}, {backoff}, {timeout}")
    expected = normalize_md5(md5) if md5 else None

    if dest.exists():
        if expected is None:
            log.info("%s exists and no md5 was given: not downloading it again", dest)
            return dest
        actual = md5_file(dest)
        if actual == expected:
            log.info("%s exists with the expected md5: not downloading it again", dest)
            return dest
        log.warning("%s exists but its md5 is %s, not %s: deleting it and downloading again", dest, actual, expected)
        dest.unlink()

    dest.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(dest)
    attempts = failures = 0
    while True:
        attempts += 1
        before = _size(part)
        try:
            _fetch_once(url, part, timeout, progress, desc=dest.name)
            break
        except (_Transient, urllib.error.URLError, http.client.HTTPException, ConnectionError, TimeoutError) as e:
            err = _describe(e)
            failures = 1 if _size(part) > before else failures + 1
            if failures > retries:
                raise DownloadError(
                    f"giving up on {url} after {attempts} attempt(s) ({retries} retries allowed in a row); "
                    f"last error: {err}. {_size(part)} bytes are kept in {part}: run again to resume."
                ) from e
            delay = backoff * 2 ** (failures - 1)
            log.warning(
                "download of %s interrupted (%s); retry %d/%d in %.1f s from byte %d",
                url,
                err,
                failures,
                retries,
                delay,
                _size(part),
            )
            time.sleep(delay)

    if expected is not None:
        actual = md5_file(part)
        if actual != expected:
            part.unlink()
            raise ChecksumError(dest, expected, actual, deleted=True)
    os.replace(part, dest)
    return dest


def _fetch_once(url: str, part: Path, timeout: float, progress: bool, desc: str) -> None:
    """One request: resume ``part`` from its current size; raise _Transient on a short read."""
    have = _size(part)
    headers = {"User-Agent": f"asr-toolkit/{__version__}", "Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    try:
        resp = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as e:
        with e:
            if e.code == 416 and have:
                if _range_total(e.headers.get("Content-Range")) == have:
                    return  # the .part file already holds the whole file
                part.unlink()
                raise _Transient(f"HTTP 416 for a range from byte {have}: starting again from zero") from e
            if e.code in RETRYABLE_STATUS:
                raise _Transient(f"HTTP {e.code} {e.reason}") from e
            raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from e

    with resp:
        status = getattr(resp, "status", None)
        if status == 206:
            start, total = _content_range(resp.headers.get("Content-Range"), url)
            if start != have:
                part.unlink()
                raise _Transient(f"asked for bytes from {have}, server sent from {start}: starting again from zero")
            mode = "ab"
        else:  # 200, or None for file:// URLs: the whole body
            if have:
                log.info("%s ignored the Range request: reading it again from byte zero", url)
            have, mode = 0, "wb"
            length = resp.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
        with (
            open(part, mode) as f,
            tqdm(
                total=total, initial=have, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=not progress
            ) as bar,
        ):
            # read1: whatever has arrived (up to CHUNK), so bytes received before a stall are kept.
            read = getattr(resp, "read1", resp.read)
            while chunk := read(CHUNK):
                f.write(chunk)
                bar.update(len(chunk))
            f.flush()
            os.fsync(f.fileno())

    size = _size(part)
    if total is not None and size != total:
        # http.client returns b"" (not an error) when the peer closes early: check the length ourselves.
        if size > total:
            part.unlink()
        raise _Transient(f"connection closed with {size} of {total} bytes")


def _content_range(value: str | None, url: str) -> tuple[int, int | None]:
    """``bytes <start>-<end>/<total|*>`` -> (start, total or None)."""
    m = re.fullmatch(r"\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*", value or "")
    if not m:
        raise _Transient(f"206 reply from {url} with an unreadable Content-Range {value!r}")
    return int(m.group(1)), (None if m.group(3) == "*" else int(m.group(3)))


def _range_total(value: str | None) -> int | None:
    """The total of a 416 reply's ``bytes */<total>``."""
    m = re.fullmatch(r"\s*bytes\s+\*/(\d+)\s*", value or "")
    return int(m.group(1)) if m else None


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _describe(e: BaseException) -> str:
    if isinstance(e, urllib.error.URLError) and not isinstance(e, urllib.error.HTTPError):
        return f"{type(e.reason).__name__}: {e.reason}"
    return f"{type(e).__name__}: {e}" if not isinstance(e, _Transient) else str(e)
