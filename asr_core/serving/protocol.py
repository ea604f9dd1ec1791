"""The streaming protocol's messages and limits, independent of any web framework.

A stream is: one JSON header naming the audio format, binary frames of audio, then ``{"type": "end"}``.
Everything a client can get wrong raises :class:`ProtocolError` naming the field and the reason; the
transport turns it into ``{"type": "error", "field": ..., "reason": ...}`` and closes that stream only.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

import numpy as np

ENCODINGS = {"pcm16": np.dtype("<i2"), "float32": np.dtype("<f4")}  # little-endian, mono
MIN_SAMPLE_RATE, MAX_SAMPLE_RATE = 8000, 192000
HEADER_KEYS = {"type", "format", "sample_rate"}

# WebSocket close codes (RFC 6455): which one ends a stream tells the client whether to retry.
CLOSE_NORMAL, CLOSE_POLICY, CLOSE_TOO_BIG, CLOSE_SERVER_ERROR, CLOSE_TRY_LATER = 1000, 1008, 1009, 1011, 1013


class ProtocolError(ValueError):
    """A client mistake: ``field`` names what was wrong, ``reason`` says why; ``close_code`` ends the stream,
    ``http_status`` answers an upload."""

    def __init__(self, field: str, reason: str, close_code: int = CLOSE_POLICY, http_status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.close_code, self.http_status = field, reason, close_code, http_status

    def message(self) -> dict:
        return {"type": "error", "field": self.field, "reason": self.reason}


@dataclass(frozen=True)
class StreamLimits:
    """What one server accepts; every limit is a command-line option of ``tasks.serve``."""

    max_streams: int = 16  # WebSocket streams open at once
    max_stream_seconds: float = 600.0  # audio in one stream (and in one upload)
    max_frame_bytes: int = 1 << 20  # one binary WebSocket message
    max_backlog_seconds: float = 5.0  # audio received but not yet decoded before the stream's reads pause
    idle_seconds: float = 30.0  # longest wait for a client's next message
    max_upload_bytes: int = 64 << 20  # one HTTP upload

    def __post_init__(self) -> None:
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a positive number, got {value!r}")


@dataclass(frozen=True)
class AudioFormat:
    encoding: str  # a key of ENCODINGS
    sample_rate: int

    @property
    def dtype(self) -> np.dtype:
        return ENCODINGS[self.encoding]


def _json_object(text: str | bytes | None, what: str) -> dict:
    if text is None:
        raise ProtocolError(what, "expected a JSON text message, got a binary one")
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ProtocolError(what, f"not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ProtocolError(what, f"expected a JSON object, got {type(obj).__name__}")
    return obj


def parse_header(text: str | None) -> AudioFormat:
    """The first message: ``{"format": "pcm16" | "float32", "sample_rate": 16000}`` (``"type": "start"``
    may be given too). ``text`` None: the client sent a binary frame first."""
    if text is None:
        raise ProtocolError("format", 'the first message must be the JSON header {"format": ..., "sample_rate": ...}')
    obj = _json_object(text, "header")
    unknown = sorted(set(obj) - HEADER_KEYS)
    if unknown:
        raise ProtocolError(unknown[0], f"unknown header key; the header takes {sorted(HEADER_KEYS)}")
    if obj.get("type", "start") != "start":
        raise ProtocolError("type", f"the header's type is 'start' (or absent), got {obj['type']!r}")
    if "format" not in obj:
        raise ProtocolError("format", f"missing; one of {sorted(ENCODINGS)}")
    if obj["format"] not in ENCODINGS:
        raise ProtocolError("format", f"unknown format {obj['format']!r}; one of {sorted(ENCODINGS)}")
    rate = obj.get("sample_rate")
    if rate is None:
        raise ProtocolError("sample_rate", "missing; the audio's sample rate in Hz")
    if isinstance(rate, bool) or not isinstance(rate, int | float) or rate != int(rate):
        raise ProtocolError("sample_rate", f"must be a whole number of Hz, got {rate!r}")
    if not MIN_SAMPLE_RATE <= rate <= MAX_SAMPLE_RATE:
        raise ProtocolError("sample_rate", f"{int(rate)} Hz is outside {MIN_SAMPLE_RATE}-{MAX_SAMPLE_RATE} Hz")
    return AudioFormat(obj["format"], int(rate))


def parse_control(text: str) -> str:
    """A text message after the header: only ``{"type": "end"}`` (no more audio) exists; returns ``"end"``."""
    obj = _json_object(text, "message")
    if obj.get("type") != "end":
        raise ProtocolError("type", f"unknown message type {obj.get('type')!r}; after the header only 'end' is sent")
    return "end"


def decode_frame(data: bytes, fmt: AudioFormat, limits: StreamLimits) -> np.ndarray:
    """One binary message -> float32 samples in [-1, 1) (pcm16) or as sent (float32)."""
    if len(data) > limits.max_frame_bytes:
        raise ProtocolError(
            "audio", f"frame of {len(data)} bytes exceeds the {limits.max_frame_bytes}-byte limit", CLOSE_TOO_BIG
        )
    width = fmt.dtype.itemsize
    if len(data) % width:
        raise ProtocolError("audio", f"{fmt.encoding} frame of {len(data)} bytes is not a whole number of samples")
    x = np.frombuffer(data, dtype=fmt.dtype)
    if fmt.encoding == "pcm16":
        return x.astype(np.float32) / 32768.0  # libsndfile's int16 -> float scale, so files and streams agree
    if not np.isfinite(x).all():
        raise ProtocolError("audio", "float32 samples must be finite (NaN or infinity received)")
    return x.astype(np.float32)
