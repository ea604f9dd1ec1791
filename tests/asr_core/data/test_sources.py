"""Local corpus sources: Common Voice, TED-LIUM and user manifests, on tiny fake releases."""

from __future__ import annotations

import json
import logging
import os
import tarfile
from pathlib import Path

import pytest
import soundfile as sf

from asr_core.data.download.archive import ArchiveError, UnsafeArchiveError
from asr_core.data.items import SourceItem
from asr_core.data.sources import fetch_source
from asr_core.data.sources.commonvoice import CommonVoiceConfig, fetch_commonvoice
from asr_core.data.sources.manifest import ManifestConfig, fetch_manifest
from asr_core.data.sources.tedlium import TedliumConfig, clean_transcript, fetch_tedlium, read_stm
from asr_core.testing import write_audio

SR = 16000
MP3 = "MP3" in sf.available_formats()
CV_RELEASE = "cv-corpus-17.0-2024-03-15"
CV_HEADER = (  # a v17-style header: more columns than the three we read
    "client_id path sentence_id sentence sentence_domain up_votes down_votes age gender accents variant locale segment"
)
CV_ROWS = {  # file -> (client_id, clip, sentence); sentences carry bare quotes on purpose
    "train.tsv": [
        ("spk_a", "common_voice_en_1.mp3", 'He said "hello" to me.'),
        ("spk_b", "common_voice_en_2.mp3", "It's 5 o'clock"),
    ],
    "dev.tsv": [("spk_c", "common_voice_en_3.mp3", '"Quoted" start')],
    "test.tsv": [("spk_a", "common_voice_en_4.mp3", "Plain test sentence")],
}


def _tsv(path: Path, rows: list[tuple[str, str, str]], header: str = CV_HEADER) -> Path:
    lines = [header.replace(" ", "\t")]
    for i, (client, clip, sentence) in enumerate(rows):
        lines.append("\t".join([client, clip, f"sid{i}", sentence, "", "2", "0", "", "", "", "", "en", ""]))
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path


def make_cv_release(root: Path, langs: tuple[str, ...] = ("en",)) -> Path:
    """``root/cv-corpus-*/<lang>/`` with clips/*.mp3 (wav if this libsndfile cannot write mp3) and TSVs."""
    for lang in langs:
        lang_dir = root / CV_RELEASE / lang
        for seed, (_, clip, _) in enumerate(r for rows in CV_ROWS.values() for r in rows):
            fmt = "MP3" if MP3 else "WAV"
            write_audio(lang_dir / "clips" / clip, 0.3, SR, seed=seed, format=fmt)
        for name, rows in CV_ROWS.items():
            _tsv(lang_dir / name, rows)
        _tsv(lang_dir / "validated.tsv", [r for rows in CV_ROWS.values() for r in rows])
    return root / CV_RELEASE / langs[0]


def _tar(src: Path, tarball: Path) -> Path:
    with tarfile.open(tarball, "w:gz") as tf:
        tf.add(src, arcname=src.name)
    return tarball


# --------------------------------------------------------------------------- Common Voice


def test_commonvoice_in_place(tmp_path):
    lang_dir = make_cv_release(tmp_path / "data")
    items = fetch_commonvoice(CommonVoiceConfig(str(lang_dir)), tmp_path / "out", progress=False)
    assert [(it.split, it.utt_id, it.speaker) for it in items] == [
        ("train", "common_voice_en_1", "spk_a"),
        ("train", "common_voice_en_2", "spk_b"),
        ("dev", "common_voice_en_3", "spk_c"),
        ("test", "common_voice_en_4", "spk_a"),
    ]
    assert items[0].text == 'He said "hello" to me.' and items[2].text == '"Quoted" start'
    assert all(Path(it.audio).is_absolute() and it.offset == 0.0 and it.duration is None for it in items)
    assert items[0].audio == str(lang_dir / "clips" / "common_voice_en_1.mp3")
    info = sf.info(items[0].audio)  # the clip really decodes
    assert info.samplerate == SR and info.frames > 0


def test_commonvoice_release_root_and_split_mapping(tmp_path):
    make_cv_release(tmp_path)
    cfg = CommonVoiceConfig(str(tmp_path / CV_RELEASE), splits={"train": "validated.tsv", "test": "test.tsv"})
    items = fetch_commonvoice(cfg, tmp_path / "out", progress=False)
    assert [it.split for it in items] == ["train"] * 4 + ["test"]
    # the folder above the release root works too (two levels down)
    assert fetch_commonvoice(cfg.__class__(str(tmp_path), cfg.splits), tmp_path / "out", progress=False) == items


def test_commonvoice_two_languages_is_ambiguous(tmp_path):
    make_cv_release(tmp_path, langs=("en", "de"))
    with pytest.raises(ValueError, match="2 Common Voice language folders"):
        fetch_commonvoice(CommonVoiceConfig(str(tmp_path / CV_RELEASE)), tmp_path / "out", progress=False)


