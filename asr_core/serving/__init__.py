"""Streaming transcription, independent of the web framework that carries it (``tasks/serve.py``).

    source = resolve_source("exports/rnnt_small")          # or a model.pt
    serving, timings = choose(source)                      # the fastest backend that passed its gate
    stream = serving.stream()                              # one per client stream
    audio = AudioInput(parse_header(first_message), serving.sample_rate, limits)
    text = stream.accept(audio.decode(frame))              # a new partial, or None
    result = stream.finish()                               # {"text", "words", "audio_seconds"}

``protocol``: the messages and limits; ``audio``: frames to samples at the model's rate (resampled);
``engine``: the loaded model; ``sessions``: per-stream decoder state; ``backends``: which model and
backend serve; ``words``: word timings.
"""

from asr_core.serving.audio import AudioInput
from asr_core.serving.backends import SERVE_BACKENDS, ModelSource, choose, load, resolve_source
from asr_core.serving.engine import ServingModel
from asr_core.serving.protocol import AudioFormat, ProtocolError, StreamLimits, parse_control, parse_header
from asr_core.serving.upload import decode_upload, file_from_body

__all__ = [
    "SERVE_BACKENDS",
    "AudioFormat",
    "AudioInput",
    "ModelSource",
    "ProtocolError",
    "ServingModel",
    "StreamLimits",
    "choose",
    "decode_upload",
    "file_from_body",
    "load",
    "parse_control",
    "parse_header",
    "resolve_source",
]
