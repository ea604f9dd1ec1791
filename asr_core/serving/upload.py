"""An uploaded audio file -> float32 samples at the model's rate, read as ``read_wave`` reads a file.

The body is either the file itself (any content type but multipart) or a ``multipart/form-data`` form
whose file part (the field ``file``, else the first part with a filename) is taken. The samples are
decoded by libsndfile, mixed to mono and resampled exactly as :func:`asr_core.data.audio.read_wave`
does, so an upload transcribes as ``python -m tasks.transcribe`` transcribes the same file.
"""

from __future__ import annotations

import email.parser
import email.policy
import io

import numpy as np
import soundfile as sf

from asr_core.data.audio import resample, to_mono
from asr_core.serving.protocol import CLOSE_TOO_BIG, ProtocolError, StreamLimits


def file_from_body(body: bytes, content_type: str | None) -> bytes:
    """The uploaded file's bytes: the body, or the file part of a multipart form."""
    if not (content_type or "").lower().startswith("multipart/"):
        return body
    # The stdlib MIME parser reads form-data bodies; the headers it needs are the request's content type.
    message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body
    )
    if not message.is_multipart():
        raise ProtocolError("file", "a multipart body without parts (is the boundary right?)")
    named = [p for p in message.iter_parts() if p.get_param("name", header="content-disposition") == "file"]
    parts = named or [p for p in message.iter_parts() if p.get_filename() is not None]
    if not parts:
        raise ProtocolError("file", "the form has no file part (send the audio as the field 'file')")
    return parts[0].get_payload(decode=True) or b""


def decode_upload(data: bytes, model_rate: int, limits: StreamLimits) -> np.ndarray:
    """(n,) float32 mono at ``model_rate``; ProtocolError naming ``file`` for anything that is not audio."""
    if not data:
        raise ProtocolError("file", "empty upload")
    try:
        with sf.SoundFile(io.BytesIO(data)) as f:
            rate, frames = f.samplerate, f.frames
            # the header's length is checked before any sample is decoded
            x = f.read(dtype="float32", always_2d=True) if frames / rate <= limits.max_stream_seconds else None
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        why = getattr(e, "error_string", None) or str(e)  # without the name of the in-memory file object
        raise ProtocolError("file", f"not an audio file libsndfile reads ({why})", http_status=415) from None
    if x is None:
        raise ProtocolError(
            "file",
            f"{frames / rate:.1f} s of audio exceeds the {limits.max_stream_seconds:g} s limit",
            CLOSE_TOO_BIG,
            http_status=413,
        )
    if x.shape[0] == 0:
        raise ProtocolError("file", "the file holds no audio samples", http_status=415)
    x = to_mono(x)
    return resample(x, rate, model_rate) if rate != model_rate else x
