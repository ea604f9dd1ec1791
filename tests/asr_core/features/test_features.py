"""Feature pipeline of the QuartzNet/Jasper family: torch module, augmentations, DALI loader."""

from __future__ import annotations

import io
import json
import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from asr_core.features import (
    FilterbankConfig,
    FilterbankFeatures,
    SpecAugment,
    SpecAugmentConfig,
    SpeedPerturb,
    SpeedPerturbConfig,
    mel_filterbank,
    nonsilent_interval,
    speed_perturb,
    trim_silence,
)
from asr_core.testing import make_wave, write_audio

SR = 16000
HOP = 160
# Lengths chosen to hit the edge cases: a multiple of the hop (1 + T // hop frames in the STFT
# but T / hop valid ones), one sample past a hop, and a clip shorter than n_fft.
LENGTHS = [16000, 11680, 8001, 400]


def _batch(lengths=LENGTHS, seed=0):
    waves = [torch.from_numpy(make_wave(n / SR, SR, seed=seed + i)) for i, n in enumerate(lengths)]
    x = torch.zeros(len(waves), max(lengths))
    for i, w in enumerate(waves):
        x[i, : w.numel()] = w
    return x, torch.tensor(lengths), waves


def _dle_reference(wave: torch.Tensor, cfg: FilterbankConfig) -> torch.Tensor:
    """DLE FilterbankFeatures (eval, no dither) on one utterance, written out independently:
    torch.stft(center=True, reflect), torchaudio's Slaney mel matrix, loop-style statistics."""
    x = torch.cat((wave[:1], wave[1:] - cfg.preemph * wave[:-1]))
    window = torch.hann_window(cfg.win_length, periodic=False)
    spec = torch.stft(
        x, cfg.n_fft, cfg.hop_length, cfg.win_length, window, center=True, pad_mode="reflect", return_complex=True
    )
    power = spec.abs() ** 2
    fb = torchaudio.functional.melscale_fbanks(
        cfg.n_fft // 2 + 1, 0.0, SR / 2, cfg.n_mels, SR, norm="slaney", mel_scale="slaney"
    ).T
    feats = torch.log(fb @ power + cfg.log_guard)
    n = math.ceil(wave.numel() / cfg.hop_length)
    valid = feats[:, :n]
    return (valid - valid.mean(dim=1, keepdim=True)) / (valid.std(dim=1, keepdim=True) + 1e-5)


# ----------------------------------------------------------------------------- config and filters


def test_config_round_trip_and_unknown_keys():
    cfg = FilterbankConfig(n_mels=80, dither=0.0)
    assert FilterbankConfig.from_dict(cfg.to_dict()) == cfg
    assert (cfg.win_length, cfg.hop_length) == (320, 160)
    with pytest.raises(ValueError, match="n_filt"):
        FilterbankConfig.from_dict({"n_filt": 64})
    with pytest.raises(ValueError, match="normalize"):
        FilterbankConfig(normalize="per_utterance")
    assert SpecAugmentConfig.from_dict(SpecAugmentConfig.jasper().to_dict()).max_time == 75
    with pytest.raises(ValueError, match="unknown"):
        SpeedPerturbConfig.from_dict({"rate": 1.0})


def test_mel_filterbank_matches_librosa_slaney():
    ours = mel_filterbank(SR, 512, 64)
    ref = torchaudio.functional.melscale_fbanks(257, 0.0, SR / 2, 64, SR, norm="slaney", mel_scale="slaney").T
    assert ours.shape == (64, 257)
    torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-7)


# ----------------------------------------------------------------------------- FilterbankFeatures


def test_matches_dle_reference_per_utterance():
    cfg = FilterbankConfig()
    fe = FilterbankFeatures(cfg).eval()
    x, lens, waves = _batch(LENGTHS[:3])
    feats, feat_lens = fe(x, lens)
    for i, w in enumerate(waves):
        ref = _dle_reference(w, cfg)
        n = int(feat_lens[i])
        assert ref.shape[1] == n
        torch.testing.assert_close(feats[i, :, :n], ref, rtol=0, atol=1e-4)