def test_commonvoice_tarball(tmp_path):
    make_cv_release(tmp_path / "src")
    tarball = _tar(tmp_path / "src" / CV_RELEASE, tmp_path / "cv.tar.gz")
    out = tmp_path / "out"
    items = fetch_commonvoice(CommonVoiceConfig(str(tarball)), out, progress=False)
    assert len(items) == 4
    assert items[0].audio == f"extracted/{CV_RELEASE}/en/clips/common_voice_en_1.mp3"  # relative to out_dir
    assert all(it.resolve_audio(out).is_file() for it in items)
    # a re-run reuses the extraction; a changed archive is refused, not mixed in
    assert fetch_commonvoice(CommonVoiceConfig(str(tarball)), out, progress=False) == items
    os.utime(tarball, ns=(1, 1))
    with pytest.raises(FileExistsError, match="delete"):
        fetch_commonvoice(CommonVoiceConfig(str(tarball)), out, progress=False)


def test_commonvoice_bad_archives(tmp_path):
    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../escape.txt")
        info.size = 0
        tf.addfile(info)
    with pytest.raises(UnsafeArchiveError):
        fetch_commonvoice(CommonVoiceConfig(str(evil)), tmp_path / "out1", progress=False)
    assert not (tmp_path / "escape.txt").exists()
    junk = tmp_path / "notatar.tar.gz"
    junk.write_bytes(b"not a tarball")
    with pytest.raises(ArchiveError):
        fetch_commonvoice(CommonVoiceConfig(str(junk)), tmp_path / "out2", progress=False)


def test_commonvoice_bad_inputs(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"nope.*CommonVoiceConfig\.path"):
        fetch_commonvoice(CommonVoiceConfig(str(tmp_path / "nope")), out, progress=False)
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no Common Voice language folder"):
        fetch_commonvoice(CommonVoiceConfig(str(tmp_path / "empty")), out, progress=False)

    lang_dir = make_cv_release(tmp_path / "data")
    with pytest.raises(FileNotFoundError, match=r"other\.tsv.*splits\['dev'\]"):
        fetch_commonvoice(CommonVoiceConfig(str(lang_dir), {"dev": "other.tsv"}), out, progress=False)

    _tsv(lang_dir / "train.tsv", [("spk_a", "a.mp3", "fine"), ("", "b.mp3", "no speaker")])
    with pytest.raises(ValueError, match=r"train\.tsv:3: missing value for column 'client_id'"):
        fetch_commonvoice(CommonVoiceConfig(str(lang_dir), {"train": "train.tsv"}), out, progress=False)
    _tsv(lang_dir / "train.tsv", [("spk_a", "a.mp3", "x")], header=CV_HEADER.replace("sentence ", "text "))
    with pytest.raises(ValueError, match=r"train\.tsv:1: header lacks column\(s\) \['sentence'\]"):
        fetch_commonvoice(CommonVoiceConfig(str(lang_dir), {"train": "train.tsv"}), out, progress=False)


def test_configs_round_trip_and_reject_unknown_keys():
    for cfg in (
        CommonVoiceConfig("/data/cv", {"train": "validated.tsv"}),
        TedliumConfig(Path("/data/ted"), release=1),
        ManifestConfig({"train": "train.jsonl"}),
    ):
        d = cfg.to_dict()
        json.dumps(d)  # plain values only (a Path becomes str)
        assert type(cfg).from_dict(d) == cfg
    with pytest.raises(ValueError, match=r"CommonVoiceConfig: unknown key\(s\) \['pth'\]"):
        CommonVoiceConfig.from_dict({"pth": "/x"})
    with pytest.raises(ValueError, match=r"missing required key\(s\) \['path'\]"):
        TedliumConfig.from_dict({"release": 3})
    with pytest.raises(ValueError, match="release must be one of"):
        TedliumConfig("/x", release=4)
    with pytest.raises(ValueError, match="at least one split"):
        ManifestConfig.from_dict({"splits": {}})
    with pytest.raises(ValueError, match=r"download\.commonvoice: .*unknown key\(s\) \['spilts'\]"):
        fetch_source("commonvoice", {"path": "/x", "spilts": {}}, Path("/nonexistent"))


# --------------------------------------------------------------------------- TED-LIUM

