"""Service parity on a whole split: every utterance streamed through ``tasks.serve`` against the offline
``python -m tasks.transcribe`` transcript of the same model and backend.

    python bench/serve_parity.py --model models/rnnt_small/model.pt --split test
    python bench/serve_parity.py --model exports/rnnt_small --backend openvino --split test
    python bench/serve_parity.py --model models:/asr-rnnt@champion --split test

The service runs in this process on 127.0.0.1 (``tasks.serve.running``); each utterance of
``<manifest-dir>/<split>.jsonl`` is streamed as PCM16 in ``--chunk-ms`` pieces (several streams at
once, ``--concurrency``) and its final hypothesis compared, as a string, with the offline transcript.
For a CTC model the service decodes the whole utterance at end of stream, which is what is compared.
Prints the count of differences (and the first few) and writes JSON (``--out``); exits 1 on any.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import sys
import time
from pathlib import Path

import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


async def _stream(url: str, path: str, chunk_seconds: float) -> str:
    from websockets.asyncio.client import connect

    x, rate = sf.read(path, dtype="int16")
    async with connect(url.replace("http://", "ws://") + "/ws/transcribe", max_size=None) as ws:
        await ws.send(json.dumps({"format": "pcm16", "sample_rate": rate}))
        n = max(1, int(rate * chunk_seconds))
        for i in range(0, len(x), n):
            await ws.send(x[i : i + n].astype("<i2").tobytes())
        await ws.send(json.dumps({"type": "end"}))
        async for raw in ws:
            m = json.loads(raw)
            if m.get("type") == "final":
                return m["text"]
            if m.get("type") == "error":
                raise RuntimeError(f"{path}: {m}")
    raise RuntimeError(f"{path}: the stream closed without a final hypothesis")


async def _stream_all(url: str, paths: list[str], chunk_seconds: float, concurrency: int) -> list[str]:
    gate = asyncio.Semaphore(concurrency)

    async def one(p: str) -> str:
        async with gate:
            return await _stream(url, p, chunk_seconds)

    return await asyncio.gather(*(one(p) for p in paths))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model.pt, or an export folder (with --backend)")
    p.add_argument("--backend", help="tasks.serve --backend; the offline transcript uses the same one")
    p.add_argument("--manifest-dir", default="data/prepared")
    p.add_argument("--split", default="test")
    p.add_argument("--limit", type=int, default=None, help="the first N utterances only")
    p.add_argument("--chunk-ms", type=float, default=100.0)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--out", default="bench/results/serve_parity.json")
    args = p.parse_args(argv)

    from asr_core.io.jsonl import read_jsonl
    from tasks import serve, transcribe

    manifest = Path(args.manifest_dir) / f"{args.split}.jsonl"
    rows = list(read_jsonl(manifest))[: args.limit]
    paths = [
        str(
            (manifest.parent / r["audio_filepath"])
            if not Path(r["audio_filepath"]).is_absolute()
            else r["audio_filepath"]
        )
        for r in rows
    ]
    serve_args = ["--model", args.model] + (["--backend", args.backend] if args.backend else [])
    serve_args_ns = serve.parser().parse_args(serve_args)
    service = serve.build_service(serve_args_ns)
    backend, source = service.model.backend_name, service.source  # a registry version: where it was downloaded
    t0 = time.perf_counter()
    with serve.running(serve.create_app(service), service.limits) as url:
        streamed = asyncio.run(_stream_all(url, paths, args.chunk_ms / 1000, args.concurrency))
    t_stream = time.perf_counter() - t0
    service.close()

    offline_args = ["--model", str(source.model_path)]
    if backend != "torch":  # the same graphs: onnxruntime | openvino | openvino-bf16 | openvino-int8
        offline_args += ["--backend", backend.split("-")[0], "--exports", str(source.export_dir)]
        if "-" in backend:
            offline_args += ["--precision", backend.split("-")[1]]
    t0 = time.perf_counter()
    offline = transcribe.main(offline_args + paths)
    t_offline = time.perf_counter() - t0
    diffs = [
        {"utt": r.get("utt_id", p), "streamed": s, "offline": o}
        for r, p, s, o in zip(rows, paths, streamed, offline)
        if s != o
    ]
    report = {
        "model": args.model,
        "backend": backend,
        "split": args.split,
        "utterances": len(rows),
        "differences": len(diffs),
        "first_differences": diffs[:10],
        "chunk_ms": args.chunk_ms,
        "stream_seconds": round(t_stream, 1),
        "offline_seconds": round(t_offline, 1),
        "machine": platform.processor() or platform.machine(),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"{args.split}: {len(rows)} utterances streamed on {backend}, {len(diffs)} differ from the offline transcript"
    )
    for d in diffs[:5]:
        print(f"  {d['utt']}: streamed {d['streamed']!r} offline {d['offline']!r}")
    return 1 if diffs else 0


if __name__ == "__main__":
    sys.exit(main())
