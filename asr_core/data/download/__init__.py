"""Getting corpora onto disk: resumable, md5-verified downloads and safe tar extraction."""

from asr_core.data.download.archive import ArchiveError, UnsafeArchiveError, check_members, safe_extract_tar
from asr_core.data.download.checksums import ChecksumError, md5_file, verify_md5
from asr_core.data.download.http import DownloadError, download_file, part_path

__all__ = [
    "ArchiveError",
    "ChecksumError",
    "DownloadError",
    "UnsafeArchiveError",
    "check_members",
    "download_file",
    "md5_file",
    "part_path",
    "safe_extract_tar",
    "verify_md5",
]
