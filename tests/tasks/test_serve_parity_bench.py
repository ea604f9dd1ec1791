"""``bench/serve_parity.py``: a split streamed through the service against ``tasks.transcribe``, on a tiny
transducer: the command RESULTS.md gives for the service's parity table."""

from __future__ import annotations

import json

from bench import serve_parity  # the repository root is on sys.path (bench/ is a namespace package)


def test_serve_parity_bench_streams_a_split_and_finds_no_difference(serve_assets, tmp_path):
    manifests = tmp_path / "manifests"
    manifests.mkdir()
    rows = [{"utt_id": p.stem, "audio_filepath": str(p), "text": "x"} for p in serve_assets.utterances]
    (manifests / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "parity.json"
    args = ["--model", str(serve_assets.transducer), "--manifest-dir", str(manifests), "--split", "test"]
    rc = serve_parity.main([*args, "--concurrency", "2", "--out", str(out)])
    report = json.loads(out.read_text())
    assert rc == 0, report["first_differences"]
    assert report["utterances"] == len(rows) and report["differences"] == 0
    assert report["backend"] == "torch" and report["model"] == str(serve_assets.transducer)
