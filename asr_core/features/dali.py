"""DALI data loader producing the same features as ``FilterbankFeatures`` in eval mode.

The pipeline reads NeMo-style JSON-lines manifests with ``readers.nemo_asr`` and computes, per
utterance: pre-emphasis (zero border, as DLE's torch code) -> ``spectrogram`` (the torch
window passed as ``window_fn``; centred windows with reflect padding, which is what
``torch.stft(center=True)`` does and what ``FilterbankFeatures`` does per utterance) -> mel
(Slaney scale and area normalisation, librosa's algorithm) -> ``log(x + guard)`` -> frames cut
to ceil(len / hop) -> mean / (unbiased std + eps) over time per mel bin -> zero padding to a
multiple of ``pad_to``. Agreement with the torch module is tested in ``tests/asr_core/features/test_features.py``.

Training mode (``train=True``) adds, on top: silence trim (``nonsilent_region``, before
anything else), speed perturbation (``audio_resample`` by 1 / factor, factor drawn from the
``SpeedPerturbConfig`` grid) and dither. These run on CPU and GPU. SpecAugment is left to
``asr_core.features.augment.SpecAugment`` on the loader's output (it works on any device).

Differences from the torch path that remain by design:
- DALI trims with a moving-average power over ``frame_length`` samples, librosa/our
  ``trim_silence`` with centred frames every ``hop_length``: boundaries differ by < 1 hop.
- DALI resamples with its own windowed-sinc (quality 50: 16 lobes), torchaudio with 6 zero
  crossings: perturbed audio is not bit-identical between the paths (same factors though).
- The batch's padded frame count is ceil(max_len / hop) rounded up to ``pad_to`` here and
  1 + max_len // hop rounded up in torch; they differ (by ``pad_to`` zero frames) only when
  the longest utterance is a multiple of ``pad_to`` hops long. Valid frames are identical.
- Utterances of a single frame (< hop + 1 samples) are not supported (the unbiased std
  divides by zero); ``min_duration`` filters them out.

Relative ``audio_filepath`` entries are resolved against the manifest's folder (DALI itself
resolves them against the working directory): the loader writes a resolved copy to a
temporary folder that lives as long as the loader. The copy holds only the paths: DALI 2.4's
``nemo_asr`` truncates audio to a manifest's rounded ``duration`` (observed, contrary to its
docstring), and transcripts come back through the sample indices, not through DALI.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from asr_core.features.augment import SpeedPerturbConfig, TrimSilenceConfig
from asr_core.features.filterbank import FilterbankConfig, make_window
from asr_core.io import read_jsonl


def resolve_manifest(
    manifest_path: str | os.PathLike, out_path: str | os.PathLike, min_duration: float = 0.0, max_duration: float = 0.0
) -> list[dict[str, Any]]:
    """Copy a manifest with absolute audio paths, dropping clips outside the duration range.

    Returns the kept entries; DALI's sample index ``i`` is ``entries[i]``. A missing audio file
    raises here rather than in a DALI worker thread.
    """
    manifest_path = Path(manifest_path)
    root = manifest_path.resolve().parent
    kept: list[dict[str, Any]] = []
    for row in read_jsonl(manifest_path):
        if "audio_filepath" not in row:
            raise ValueError(f"{manifest_path}: entry without audio_filepath: {row}")
        dur = float(row.get("duration", 0.0))
        if (min_duration > 0 and dur < min_duration) or (max_duration > 0 and dur > max_duration):
            continue
        if row.get("offset"):
            raise ValueError(f"{manifest_path}: 'offset' entries are not supported: {row}")
        path = Path(row["audio_filepath"])
        path = path if path.is_absolute() else root / path
        if not path.is_file():
            raise FileNotFoundError(f"{manifest_path}: audio file not found: {path}")
        kept.append({**row, "audio_filepath": str(path)})
    if not kept:
        raise ValueError(f"{manifest_path}: no entries left (min_duration={min_duration}, max_duration={max_duration})")
    with open(out_path, "w", encoding="utf-8") as f:
        for row in kept:
            # No "duration" in the copy: DALI 2.4 cuts the audio to int(duration * rate)
            # (0.5000625 s reads 8000 of 8001 samples), despite its docs; read whole files.
            f.write(json.dumps({"audio_filepath": row["audio_filepath"]}) + "\n")
    return kept


def _feature_graph(
    manifest: str,
    cfg: FilterbankConfig,
    device: str,
    train: bool,
    speed: SpeedPerturbConfig | None,
    trim: TrimSilenceConfig | None,
    shuffle: bool,
    seed: int,
    shard_id: int,
    num_shards: int,
):
    """The DALI graph; call inside a ``pipeline_def``. Returns (feats, feat_lens, indices)."""
    import nvidia.dali.math as dmath
    from nvidia.dali import fn, types

    # a global permutation per epoch (the first one included), the same in every shard
    shuffling = {"shuffle_after_epoch": True, "shuffle_after_epoch_seed": seed} if shuffle else {}
    audio, idx = fn.readers.nemo_asr(
        manifest_filepaths=[manifest],
        read_sample_rate=False,
        read_text=False,
        read_idxs=True,
        sample_rate=float(cfg.sample_rate),
        dtype=types.FLOAT,
        downmix=True,
        **shuffling,
        # the last batch of an epoch is padded inside the reader (and dropped by the iterator)
        # rather than filled from the next epoch, so every epoch sees each entry exactly once
        shard_id=shard_id,
        num_shards=num_shards,
        pad_last_batch=True,
        name="Reader",
    )

    if train and trim is not None:
        begin, length = fn.nonsilent_region(audio, cutoff_db=-float(trim.top_db), window_length=trim.frame_length)
        audio = fn.slice(audio, begin, length, axes=[0])
    if train and speed is not None:
        factor = fn.random.uniform(values=speed.grid(), seed=seed + 1)
        if speed.p < 1:
            keep = fn.cast(fn.random.coin_flip(probability=speed.p, seed=seed + 2), dtype=types.FLOAT)
            factor = keep * factor + (1.0 - keep)
        audio = fn.audio_resample(audio, scale=1.0 / factor)

    hop = cfg.hop_length
    n = fn.cast(audio.shape(), dtype=types.INT32)  # (1,) samples, on the CPU
    feat_len = (n + (hop - 1)) // hop  # ceil(len / hop), as FilterbankFeatures

    if device == "gpu":
        audio = audio.gpu()
    if train and cfg.dither > 0:
        audio = audio + fn.random.normal(audio, seed=seed + 3) * float(cfg.dither)
    if cfg.preemph is not None:
        audio = fn.preemphasis_filter(audio, preemph_coeff=float(cfg.preemph), border="zero")
    spec = fn.spectrogram(
        audio,
        nfft=cfg.n_fft,
        window_length=cfg.win_length,
        window_step=hop,
        window_fn=make_window(cfg.window, cfg.win_length).tolist(),
        center_windows=True,
        reflect_padding=True,
        power=2,
    )
    x = fn.mel_filter_bank(
        spec,
        sample_rate=float(cfg.sample_rate),
        nfilter=cfg.n_mels,
        freq_low=float(cfg.f_min),
        freq_high=float(cfg.f_max or cfg.sample_rate / 2),
        mel_formula=cfg.mel_scale,
        normalize=cfg.mel_norm == "slaney",
    )
    if cfg.log:
        x = dmath.log(x + float(cfg.log_guard))
    # The spectrogram has 1 + len // hop frames; keep the ceil(len / hop) valid ones.
    x = fn.slice(x, fn.constant(idata=[0], dtype=types.INT32), feat_len, axes=[1])
    if cfg.normalize != "none":
        axes = [1] if cfg.normalize == "per_feature" else [0, 1]
        mean = fn.reductions.mean(x, axes=axes, keep_dims=True)
        std = fn.reductions.std_dev(x, mean, axes=axes, ddof=1, keep_dims=True)
        x = (x - mean) / (std + float(cfg.norm_eps))
    x = fn.pad(x, axes=[1], fill_value=0.0, align=max(cfg.pad_to, 1))
    if device == "gpu":
        feat_len, idx = feat_len.gpu(), idx.gpu()
    return x, feat_len, idx


class DaliFeatureLoader:
    """Iterates (feats (B, C, F) float32, feat_lens (B,) int64, indices (B,) int64).

    ``indices`` point into ``self.entries`` (the manifest rows kept, with absolute paths), so
    ``[loader.entries[i]["text"] for i in indices]`` are the transcripts. One pass per
    ``iter()``; the last batch may be smaller.
    """

    def __init__(
        self,
        manifest_path: str | os.PathLike,
        batch_size: int,
        cfg: FilterbankConfig | None = None,
        device: str = "cpu",
        shuffle: bool = False,
        num_threads: int = 2,
        seed: int = 0,
        train: bool = False,
        speed: SpeedPerturbConfig | None = None,
        trim: TrimSilenceConfig | None = None,
        shard_id: int = 0,
        num_shards: int = 1,
        min_duration: float = 0.0,
        max_duration: float = 0.0,
        device_id: int = 0,
    ) -> None:
        from nvidia import dali
        from nvidia.dali.plugin.base_iterator import LastBatchPolicy
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        if device not in ("cpu", "gpu"):
            raise ValueError(f"device must be 'cpu' or 'gpu', got {device!r}")
        if device == "gpu" and not torch.cuda.is_available():
            raise RuntimeError("device='gpu' needs CUDA; use device='cpu' on this machine")
        self.cfg = cfg = cfg or FilterbankConfig()
        self.batch_size = batch_size
        self._tmp = tempfile.mkdtemp(prefix="dali_manifest_")
        self._cleanup = weakref.finalize(self, shutil.rmtree, self._tmp, True)
        manifest = os.path.join(self._tmp, "manifest.json")
        self.entries = resolve_manifest(manifest_path, manifest, min_duration, max_duration)

        @dali.pipeline_def
        def pipeline():
            return _feature_graph(manifest, cfg, device, train, speed, trim, shuffle, seed, shard_id, num_shards)

        self.pipe = pipeline(
            batch_size=batch_size, num_threads=num_threads, seed=seed, device_id=device_id if device == "gpu" else None
        )
        self.pipe.build()
        self._it = DALIGenericIterator(
            [self.pipe],
            ["feats", "feat_lens", "indices"],
            reader_name="Reader",
            last_batch_policy=LastBatchPolicy.PARTIAL,
            auto_reset=True,
        )

    def __len__(self) -> int:
        return len(self._it)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        for batch in self._it:
            out = batch[0]
            yield out["feats"], out["feat_lens"].reshape(-1).long(), out["indices"].reshape(-1).long()

    def close(self) -> None:
        self._cleanup()


def build_dali_loader(
    manifest_path: str | os.PathLike,
    batch_size: int,
    cfg: FilterbankConfig | None = None,
    device: str = "cpu",
    shuffle: bool = False,
    num_threads: int = 2,
    seed: int = 0,
    **kwargs: Any,
) -> DaliFeatureLoader:
    """DALI feature loader over a JSON-lines manifest; see ``DaliFeatureLoader``.

    ``device="gpu"`` runs every operator after decoding on GPU ``device_id`` (default 0);
    ``device="cpu"`` runs without CUDA (``device_id=None``). Extra keyword arguments:
    ``train``, ``speed``, ``trim``, ``shard_id``, ``num_shards``, ``min_duration``,
    ``max_duration``, ``device_id``.
    """
    return DaliFeatureLoader(
        manifest_path, batch_size, cfg, device=device, shuffle=shuffle, num_threads=num_threads, seed=seed, **kwargs
    )