def test_shapes_lengths_and_padding():
    fe = FilterbankFeatures().eval()
    x, lens, _ = _batch()
    feats, feat_lens = fe(x, lens)
    assert feat_lens.tolist() == [100, 73, 51, 3]  # ceil(len / 160)
    assert feat_lens.dtype == torch.int64
    frames = 1 + x.size(1) // HOP  # 101 STFT frames, padded to 112
    assert feats.shape == (4, 64, math.ceil(frames / 16) * 16) == (4, 64, 112)
    for i, n in enumerate(feat_lens.tolist()):
        assert torch.all(feats[i, :, n:] == 0)
        assert torch.all(feats[i, :, :n].abs().sum(dim=0) > 0)


def test_per_feature_normalisation_over_valid_frames():
    fe = FilterbankFeatures().eval()
    x, lens, _ = _batch(LENGTHS[:3])
    feats, feat_lens = fe(x, lens)
    for i, n in enumerate(feat_lens.tolist()):
        valid = feats[i, :, :n].double()
        assert valid.mean(dim=1).abs().max() < 1e-5
        assert (valid.std(dim=1) - 1).abs().max() < 1e-4  # std / (std + 1e-5)


def test_batch_equals_single():
    fe = FilterbankFeatures().eval()
    x, lens, waves = _batch()
    feats, feat_lens = fe(x, lens)
    for i, w in enumerate(waves):
        alone, alone_len = fe(w[None], torch.tensor([w.numel()]))
        n = int(alone_len[0])
        assert n == int(feat_lens[i])
        torch.testing.assert_close(feats[i, :, :n], alone[0, :, :n], rtol=0, atol=2e-5)
    # garbage in the batch padding is never read
    noisy = x + (torch.arange(x.size(1))[None, :] >= lens[:, None]) * torch.randn_like(x)
    torch.testing.assert_close(fe(noisy, lens)[0], feats, rtol=0, atol=2e-5)


def test_dither_only_in_training():
    fe = FilterbankFeatures(FilterbankConfig(dither=1e-5))
    nodither = FilterbankFeatures(FilterbankConfig(dither=0.0)).eval()
    x, lens, _ = _batch(LENGTHS[:2])
    fe.eval()
    a, _ = fe(x, lens)
    torch.testing.assert_close(a, fe(x, lens)[0], rtol=0, atol=0)
    torch.testing.assert_close(a, nodither(x, lens)[0], rtol=0, atol=0)
    fe.train()
    torch.manual_seed(0)
    b, _ = fe(x, lens)
    c, _ = fe(x, lens)
    assert not torch.equal(b, c) and not torch.equal(a, b)
    assert (b - a).abs().max() < 0.5  # 1e-5 dither on audio at ~0.25 barely moves the features


def test_conv_stft_path_and_onnx_export():
    fe = FilterbankFeatures().eval()
    x, lens, _ = _batch(LENGTHS)
    ref, ref_lens = fe(x, lens)
    fe.use_conv_stft = True
    torch.testing.assert_close(fe(x, lens)[0], ref, rtol=0, atol=1e-4)
    fe.use_conv_stft = False

    ort = pytest.importorskip("onnxruntime")
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                fe,
                (x[:2], lens[:2]),
                buf,
                dynamo=False,
                opset_version=17,
                input_names=["x", "x_lens"],
                output_names=["feats", "feat_lens"],
                dynamic_axes={
                    "x": {0: "B", 1: "T"},
                    "x_lens": {0: "B"},
                    "feats": {0: "B", 2: "F"},
                    "feat_lens": {0: "B"},
                },
            )
        except (TypeError, RuntimeError) as e:  # legacy exporter gone in a future torch
            pytest.skip(f"TorchScript ONNX exporter unavailable: {e}")
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    feats, feat_lens = sess.run(None, {"x": x.numpy(), "x_lens": lens.numpy()})  # other B, T
    assert feat_lens.tolist() == ref_lens.tolist()
    np.testing.assert_allclose(feats, ref.numpy(), rtol=0, atol=1e-4)


# ----------------------------------------------------------------------------- augmentations


