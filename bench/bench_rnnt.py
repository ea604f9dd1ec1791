"""Streaming transducer speed (the edgedict CPU table): per backend WER, encoder / prediction /
joint ms per call, audio s/s and chunk latency p50/p99, streaming with the default chunk.

    # the E6D2 shape (50.8 M, random weights: speed only) on 50 test clips, 2 threads:
    python bench/bench_rnnt.py --preset rnnt:e6d2 --out bench/results/rnnt_e6d2.json
    # 8 streams at once, the encoder batched across them (a server's load), beside one alone:
    python bench/bench_rnnt.py --preset rnnt:e6d2 --backends openvino_int8 --streams 1,8
    # a trained model and its exports (WER too):
    python bench/bench_rnnt.py --model models/rnnt_small/model.pt --exports exports/rnnt_small \
        --out bench/results/rnnt_small.json
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
import tasks.threads  # noqa: F401  (before torch: GOMP_SPINCOUNT)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--preset", help="rnnt:<preset> (tiny | e4d1 | e6d2), random weights")
    g.add_argument("--model", help="a transducer model.pt")
    p.add_argument("--exports", help="its export folder (with --model)")
    p.add_argument("--manifest-dir", default="data/prepared")
    p.add_argument("--split", default="test")
    p.add_argument("--max-utterances", type=int, default=50)
    p.add_argument("--backends", default="torch,onnxruntime,openvino")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--chunk-frames", type=int, default=10)
    p.add_argument("--streams", default="1", help="streams at once, comma-separated (e.g. 1,4,8): the encoder batched")
    p.add_argument("--out", help="write the report JSON here")
    args = p.parse_args(argv)
    from asr_core.objectives.transducer.benchmark import benchmark

    section = {
        "threads": args.threads,
        "wer": {"manifest_dir": args.manifest_dir, "split": args.split},
        "transducer": {
            "backends": args.backends.split(","),
            "chunk_frames": args.chunk_frames,
            "max_utterances": args.max_utterances,
            "streams": [int(n) for n in args.streams.split(",")],
        },
    }
    with tempfile.TemporaryDirectory() as tmp:
        report = benchmark(section, model_path=args.model, exports=args.exports, out_dir=tmp, preset=args.preset)
        print((Path(tmp) / "report.md").read_text())
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
