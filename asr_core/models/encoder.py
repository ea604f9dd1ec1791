"""The encoder interface every acoustic encoder implements, and the config base class.

Layout, for the whole project (icefall / torchaudio convention)::

    x:      the encoder's input, whatever its front end consumes:
            (B, F, T) features for feature encoders (the feature pipeline's layout,
            as in DLE, NeMo and torchaudio's MelSpectrogram), (B, S) samples for
            waveform encoders (wav2vec 2.0).
    x_lens: (B,) int64, valid input frames (or samples) per utterance.
    y:      (B, T', D) encoder output, batch first, time second, features last.
    y_lens: (B,) int64, valid output frames; frames at t >= y_lens[b] are undefined.

    B: batch, F: input features (mel bins), T: input frames, S: samples,
    T': output frames, D: ``output_dim``.

Heads (CTC, transducer joiners) only see ``(y, y_lens)`` and ``output_dim``, so any
encoder that honours this contract plugs into any head. Channel-first convnets
transpose once at their output; recurrent and Transformer encoders are already in
this layout.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any, Self

import torch
from torch import nn


class Encoder(nn.Module, ABC):
    """Abstract acoustic encoder: ``forward(x, x_lens) -> (y, y_lens)``.

    Attributes every implementation sets in ``__init__``:
        output_dim:  D, the feature size of ``y``.
        subsampling: input frames (or samples) per output frame, e.g. 2 for
            QuartzNet/Jasper on 10 ms features, 320 for wav2vec 2.0 on 16 kHz audio.
    """

    output_dim: int
    subsampling: int
    # A streaming encoder (the LSTM transcriber) also has ``stack``-ed input frames in ``cfg``,
    # ``zero_state(batch)`` and ``encode(frames, lens, state) -> (y, y_lens, state)``, so a stream
    # fed in chunks gives its offline outputs; decoders and exporters read this flag.
    streaming: bool = False

    @abstractmethod
    def forward(self, x: torch.Tensor, x_lens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encode a padded batch; see the module docstring for shapes."""

    @abstractmethod
    def output_lengths(self, x_lens: torch.Tensor) -> torch.Tensor:
        """``y_lens`` for given ``x_lens`` without running the network.

        Data pipelines use it to drop utterances that are too short for their
        transcript (CTC needs at least as many output frames as target labels).
        """


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """Base for the per-family config dataclasses (``QuartzNetConfig``, ...).

    Subclasses are frozen dataclasses whose fields are ints, floats, bools,
    strings or tuples of those; ``to_dict`` gives plain JSON/YAML-able values.
    """

    def to_dict(self) -> dict[str, Any]:
        return {
            f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
            for f in dataclasses.fields(self)
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Self:
        """Build from a (possibly partial) dict; missing keys take the defaults.

        Unknown keys raise: a typo in a params file must not silently fall back
        to a default architecture.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown {cls.__name__} keys {unknown}; valid keys: {sorted(names)}")
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in d.items()})

    def replace(self, **overrides: Any) -> Self:
        """A copy with some fields changed; unknown names raise like ``from_dict``."""
        return type(self).from_dict({**self.to_dict(), **overrides})