def test_spec_augment_masks_inside_valid_lengths_and_is_seeded():
    b, c, f = 4, 64, 160
    lens = torch.tensor([160, 120, 40, 7])
    x = (torch.arange(f)[None, None, :] < lens[:, None, None]).float().expand(b, c, f).clone()
    aug = SpecAugment(SpecAugmentConfig(), seed=1).train()
    y = aug(x, lens)
    assert torch.all(y[x == 0] == 0)  # padding untouched
    masked = (x == 1) & (y == 0)
    assert masked.any()
    for i in range(b):
        time_masked = masked[i].all(dim=0)  # whole columns: time masks (or freq masks covering all)
        assert int(time_masked[: lens[i]].sum()) <= 2 * 55
        freq_masked = masked[i, :, : lens[i]].all(dim=1)
        assert int(freq_masked.sum()) <= 2 * 15 or time_masked[: lens[i]].all()
    again = SpecAugment(SpecAugmentConfig(), seed=1).train()(x, lens)
    assert torch.equal(again, y)
    assert not torch.equal(SpecAugment(SpecAugmentConfig(), seed=2).train()(x, lens), y)
    assert torch.equal(aug.eval()(x, lens), x)


def test_adaptive_time_masks_cover_at_most_their_ratio_of_each_utterance():
    b, c, f = 3, 8, 200
    lens = torch.tensor([200, 40, 10])
    x = (torch.arange(f)[None, None, :] < lens[:, None, None]).float().expand(b, c, f).clone()
    cfg = SpecAugmentConfig(freq_masks=0, time_masks=1, min_time=55, max_time=55, max_time_ratio=0.2)
    masked = (x == 1) & (SpecAugment(cfg, seed=3).train()(x, lens) == 0)
    widths = [int(masked[i].all(dim=0).sum()) for i in range(b)]
    assert widths == [40, 8, 2]  # 55 frames, cut to 20% of 200, 40 and 10 frames
    with pytest.raises(ValueError, match="max_time_ratio"):
        SpecAugmentConfig(max_time_ratio=1.5)


def test_frequency_warp_moves_a_peak_by_its_factor_and_leaves_the_rest():
    b, c, f = 64, 80, 30
    lens = torch.full((b,), 20)
    x = torch.zeros(b, c, f)
    x[:, 40, :20] = 1.0  # a "formant" at bin 40 in every row's valid frames
    cfg = SpecAugmentConfig(freq_masks=0, time_masks=0, max_freq_warp=0.1)
    y = SpecAugment(cfg, seed=4).train()(x, lens)
    assert torch.all(y[:, :, 20:] == 0)  # padding frames stay zero
    centre = (y[:, :, 0] * torch.arange(c)).sum(dim=1) / y[:, :, 0].sum(dim=1)  # where each row's peak went
    assert torch.all((centre >= 40 / 1.1 - 0.5) & (centre <= 40 / 0.9 + 0.5)), centre
    assert centre.min() < 38 and centre.max() > 42  # both ways, per row
    assert torch.allclose(y[:, :, 0].sum(dim=1), torch.ones(b), atol=0.2)  # interpolated, not lost
    assert torch.equal(y, SpecAugment(cfg, seed=4).train()(x, lens))
    assert torch.equal(SpecAugment(cfg, seed=4).eval()(x, lens), x)
    # off (the default): no draw, so the masks of a seed are what they were without the field
    masks = SpecAugmentConfig(freq_masks=2, time_masks=2)
    ones = torch.ones(b, c, f)
    assert torch.equal(
        SpecAugment(masks, seed=5).train()(ones, lens),
        SpecAugment(SpecAugmentConfig(freq_masks=2, time_masks=2, max_freq_warp=0.0), seed=5).train()(ones, lens),
    )
    with pytest.raises(ValueError, match="max_freq_warp"):
        SpecAugmentConfig(max_freq_warp=0.6)


def test_speed_perturb_changes_duration_and_pitch():
    t = torch.arange(SR) / SR
    tone = torch.sin(2 * math.pi * 440.0 * t)
    for factor in (0.85, 0.9, 1.1, 1.15):
        y = speed_perturb(tone, SR, factor)
        assert abs(y.numel() - SR / factor) <= 1, (factor, y.numel())
        peak_hz = torch.fft.rfft(y).abs().argmax().item() * SR / y.numel()
        assert abs(peak_hz - 440.0 * factor) < 3.0, (factor, peak_hz)
    assert speed_perturb(tone, SR, 1.0) is tone
    sp = SpeedPerturb(SpeedPerturbConfig(), seed=0)
    factors = [sp.sample_factor() for _ in range(50)]
    assert all(0.85 <= f <= 1.15 and abs(f * 100 - round(f * 100)) < 1e-6 for f in factors)
    again = SpeedPerturb(SpeedPerturbConfig(), seed=0)
    assert factors == [again.sample_factor() for _ in range(50)]
    assert len(set(factors)) > 10


