"""espeak-ng through ctypes, from the ``espeakng-loader`` wheel (library and voice data inside).

espeak is one global engine per process: :func:`init` loads it once (synchronous mode,
22050 Hz) and :func:`synthesize` returns int16 samples collected by the synthesis callback.

Determinism, measured on espeak-ng 1.52 (the wheel's build):

- espeak's noise generator is seeded from the clock at start-up, so the same text gives
  different samples from run to run. :func:`synthesize` reseeds it (and libc ``rand``,
  which the Klatt voices use) from ``seed`` before every utterance.
- The wave generator keeps state between utterances that no API call resets (pitch
  flutter phase, roughness cycle count, gain control). The same utterance synthesised
  after a different one comes out slightly different, and re-initialising does not help.
  Identical output therefore needs an identical call sequence from a freshly started
  process; ``corpus.py`` builds on that.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from pathlib import Path

import numpy as np

SAMPLE_RATE = 22050

# English accents shipped in espeak-ng-data/lang/gmw, by the name espeak_SetVoiceByName
# accepts ("en" is British English; "en-gb" is not accepted as a voice name).
ACCENTS: tuple[str, ...] = (
    "en-us",
    "en",
    "en-gb-scotland",
    "en-gb-x-rp",
    "en-029",
    "en-gb-x-gbclan",
    "en-gb-x-gbcwmd",
    "en-us-nyc",
)
# Voice variants (espeak-ng-data/voices/!v) that sound like plain speech. Left out: whisper,
# croak, echo and robot effects (Demonic, RicishayMax*, robosoft*, UniRobot, anikaRobot,
# announcer), near-voiceless ones (caleb), the test variant "fast", "Mr serious" (a space in
# its name) and Storm (it forces en-us, which would mislabel the accent).
FEMALE_VARIANTS: tuple[str, ...] = (
    "f1",
    "f2",
    "f3",
    "f4",
    "f5",
    "Alicia",
    "Andrea",
    "Annie",
    "anika",
    "aunty",
    "belinda",
    "grandma",
    "linda",
    "shelby",
    "steph",
    "steph2",
    "steph3",
)
MALE_VARIANTS: tuple[str, ...] = (
    "m1",
    "m2",
    "m3",
    "m4",
    "m5",
    "m6",
    "m7",
    "m8",
    "Alex",
    "Andy",
    "Denis",
    "Diogo",
    "Gene",
    "Henrique",
    "Hugo",
    "Lee",
    "Mario",
    "Michael",
    "Mike",
    "Nguyen",
    "adam",
    "benjamin",
    "boris",
    "david",
    "edward",
    "grandpa",
    "gustave",
    "iven3",
    "john",
    "klatt3",
    "marcelo",
    "max",
    "michel",
    "miguel",
    "norbert",
    "pablo",
    "paul",
    "quincy",
    "rob",
    "robert",
    "travis",
    "victor",
)
VARIANTS: tuple[str, ...] = FEMALE_VARIANTS + MALE_VARIANTS

RATE_LIMITS = (80, 450)  # words per minute espeak accepts without its speed-up stage
PITCH_LIMITS = (0, 99)

# espeak_PARAMETER, espeak_AUDIO_OUTPUT and flag values from speak_lib.h
_RATE, _VOLUME, _PITCH, _RANGE, _WORDGAP = 1, 2, 3, 4, 7
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INITIALIZE_DONT_EXIT = 0x8000
_POS_CHARACTER = 1
_CHARS_UTF8 = 1

_CALLBACK_T = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.c_void_p)


class EspeakError(RuntimeError):
    pass


def data_path() -> Path:
    import espeakng_loader

    return Path(espeakng_loader.get_data_path())


def missing_voices(accents: tuple[str, ...] | list[str], variants: tuple[str, ...] | list[str]) -> list[str]:
    """Names among ``accents``/``variants`` that the shipped voice data lacks."""
    root = data_path()
    langs = {p.name.lower() for p in (root / "lang").rglob("*") if p.is_file()}
    shipped_variants = {p.name for p in (root / "voices" / "!v").iterdir()}
    missing = [f"accent {a!r}" for a in accents if a.lower() not in langs]
    return missing + [f"variant {v!r}" for v in variants if v not in shipped_variants]


class _Engine:
    def __init__(self) -> None:
        import espeakng_loader

        self.lib = ctypes.CDLL(espeakng_loader.get_library_path())
        self.libc = ctypes.CDLL(ctypes.util.find_library("c"))
        lib = self.lib
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_Synth.argtypes = [
            ctypes.c_char_p,
            ctypes.c_size_t,
            ctypes.c_uint,
            ctypes.c_int,
            ctypes.c_uint,
            ctypes.c_uint,
            ctypes.c_void_p,
            ctypes.c_void_p,
        ]
        if not hasattr(lib, "espeak_ng_SetRandSeed"):
            raise EspeakError("this espeak-ng build lacks espeak_ng_SetRandSeed: its output cannot be reproduced")
        lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self.libc.srand.argtypes = [ctypes.c_uint]
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 0, str(data_path()).encode(), _INITIALIZE_DONT_EXIT)
        if rate != SAMPLE_RATE:
            raise EspeakError(f"espeak_Initialize returned {rate}, expected a sample rate of {SAMPLE_RATE}")
        self.chunks: list[bytes] = []
        self.callback = _CALLBACK_T(self._collect)  # kept referenced: espeak holds the pointer
        lib.espeak_SetSynthCallback(self.callback)
        self.count = 0

    def _collect(self, wav, n: int, events) -> int:
        if n > 0:
            self.chunks.append(ctypes.string_at(wav, 2 * n))
        return 0  # 0 = continue


_engine: _Engine | None = None


def init() -> int:
    """Load espeak into this process (once); return its sample rate."""
    global _engine
    if _engine is None:
        _engine = _Engine()
    return SAMPLE_RATE


def utterances_synthesised() -> int:
    """How many utterances this process has synthesised (0 means fresh engine state)."""
    return 0 if _engine is None else _engine.count


def synthesize(
    text: str, voice: str, rate_wpm: int = 175, pitch: int = 50, pitch_range: int = 50, seed: int = 0
) -> np.ndarray:
    """Speak ``text`` with ``voice`` ("en-us+f3"); return int16 samples at :data:`SAMPLE_RATE`."""
    if not RATE_LIMITS[0] <= rate_wpm <= RATE_LIMITS[1]:
        raise ValueError(f"rate_wpm {rate_wpm} outside espeak's range {RATE_LIMITS}")
    for name, value in (("pitch", pitch), ("pitch_range", pitch_range)):
        if not PITCH_LIMITS[0] <= value <= PITCH_LIMITS[1]:
            raise ValueError(f"{name} {value} outside {PITCH_LIMITS}")
    init()
    eng = _engine
    assert eng is not None
    if eng.lib.espeak_SetVoiceByName(voice.encode()) != 0:
        raise EspeakError(f"espeak has no voice {voice!r}")
    for param, value in ((_RATE, rate_wpm), (_PITCH, pitch), (_RANGE, pitch_range), (_VOLUME, 100), (_WORDGAP, 0)):
        eng.lib.espeak_SetParameter(param, int(value), 0)
    eng.lib.espeak_ng_SetRandSeed(seed & 0x7FFFFFFF)
    eng.libc.srand(seed & 0xFFFFFFFF)
    eng.chunks = []
    data = text.encode("utf-8") + b"\0"
    status = eng.lib.espeak_Synth(data, len(data), 0, _POS_CHARACTER, 0, _CHARS_UTF8, None, None)
    if status != 0:
        raise EspeakError(f"espeak_Synth returned {status} for {text!r} ({voice})")
    if eng.lib.espeak_Synchronize() != 0:
        raise EspeakError(f"espeak_Synchronize failed for {text!r} ({voice})")
    eng.count += 1
    samples = np.frombuffer(b"".join(eng.chunks), dtype="<i2").copy()
    eng.chunks = []
    return samples
