"""Serving an export folder: the fastest backend that passed the export's parity gate serves, a failed or
ungated one never does, OpenVINO decodes concurrent streams apart, and a CTC export decodes as
``tasks.transcribe --backend`` does."""

from __future__ import annotations

import asyncio
import json
import shutil

import pytest

from tasks import serve
from tests.tasks.serve_client import final_of, health, run, stream_wav


@pytest.fixture(scope="module")
def exported(serve_assets, tmp_path_factory):
    """The export stage's folder for the tiny transducer (three graphs, parity in export.json)."""
    from tasks import export

    out = tmp_path_factory.mktemp("serve_export") / "rnnt"
    section = {"manifest_dir": str(serve_assets.corpus), "split": "dev", "num_workers": 0, "threads": 1}
    assert export.run(section, serve_assets.transducer, out)["passed"]
    return out


def test_serve_export_folder_runs_the_fastest_gated_backend(exported, serve_assets, offline_texts, tmp_path):
    args = serve.parser().parse_args(["--model", str(exported), "--workers", "2"])
    lines: list[str] = []
    service = serve.build_service(args, log_fn=lines.append)
    timed = {b: s for b, s in service.probe.items() if isinstance(s, float)}
    assert set(timed) == {"onnxruntime", "openvino"} and "not gated" in service.probe["openvino-bf16"]
    assert "only when named" in service.probe["openvino-int8"]  # int8 weights: WER-gated, never picked unasked
    assert service.model.backend_name == min(timed, key=timed.get)
    with serve.running(serve.create_app(service), service.limits) as url:
        messages, _ = run(stream_wav(url, serve_assets.utterances[0]))
        assert final_of(messages)["text"] == offline_texts(serve_assets.transducer, serve_assets.utterances[0])
        assert health(url)["backend"] == service.model.backend_name
    service.close()

    # a backend whose gate failed is never chosen, nor taken when named
    edited = tmp_path / "rnnt"
    shutil.copytree(exported, edited)
    meta = json.loads((edited / "export.json").read_text())
    meta["parity"]["onnxruntime_fp32"]["passed"] = False
    (edited / "export.json").write_text(json.dumps(meta))
    service = serve.build_service(serve.parser().parse_args(["--model", str(edited)]), log_fn=lines.append)
    assert service.model.backend_name == "openvino"
    # OpenVINO's infer requests are per decode thread: concurrent streams keep their own results
    wavs = serve_assets.utterances[:3]
    with serve.running(serve.create_app(service), service.limits) as url:

        async def together():
            return await asyncio.gather(*(stream_wav(url, w, chunk_seconds=0.05) for w in wavs))

        for wav, (messages, _) in zip(wavs, run(together())):
            assert final_of(messages)["text"] == offline_texts(serve_assets.transducer, wav)
    service.close()
    for backend, why in (("onnxruntime", "failed the export's parity gate"), ("openvino-bf16", "was not gated")):
        with pytest.raises(ValueError, match=why):
            serve.build_service(serve.parser().parse_args(["--model", str(edited), "--backend", backend]))


def test_serve_ctc_export_folder_decodes_as_transcribe_does(serve_assets, tmp_path):
    from tasks import export, transcribe

    out = tmp_path / "ctc"
    section = {"manifest_dir": str(serve_assets.corpus), "split": "dev", "num_workers": 0, "threads": 1}
    assert export.run({**section, "reduced_precision": [], "waveform": False}, serve_assets.ctc, out)["passed"]
    service = serve.build_service(serve.parser().parse_args(["--model", str(out)]), log_fn=lambda line: None)
    backend = service.model.backend_name
    assert backend in ("onnxruntime", "openvino") and "no parity result" in service.probe["openvino-bf16"]
    with serve.running(serve.create_app(service), service.limits) as url:
        for wav in serve_assets.utterances[:2]:
            expected = transcribe.main(
                ["--model", str(serve_assets.ctc), "--backend", backend, "--exports", str(out), str(wav)]
            )
            assert final_of(run(stream_wav(url, wav))[0])["text"] == expected[0]
    service.close()


def test_serve_int8_backend_when_named_streams_as_transcribe_on_int8(exported, serve_assets):
    from tasks import transcribe

    args = serve.parser().parse_args(["--model", str(exported), "--backend", "openvino-int8"])
    service = serve.build_service(args, log_fn=lambda line: None)
    assert service.model.backend_name == "openvino-int8"
    with serve.running(serve.create_app(service), service.limits) as url:
        for wav in serve_assets.utterances[:2]:
            expected = transcribe.main(
                [
                    "--model",
                    str(serve_assets.transducer),
                    "--backend",
                    "openvino",
                    "--precision",
                    "int8",
                    "--exports",
                    str(exported),
                    str(wav),
                ]
            )
            assert final_of(run(stream_wav(url, wav))[0])["text"] == expected[0]
    service.close()