# Times chosen so that int(t * 100) truncates wrongly (0.29 * 100 = 28.999...).
TED_STM = {
    "train": {
        "AlGore_2009": """;; CATEGORY "0" "" ""
;; LABEL "o" "Overall" "Overall results"
AlGore_2009 1 inter_segment_gap 0.00 0.29 <o,,unknown> ignore_time_segment_in_scoring
AlGore_2009 1 AlGore_2009 0.29 1.13 <o,f0,male> {NOISE} it 's the(2) <unk> truth do n't
AlGore_2009 1 AlGore_2009 1.13 2.07 <NA> {SMACK} <unk> 's <sil> <unk> (AlGore_2009-1.13-2.07)
AlGore_2009 1 AlGore_2009 2.07 2.07 <o,f0,male> zero length
""",
        "BillGates_2010": "BillGates_2010 1 BillGates_2010 0.50 1.50 <o,f0,male> {BREATH} energy and climate(2)\n",
    },
    "dev": {"JaneDoe_2011": "JaneDoe_2011 1 JaneDoe_2011 0.10 0.90 <F0_F> hello world\n"},
    "test": {"JohnRoe_2012": "JohnRoe_2012 1 JohnRoe_2012 0.00 1.00 <o,f0,male> we 're here\n"},
}


def make_tedlium(root: Path, release: int = 3) -> Path:
    """A release folder under ``root`` with SPHERE talks and STM files; returns the release folder."""
    rel = root / {1: "TEDLIUM_release1", 3: "TEDLIUM_release-3"}[release]
    base = rel / "legacy" if release == 3 else rel
    for seed, (split, talks) in enumerate(TED_STM.items()):
        for talk, stm in talks.items():
            write_audio(base / split / "sph" / f"{talk}.sph", 2.5, SR, seed=seed, format="NIST", subtype="PCM_16")
            (base / split / "stm").mkdir(parents=True, exist_ok=True)
            (base / split / "stm" / f"{talk}.stm").write_text(stm, encoding="utf-8")
    return rel


def test_clean_transcript_rules():
    assert clean_transcript("{NOISE} it 's the(2) <unk> truth do n't") == ("it's the truth don't", 1)
    assert clean_transcript("{SMACK} <unk> 's <sil> <unk> (AlGore_2009-1.13-2.07)") == ("", 2)
    assert clean_transcript("'s at start (2) we 're the '90s") == ("'s at start we're the '90s", 0)


def test_read_stm_label_is_optional(tmp_path):
    stm = tmp_path / "t.stm"
    stm.write_text(";; comment\n\nt 1 s 0 1 <F0_M> hi there\nt 1 s 1 2 <unk> hi\nt 1 s 2 3\n", encoding="utf-8")
    segs = list(read_stm(stm))
    assert [(s.label, s.transcript, s.where) for s in segs] == [
        ("<F0_M>", "hi there", f"{stm}:3"),
        ("", "<unk> hi", f"{stm}:4"),
        ("", "", f"{stm}:5"),
    ]


def test_tedlium_release3(tmp_path, caplog):
    rel = make_tedlium(tmp_path, release=3)
    with caplog.at_level(logging.INFO, logger="asr_core.data.sources.tedlium"):
        items = fetch_tedlium(TedliumConfig(str(tmp_path)), tmp_path / "out", progress=False)
    train = [it for it in items if it.split == "train"]
    assert [it.utt_id for it in train] == [
        "AlGore_2009-0000029-0000113",
        "AlGore_2009-0000113-0000207",
        "BillGates_2010-0000050-0000150",
    ]
    assert [it.text for it in train] == ["it's the truth don't", "", "energy and climate"]
    assert train[0].speaker == "AlGore_2009" and train[0].offset == 0.29 and train[0].duration == 0.84
    assert train[0].audio == str(rel / "legacy" / "train" / "sph" / "AlGore_2009.sph")
    others = [(it.split, it.text) for it in items if it.split != "train"]
    assert others == [("dev", "hello world"), ("test", "we're here")]
    assert "unk_removed=3" in caplog.text and "ignored=1" in caplog.text and "bad_times=1" in caplog.text
    # the segment really reads from the SPHERE file
    it = train[0]
    seg, sr = sf.read(it.audio, start=round(it.offset * SR), frames=round(it.duration * SR))
    assert sr == SR and len(seg) == round(0.84 * SR)
    # the release folder itself is accepted too
    assert fetch_tedlium(TedliumConfig(str(rel)), tmp_path / "out", progress=False) == items


def test_tedlium_release1_split_mapping_and_tarball(tmp_path):
    rel = make_tedlium(tmp_path / "src", release=1)
    cfg = TedliumConfig(str(rel), release=1, splits={"train": "train", "valid": "dev"})
    items = fetch_tedlium(cfg, tmp_path / "out", progress=False)
    assert {it.split for it in items} == {"train", "valid"} and len(items) == 4
    tarball = _tar(rel, tmp_path / "TEDLIUM_release1.tar.gz")
    out = tmp_path / "out2"
    from_tar = fetch_tedlium(TedliumConfig(str(tarball), release=1, splits=cfg.splits), out, progress=False)
    assert [it.utt_id for it in from_tar] == [it.utt_id for it in items]
    assert from_tar[0].audio == "extracted/TEDLIUM_release1/train/sph/AlGore_2009.sph"
    assert from_tar[0].resolve_audio(out).is_file()