def test_trim_silence_removes_padded_silence():
    speech = torch.from_numpy(make_wave(1.0, SR, seed=3))
    wave = torch.cat([torch.zeros(8000), speech, torch.zeros(12000)])
    start, end = nonsilent_interval(wave)
    # frame-based: boundaries within one frame (2048) of the truth, on the hop (512) grid
    assert 8000 - 2048 <= start <= 8000 and start % 512 == 0
    assert 24000 <= end <= 24000 + 2048
    trimmed = trim_silence(wave)
    assert trimmed.numel() == end - start and trimmed.numel() < wave.numel() - 12000
    assert trim_silence(torch.zeros(4000)).numel() == 4000  # relative threshold, as librosa
    quiet = torch.cat([1e-4 * speech, speech])  # -80 dB relative to the peak: trimmed
    assert nonsilent_interval(quiet)[0] >= 16000 - 2048


# ----------------------------------------------------------------------------- DALI


@pytest.fixture()
def manifest(tmp_path):
    rows = []
    for i, n in enumerate([16000, 11680, 8001]):
        rel = f"audio/train/u{i}.flac"
        write_audio(tmp_path / rel, n / SR, SR, seed=10 + i, subtype="PCM_16")
        rows.append({"audio_filepath": rel, "duration": n / SR, "text": f"utt {i}", "utt_id": f"u{i}", "speaker": "s0"})
    path = tmp_path / "manifest.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# Tolerance of DALI vs torch on normalised features (unit variance): measured max abs diff
# ~2e-5. Residuals: float32 FFT (pocketfft in torch vs DALI's), mel matrices built separately
# in float32 vs float64 then rounded, and reduction order of the mean/std.
DALI_ATOL = 1e-4


def test_dali_matches_torch_features(manifest):
    pytest.importorskip("nvidia.dali")
    from asr_core.features.dali import build_dali_loader

    cfg = FilterbankConfig()
    loader = build_dali_loader(manifest, batch_size=3, cfg=cfg, device="cpu", num_threads=1)
    fe = FilterbankFeatures(cfg).eval()
    batches = list(loader)
    assert len(batches) == 1
    feats, feat_lens, idx = batches[0]
    assert sorted(idx.tolist()) == [0, 1, 2]
    assert feats.shape[1] == 64 and feats.shape[2] % 16 == 0
    worst = 0.0
    for b, i in enumerate(idx.tolist()):
        entry = loader.entries[i]
        assert entry["text"] == f"utt {i}"
        wave, _sr = sf.read(entry["audio_filepath"], dtype="float32")
        ref, ref_len = fe(torch.from_numpy(wave)[None], torch.tensor([len(wave)]))
        n = int(ref_len[0])
        assert int(feat_lens[b]) == n
        worst = max(worst, (feats[b, :, :n] - ref[0, :, :n]).abs().max().item())
        assert torch.all(feats[b, :, n:] == 0)
    assert worst < DALI_ATOL, worst
    loader.close()


def test_dali_training_mode_runs_on_cpu(manifest):
    pytest.importorskip("nvidia.dali")
    from asr_core.features import TrimSilenceConfig
    from asr_core.features.dali import build_dali_loader

    loader = build_dali_loader(
        manifest,
        batch_size=2,
        device="cpu",
        shuffle=True,
        num_threads=1,
        seed=3,
        train=True,
        speed=SpeedPerturbConfig(),
        trim=TrimSilenceConfig(),
    )
    assert len(loader) == 2
    for _epoch in range(2):  # every epoch is a permutation, the partial last batch included
        seen = []
        for feats, feat_lens, idx in loader:
            for b, i in enumerate(idx.tolist()):
                n0 = math.ceil(round(loader.entries[i]["duration"] * SR) / HOP)
                assert n0 / 1.15 - 2 <= int(feat_lens[b]) <= n0 / 0.85 + 2, (n0, feat_lens[b])
                assert torch.all(feats[b, :, int(feat_lens[b]) :] == 0)
                seen.append(i)
        assert sorted(seen) == [0, 1, 2]
    loader.close()
