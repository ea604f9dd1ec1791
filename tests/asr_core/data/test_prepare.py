"""The prepare step: every kind of bad item is quarantined with its reason, good ones pass."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from asr_core.data.audio import load_audio, resample, to_mono, to_pcm16, write_audio_file
from asr_core.data.items import INDEX_NAME, SourceItem, write_index
from asr_core.data.prepare import REASONS, PrepareConfig, prepare_corpus
from asr_core.io import read_jsonl
from asr_core.testing import make_wave, write_audio

MANIFEST_FIELDS = ["audio_filepath", "duration", "text", "utt_id", "speaker"]

# utt_id -> expected reason for the bad items of the corpus below.
EXPECTED_REJECTS = {
    "corrupt": "unreadable",
    "truncated": "unreadable",
    "empty": "empty_audio",
    "past-end": "empty_audio",
    "zero-seg": "empty_audio",
    "tel8k": "sample_rate_too_low",
    "long": "too_long",
    "short": "too_short",
    "digits": "out_of_alphabet",
    "blank": "empty_transcript",
    "a16": "duplicate_id",  # second occurrence, other split
    "missing": "missing_file",
    "../escape": "invalid_id",
    "neg-offset": "invalid_segment",
}
EXPECTED_GOOD = {"train": ["a16", "b22", "stereo44", "seg", "wav48"], "dev": ["d16"]}


def _build_corpus(root: Path) -> Path:
    src = root / "src"
    write_audio(src / "a16.flac", 2.0, 16000, seed=1, subtype="PCM_16")  # passthrough candidate
    write_audio(src / "b22.flac", 3.0, 22050, seed=2, subtype="PCM_16")
    write_audio(src / "stereo44.flac", 2.5, 44100, channels=2, seed=3, subtype="PCM_16")
    write_audio(src / "wav48.wav", 1.5, 48000, seed=4, subtype="PCM_24")
    write_audio(src / "d16.wav", 1.0, 16000, seed=5, subtype="PCM_16")
    write_audio(src / "long_rec.flac", 8.0, 22050, channels=2, seed=6, subtype="PCM_16")
    write_audio(src / "tel8k.flac", 2.0, 8000, seed=7, subtype="PCM_16")
    write_audio(src / "long.flac", 31.0, 16000, seed=8, subtype="PCM_16")
    write_audio(src / "short.flac", 0.05, 16000, seed=9, subtype="PCM_16")
    (src / "corrupt.flac").write_bytes(b"fLaC" + bytes(np.random.default_rng(0).integers(0, 256, 4000, np.uint8)))
    whole = (src / "b22.flac").read_bytes()
    (src / "truncated.flac").write_bytes(whole[: len(whole) // 2])
    (src / "empty.flac").write_bytes(b"")

    def item(utt_id, audio, text="hello world", split="train", **kw):
        return SourceItem(utt_id=utt_id, split=split, audio=audio, text=text, speaker="spk1", **kw)

    items = [
        item("a16", "src/a16.flac", "Hello, World!"),
        item("corrupt", "src/corrupt.flac"),
        item("b22", str(src / "b22.flac"), "it's a \u2018test\u2019"),  # absolute path
        item("empty", "src/empty.flac"),
        item("stereo44", "src/stereo44.flac"),
        item("tel8k", "src/tel8k.flac"),
        item("long", "src/long.flac"),
        item("short", "src/short.flac"),
        item("digits", "src/a16.flac", "call 911 now"),
        item("blank", "src/a16.flac", " ?! "),
        item("a16", "src/a16.flac", split="dev"),
        item("missing", "src/nope.flac"),
        item("seg", "src/long_rec.flac", offset=2.0, duration=3.0),
        item("past-end", "src/long_rec.flac", offset=9.0, duration=1.0),
        item("zero-seg", "src/long_rec.flac", offset=1.0, duration=0.0),
        item("neg-offset", "src/long_rec.flac", offset=-1.0, duration=2.0),
        item("truncated", "src/truncated.flac"),
        item("wav48", "src/wav48.wav"),
        item("../escape", "src/a16.flac"),
        item("d16", "src/d16.wav", split="dev"),
    ]
    index = root / INDEX_NAME
    write_index(index, items)
    return index


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("prepare")
    index = _build_corpus(root)
    runs = {}
    for workers in (1, 2):  # fork after this process has run torch ops
        out = root / f"out{workers}"
        runs[workers] = (out, prepare_corpus(index, out, PrepareConfig(workers=workers), progress=False))
    return root, index, runs


def test_rejects_have_the_right_reasons(corpus):
    _, _, runs = corpus
    out, summary = runs[2]
    rows = list(read_jsonl(out / "rejected.jsonl"))
    assert {r["utt_id"]: r["reason"] for r in rows} == EXPECTED_REJECTS
    assert len(rows) == len(EXPECTED_REJECTS)  # the duplicate once, the first a16 kept
    for r in rows:
        assert set(r) == {"utt_id", "split", "audio", "reason", "detail"}, r
        assert r["reason"] in REASONS and r["detail"], r
    by_id = {r["utt_id"]: r for r in rows}
    assert "1" in by_id["digits"]["detail"] and "9" in by_id["digits"]["detail"]
    assert by_id["a16"]["split"] == "dev"
    assert by_id["corrupt"]["detail"]  # the decoder's message
    assert summary["rejected"] == len(EXPECTED_REJECTS)
    expected_counts = {reason: list(EXPECTED_REJECTS.values()).count(reason) for reason in REASONS}
    assert summary["rejects_by_reason"] == expected_counts


def test_manifests_fields_paths_and_audio(corpus):
    root, _, runs = corpus
    out, summary = runs[2]
    for split, ids in EXPECTED_GOOD.items():
        manifest = out / f"{split}.jsonl"
        rows = list(read_jsonl(manifest))
        assert [r["utt_id"] for r in rows] == ids  # index order
        for r in rows:
            assert list(r) == MANIFEST_FIELDS, r
            assert r["audio_filepath"] == f"audio/{split}/{r['utt_id']}.flac"
            path = manifest.parent / r["audio_filepath"]
            info = sf.info(path)
            assert (info.samplerate, info.channels, info.format, info.subtype) == (16000, 1, "FLAC", "PCM_16")
            assert r["duration"] == round(info.frames / 16000, 4)
            assert r["speaker"] == "spk1"
        assert summary["splits"][split]["utterances"] == len(ids)
    texts = {r["utt_id"]: r["text"] for r in read_jsonl(out / "train.jsonl")}
    assert texts["a16"] == "hello world" and texts["b22"] == "it's a test"
    # already 16-bit mono 16 kHz FLAC: byte-copied after a full decode
    assert (out / "audio/train/a16.flac").read_bytes() == (root / "src/a16.flac").read_bytes()
    assert summary["passthrough_copies"] == 1
    assert summary["processed_audio_seconds"] == pytest.approx(2.0 + 3.0 + 2.5 + 3.0 + 1.5 + 1.0, abs=1e-3)


def test_stereo_44k_is_downmixed_and_keeps_its_duration(corpus):
    root, _, runs = corpus
    out, _ = runs[2]
    y, sr = sf.read(out / "audio/train/stereo44.flac", dtype="float32")
    assert sr == 16000 and y.ndim == 1
    assert abs(len(y) / sr - 2.5) <= 1e-3
    x, _ = sf.read(root / "src/stereo44.flac", dtype="float32")
    ref = resample(x.mean(axis=1), 44100, 16000)
    np.testing.assert_allclose(y, ref, atol=1.5 / 32768)


def test_segment_decodes_only_its_span(corpus):
    root, _, runs = corpus
    out, _ = runs[2]
    y, sr = sf.read(out / "audio/train/seg.flac", dtype="int16")
    assert abs(len(y) / sr - 3.0) <= 1e-3
    full, src_sr = sf.read(root / "src/long_rec.flac", dtype="float32")
    ref = to_pcm16(resample(to_mono(full[2 * src_sr : 5 * src_sr]), src_sr, 16000))
    np.testing.assert_array_equal(y, ref)


def test_workers_1_and_2_give_identical_outputs(corpus):
    _, _, runs = corpus
    (out2, _), (out1, _) = runs[2], runs[1]
    files2 = sorted(p.relative_to(out2) for p in out2.rglob("*") if p.is_file() and p.name != "summary.json")
    files1 = sorted(p.relative_to(out1) for p in out1.rglob("*") if p.is_file() and p.name != "summary.json")
    assert files2 == files1
    for rel in files2:
        assert (out2 / rel).read_bytes() == (out1 / rel).read_bytes(), rel


def test_no_temp_files_left_and_summary_written(corpus):
    root, _, runs = corpus
    for out, summary in runs.values():
        names = [p.name for p in out.rglob("*")]
        assert not [n for n in names if ".tmp." in n], names
        assert json.loads((out / "summary.json").read_text())["accepted"] == summary["accepted"] == 6
        assert summary["wall_seconds"] > 0 and summary["rtfx"] > 0
    assert not (root / "escape.flac").exists() and not (root / "out2/audio/escape.flac").exists()


def test_telephone_audio_accepted_when_allowed(tmp_path):
    write_audio(tmp_path / "tel.flac", 2.0, 8000, seed=7, subtype="PCM_16")
    write_index(tmp_path / INDEX_NAME, [SourceItem("tel", "train", "tel.flac", "hello")])
    cfg = PrepareConfig(min_sample_rate=8000, workers=1, format="wav")
    for _ in range(2):  # a rerun into the same folder replaces the outputs
        summary = prepare_corpus(tmp_path / INDEX_NAME, tmp_path / "out", cfg, progress=False)
        assert summary["accepted"] == 1
    info = sf.info(tmp_path / "out/audio/train/tel.wav")
    assert (info.samplerate, info.format, info.subtype, info.frames) == (16000, "WAV", "PCM_16", 32000)
    assert next(read_jsonl(tmp_path / "out/train.jsonl"))["audio_filepath"] == "audio/train/tel.wav"


def test_a_split_left_empty_stops_the_stage_naming_the_param(tmp_path):
    """Telephone-band clips under the 16 kHz default: the stage says which param lets them in."""
    write_audio(tmp_path / "tel.flac", 0.5, 8000, seed=7, subtype="PCM_16")
    write_audio(tmp_path / "ok.flac", 0.5, 16000, seed=8, subtype="PCM_16")
    items = [SourceItem("tel", "train", "tel.flac", "one"), SourceItem("ok", "dev", "ok.flac", "two")]
    write_index(tmp_path / INDEX_NAME, items)
    with pytest.raises(ValueError, match=r"split\(s\) \['train'\].*1 sample_rate_too_low \(prepare.min_sample_rate\)"):
        prepare_corpus(tmp_path / INDEX_NAME, tmp_path / "out", PrepareConfig(workers=1), progress=False)


def test_config_round_trip_and_unknown_key():
    cfg = PrepareConfig(sample_rate=8000, workers=1)
    assert PrepareConfig.from_dict(cfg.to_dict()) == cfg
    with pytest.raises(ValueError, match="sample_rat"):
        PrepareConfig.from_dict({"sample_rat": 16000})
    with pytest.raises(ValueError, match="format"):
        PrepareConfig(format="mp3")
    with pytest.raises(ValueError, match="workers"):
        PrepareConfig(workers=0)


@pytest.mark.parametrize("orig_sr,new_sr", [(22050, 16000), (44100, 16000), (48000, 16000), (8000, 16000)])
@pytest.mark.parametrize("frames", [1, 7, 441, 28913])
def test_resample_matches_torchaudio(orig_sr, new_sr, frames):
    x = make_wave(frames / orig_sr, orig_sr, channels=2, seed=11)
    y = resample(x, orig_sr, new_sr)
    t = torch.from_numpy(x.T.copy())
    ref = torchaudio.transforms.Resample(orig_sr, new_sr)(t).numpy().T
    assert y.shape == ref.shape == (int(np.ceil(frames * new_sr / orig_sr)), 2)
    np.testing.assert_allclose(y, ref, atol=1e-6)  # same kernel, matmul instead of conv1d
    # the functional builds its kernel in float32, the transform in float64
    func = torchaudio.functional.resample(t, orig_sr, new_sr).numpy().T
    np.testing.assert_allclose(y, func, atol=1e-5)  # a third of a 16-bit step
    np.testing.assert_allclose(resample(x[:, 0], orig_sr, new_sr), y[:, 0], atol=1e-7)
    assert resample(x[:0, 0], orig_sr, new_sr).shape == (0,)


def test_load_audio_segment_and_write(tmp_path):
    x = make_wave(2.0, 16000, channels=2, seed=3)
    sf.write(tmp_path / "a.wav", x, 16000, subtype="FLOAT")
    seg, sr = load_audio(tmp_path / "a.wav", offset=0.5, duration=0.25)
    assert sr == 16000 and seg.shape == (4000, 2)
    np.testing.assert_array_equal(seg, x[8000:12000])
    assert load_audio(tmp_path / "a.wav", offset=5.0)[0].shape == (0, 2)
    ramp = np.array([-1.5, -1.0, -0.5, 0.0, 0.5, 0.99999, 1.2], dtype=np.float32)  # resampling overshoots 1.0
    n = write_audio_file(tmp_path / "b.flac", ramp, 16000, "flac")
    y, _ = sf.read(tmp_path / "b.flac", dtype="int16")
    assert n == (tmp_path / "b.flac").stat().st_size
    assert y.tolist() == [-32768, -32768, -16384, 0, 16384, 32767, 32767]


@pytest.mark.parametrize(
    "fmt,subtype,suffix", [("NIST", "PCM_16", "sph"), ("OGG", "VORBIS", "ogg"), ("MP3", None, "mp3")]
)
def test_load_audio_reads_other_containers(tmp_path, fmt, subtype, suffix):
    path = write_audio(tmp_path / f"a.{suffix}", 1.0, 16000, seed=2, format=fmt, subtype=subtype)
    x, sr = load_audio(path, offset=0.25)
    assert sr == 16000 and x.dtype == np.float32 and x.shape[1] == 1
    assert abs(len(x) - 12000) <= 1200, len(x)  # lossy codecs pad/trim a little