def test_tedlium_bad_inputs(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"TedliumConfig\.path"):
        fetch_tedlium(TedliumConfig(str(tmp_path / "missing")), out, progress=False)
    rel = make_tedlium(tmp_path, release=1)
    with pytest.raises(FileNotFoundError, match="no TED-LIUM release 3 layout"):
        fetch_tedlium(TedliumConfig(str(tmp_path)), out, progress=False)  # release defaults to 3
    with pytest.raises(FileNotFoundError, match=r"splits\['dev'\]"):
        fetch_tedlium(TedliumConfig(str(rel), 1, {"train": "train", "dev": "development"}), out, progress=False)
    (rel / "dev" / "sph" / "JaneDoe_2011.sph").unlink()
    with pytest.raises(FileNotFoundError, match=r"JaneDoe_2011\.sph: audio for .*JaneDoe_2011\.stm:1"):
        fetch_tedlium(TedliumConfig(str(rel), 1, {"dev": "dev"}), out, progress=False)
    (rel / "test" / "stm" / "JohnRoe_2012.stm").write_text(
        "JohnRoe_2012 1 spk 0.0 1.0 <o,f0,male> fine\nJohnRoe_2012 1 spk zero 1.0 x\n"
    )
    with pytest.raises(ValueError, match=r"JohnRoe_2012\.stm:2: start/end must be seconds"):
        fetch_tedlium(TedliumConfig(str(rel), 1, {"test": "test"}), out, progress=False)


# --------------------------------------------------------------------------- manifests


def test_manifest_jsonl_and_tsv(tmp_path):
    lists = tmp_path / "lists"
    a = write_audio(lists / "audio" / "a.wav", 0.2, SR)
    b = write_audio(tmp_path / "elsewhere" / "b.flac", 0.2, SR, seed=1)
    rows = [
        {"audio_filepath": "audio/a.wav", "text": "Hello, World", "duration": 0.2, "lang": "en"},
        {"audio_filepath": str(b), "text": "", "offset": 0.05, "duration": 0.1, "utt_id": "bee", "speaker": "s1"},
    ]
    (lists / "train.jsonl").write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n", encoding="utf-8")
    (lists / "dev.tsv").write_text(f"path\ttext\naudio/a.wav\tdev text\n{b}\tB\ttabbed\n", encoding="utf-8")
    (lists / "test.txt").write_text("audio/a.wav\tno header here\n", encoding="utf-8")
    files = {"train": "train.jsonl", "dev": "dev.tsv", "test": "test.txt"}
    cfg = ManifestConfig({split: str(lists / name) for split, name in files.items()})
    items = fetch_manifest(cfg, tmp_path / "out", progress=False)
    assert items == [
        SourceItem("a", "train", str(a), "Hello, World", duration=0.2),
        SourceItem("bee", "train", str(b), "", speaker="s1", offset=0.05, duration=0.1),
        SourceItem("a", "dev", str(a), "dev text"),
        SourceItem("b", "dev", str(b), "B\ttabbed"),
        SourceItem("a", "test", str(a), "no header here"),
    ]
    # the registry reaches it too
    assert fetch_source("manifest", cfg.to_dict(), tmp_path / "out", progress=False) == items


def test_manifest_errors(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(FileNotFoundError, match=r"missing\.jsonl.*splits\['train'\]"):
        fetch_manifest(ManifestConfig({"train": str(tmp_path / "missing.jsonl")}), out, progress=False)
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"audio_filepath": "a.wav", "text": "ok"}\n{"audio_filepath": "b.wav"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:2: missing required field 'text'"):
        fetch_manifest(ManifestConfig({"train": str(bad)}), out, progress=False)
    bad.write_text('{"audio_filepath": "a.wav", "text": "ok", "duration": "long"}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: field 'duration'"):
        fetch_manifest(ManifestConfig({"train": str(bad)}), out, progress=False)
    bad.write_text('[{"audio_filepath": "a.wav", "text": "ok"}]\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.jsonl:1: expected a JSON object"):
        fetch_manifest(ManifestConfig({"train": str(bad)}), out, progress=False)
    tsv = tmp_path / "bad.tsv"
    tsv.write_text("a.wav\tok\nb.wav has no tab\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad\.tsv:2: missing field 'text'"):
        fetch_manifest(ManifestConfig({"train": str(tsv)}), out, progress=False)
    csv_list = tmp_path / "list.csv"
    csv_list.write_text("a.wav,ok\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"unknown manifest suffix '\.csv'"):
        fetch_manifest(ManifestConfig({"train": str(csv_list)}), out, progress=False)
