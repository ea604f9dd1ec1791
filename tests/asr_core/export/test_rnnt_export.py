"""Transducer export: three ONNX graphs with state + OpenVINO IR, per-graph parity, and the
streaming decoder on onnxruntime / OpenVINO giving PyTorch's transcripts (the export stage)."""

from __future__ import annotations

import json

import pytest
import soundfile as sf
import torch
import yaml

from asr_core.decoding.rnnt_greedy import greedy_decode
from asr_core.decoding.rnnt_stream import StreamingTranscriber, stream_file
from asr_core.export.rnnt_runtime import load_backend
from asr_core.io.jsonl import read_jsonl
from asr_core.models.artifact import load_model
from tests.support import noisy_model


@pytest.fixture(scope="module")
def exported(trained, tmp_path_factory):
    """The export stage on the noisy model (it emits tokens): (report, export folder, model.pt, corpus)."""
    from tasks import export

    model_path, corpus = trained
    noisy = noisy_model(model_path)
    tmp = tmp_path_factory.mktemp("rnnt_export")
    params = tmp / "export.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "export": {
                    "manifest_dir": str(corpus),
                    "split": "test",
                    "num_workers": 0,
                    "threads": 1,
                    "max_utterances": 3,
                }
            }
        )
    )
    out, report = tmp / "exports", tmp / "export.json"
    export.main(["--params", str(params), "--model", str(noisy), "--out", str(out), "--report", str(report)])
    return json.loads(report.read_text()), out, noisy, corpus


def test_export_stage_writes_three_graphs_and_passes_its_gates(exported):
    report, out, _, _ = exported
    assert report["passed"] and report["kind"] == "transducer" and report["utterances"] == 3
    for name in ("onnxruntime_fp32", "openvino_fp32"):
        b = report["backends"][name]
        assert b["transcripts_differ"] == 0 and b["max_abs_diff"] <= 1e-3, b
        assert {"encoder_max_abs_diff", "predictor_max_abs_diff", "joint_max_abs_diff"} <= set(b)
    for g in ("encoder", "predictor", "joint"):
        assert (out / f"{g}.onnx").is_file() and (out / "openvino" / g / "model.xml").is_file()
    assert (out / "rnnt_export.json").is_file() and (out / "export.json").is_file()
    int8 = report["backends"]["openvino_int8"]  # int8 weights: gated on the streamed WER
    assert int8["gate"] == "wer" and int8["passed"] and int8["utterances"] == 3, int8
    assert abs(int8["wer"] - int8["wer_torch"]) <= report["wer_tolerance"]
    assert (out / "openvino_int8" / "encoder" / "model.xml").is_file()
    assert "openvino_int8" in json.loads((out / "export.json").read_text())["variants"]
    for name in ("openvino_bf16", "openvino_fp16w"):
        assert "CTC models only" in report["backends"][name]["skipped"]


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_streaming_on_exported_graphs_equals_pytorch(exported, backend):
    _, out, noisy, corpus = exported
    model, features, vocab = load_model(noisy)
    be = load_backend(out, backend, threads=1)
    st = StreamingTranscriber(be, features, vocab, chunk_frames=4)
    nonempty = 0
    for row in read_jsonl(corpus / "dev.jsonl"):
        wave = torch.from_numpy(sf.read(corpus / row["audio_filepath"], dtype="float32")[0])
        feats, lens = features(wave[None], torch.tensor([wave.numel()]))
        expected = vocab.decode(greedy_decode(model, feats, lens)[0])
        assert list(stream_file(st, wave, 1234))[-1].text == expected
        nonempty += bool(expected)
    assert nonempty >= 2


def test_transcribe_stream_on_onnxruntime(exported, capsys):
    from tasks import transcribe

    _, out, noisy, corpus = exported
    row = next(iter(read_jsonl(corpus / "test.jsonl")))
    audio = str(corpus / row["audio_filepath"])
    torch_text = transcribe.main(["--model", str(noisy), audio])
    ort_text = transcribe.main(
        ["--model", str(noisy), "--backend", "onnxruntime", "--exports", str(out), "--stream", audio]
    )
    assert ort_text == torch_text and torch_text[0]
    assert "partial\t" in capsys.readouterr().out


def test_benchmark_stage_streams_each_backend(exported, tmp_path):
    from tasks import benchmark

    _, out, noisy, corpus = exported
    params = tmp_path / "benchmark.yaml"
    params.write_text(
        yaml.safe_dump(
            {
                "benchmark": {
                    "threads": 1,
                    "wer": {"manifest_dir": str(corpus), "split": "dev"},
                    "transducer": {
                        "backends": ["torch", "onnxruntime", "openvino"],
                        "max_utterances": 3,
                        "chunk_frames": 4,
                        "streams": [1, 2],
                    },
                }
            }
        )
    )
    report = benchmark.main(
        [
            "--params",
            str(params),
            "--model",
            str(noisy),
            "--exports",
            str(out),
            "--out",
            str(tmp_path / "bench"),
            "--report",
            str(tmp_path / "benchmark.json"),
        ]
    )
    backends = ("torch", "onnxruntime", "openvino")
    assert set(report["cells"]) == {f"cpu/{b}/{s}" for b in backends for s in ("stream", "stream_x2")}
    wers = set()
    for cell in report["cells"].values():
        assert cell["utterances"] == 3 and cell["encoder_calls"] > 0 and cell["joint_calls"] >= cell["encoder_calls"]
        assert cell["audio_s_per_s"] > 0 and cell["chunk_p99_ms"] >= cell["chunk_p50_ms"] > 0
        assert cell["encoder_ms"] > 0 and cell["predictor_ms"] > 0 and cell["joint_ms"] > 0
        wers.add(cell["wer"])
    # the same transcripts on every backend, one stream at a time or two batched together
    assert len(wers) == 1 and set(report["wer"]) == {"cpu/torch", "cpu/onnxruntime", "cpu/openvino"}
    assert report["cells"]["cpu/openvino/stream_x2"]["streams"] == 2
    md = (tmp_path / "bench" / "report.md").read_text()
    assert "| onnxruntime | 1 |" in md and "| onnxruntime | 2 |" in md


def test_openvino_bf16_backend_streams_in_reduced_precision(exported):
    """``openvino_bf16``: the bf16 inference hint (reduced precision: transcripts may differ from fp32)."""
    import openvino as ov

    _, out, noisy, corpus = exported
    if "BF16" not in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
        with pytest.raises(RuntimeError, match="no bf16"):
            load_backend(out, "openvino_bf16", threads=1)
        return
    _, features, vocab = load_model(noisy)
    be = load_backend(out, "openvino_bf16", threads=1)
    assert be.name == "openvino_bf16"
    st = StreamingTranscriber(be, features, vocab, chunk_frames=4)
    texts = []
    for row in read_jsonl(corpus / "dev.jsonl"):
        wave = torch.from_numpy(sf.read(corpus / row["audio_filepath"], dtype="float32")[0])
        texts.append(list(stream_file(st, wave, 1234))[-1].text)
    assert len(texts) >= 2 and all(isinstance(t, str) for t in texts)
    with pytest.raises(ValueError, match="openvino_int8"):
        load_backend(out, "openvino_int3")
