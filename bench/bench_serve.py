"""Load test of ``python -m tasks.serve``: N concurrent streams at real-time pace, and N concurrent uploads.

    python bench/bench_serve.py --model models/rnnt_small/model.pt --streams 1 2 4 8 16 32
    python bench/bench_serve.py --model exports/rnnt_small --audio clip.wav --out bench/results/serve.json

The server runs as its own process on 127.0.0.1 (its CPU time is read from /proc through psutil); the
clients run here, in one asyncio loop. Per N:

- WebSocket: N clients each stream the clip in ``--chunk-ms`` pieces at real-time pace (starts spread
  over one piece), then end the stream. A partial's latency is the time from sending the piece whose
  audio produced it (the first piece whose end reaches the partial's ``audio_seconds``) to receiving
  it; the final's latency is the time from sending ``end`` to receiving the final.
- HTTP: N clients each upload the clip ``--uploads`` times back to back; latency per request.

For each: p50/p99 latency, the server's CPU use (100% = one core busy), throughput (audio seconds
transcribed per wall second), and the largest N whose p99 stays under ``--p99-ms``. Writes JSON
(``--out``) and prints markdown tables.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
MAX_CLIENTS = 256  # the list of N is bounded: each client is a socket and a task here


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 1) if values else None


def start_server(args, port: int) -> subprocess.Popen:
    model = str(Path(args.model).resolve())
    cmd = [sys.executable, "-m", "tasks.serve", "--model", model, "--port", str(port), "--log-level", "warning"]
    cmd += ["--max-streams", str(max(args.streams + args.clients)), "--workers", str(args.workers)]
    cmd += ["--backend", args.backend] if args.backend else []
    cmd += ["--batch-streams", str(args.batch_streams), "--threads", str(args.threads)]
    proc = subprocess.Popen(cmd, cwd=REPO)
    import httpx

    deadline = time.monotonic() + args.start_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                return proc
        except httpx.HTTPError:
            time.sleep(0.2)
    proc.kill()
    raise RuntimeError(f"the server did not answer within {args.start_timeout} s")


async def one_stream(url: str, pcm: np.ndarray, rate: int, chunk: int, delay: float) -> dict:
    from websockets.asyncio.client import connect

    await asyncio.sleep(delay)
    sent_at, ends, latencies = [], [], []
    async with connect(url) as ws:
        await ws.send(json.dumps({"format": "pcm16", "sample_rate": rate}))
        assert json.loads(await ws.recv())["type"] == "ready"

        async def receive() -> float:
            async for raw in ws:
                msg = json.loads(raw)
                now = time.perf_counter()
                if msg["type"] == "partial":
                    i = int(np.searchsorted(ends, msg["audio_seconds"] - 1e-6))
                    latencies.append(1000 * (now - sent_at[min(i, len(sent_at) - 1)]))
                elif msg["type"] == "final":
                    return now
                elif msg["type"] == "error":
                    raise RuntimeError(f"server error: {msg}")
            raise RuntimeError("the stream closed without a final")

        reader = asyncio.create_task(receive())
        t0 = time.perf_counter()
        for k, i in enumerate(range(0, len(pcm), chunk)):
            # real-time pace: piece k is sent when its audio has ended
            await asyncio.sleep(max(0.0, t0 + (k + 1) * chunk / rate - time.perf_counter()))
            sent_at.append(time.perf_counter())
            ends.append(min(i + chunk, len(pcm)) / rate)
            await ws.send(pcm[i : i + chunk].tobytes())
        t_end = time.perf_counter()
        await ws.send(json.dumps({"type": "end"}))
        t_final = await reader
    return {"partials_ms": latencies, "final_ms": 1000 * (t_final - t_end)}


async def one_uploader(url: str, data: bytes, uploads: int) -> list[float]:
    import httpx

    out = []
    async with httpx.AsyncClient(timeout=600) as client:
        for _ in range(uploads):
            t0 = time.perf_counter()
            r = await client.post(url, content=data)
            r.raise_for_status()
            out.append(1000 * (time.perf_counter() - t0))
    return out


def measure(proc, run) -> tuple[object, float, float]:
    """(result of run(), wall seconds, server CPU %)."""
    import psutil

    server = psutil.Process(proc.pid)
    c0, t0 = sum(server.cpu_times()[:2]), time.perf_counter()
    result = run()
    wall = time.perf_counter() - t0
    return result, wall, round(100 * (sum(server.cpu_times()[:2]) - c0) / wall, 1)


def bench_streams(args, proc, base: str, pcm: np.ndarray, rate: int) -> list[dict]:
    rows, chunk = [], int(rate * args.chunk_ms / 1000)
    url = base.replace("http://", "ws://") + "/ws/transcribe"
    for n in args.streams:
        spread = [k * args.chunk_ms / 1000 / n for k in range(n)]

        async def all_streams(n=n, spread=spread):
            return await asyncio.gather(*(one_stream(url, pcm, rate, chunk, spread[k]) for k in range(n)))

        results, wall, cpu = measure(proc, lambda f=all_streams: asyncio.run(f()))
        partials = [x for r in results for x in r["partials_ms"]]
        finals = [r["final_ms"] for r in results]
        rows.append(
            {
                "clients": n,
                "p50_ms": percentile(partials, 50),
                "p99_ms": percentile(partials, 99),
                "partials": len(partials),
                "final_p50_ms": percentile(finals, 50),
                "final_p99_ms": percentile(finals, 99),
                "server_cpu_percent": cpu,
                "audio_s_per_s": round(n * len(pcm) / rate / wall, 2),
            }
        )
        print(f"bench_serve: ws {n} streams: {rows[-1]}", flush=True)
    return rows


def bench_uploads(args, proc, base: str, data: bytes, seconds: float) -> list[dict]:
    rows = []
    for n in args.clients:

        async def all_uploads(n=n):
            return await asyncio.gather(*(one_uploader(base + "/transcribe", data, args.uploads) for _ in range(n)))

        results, wall, cpu = measure(proc, lambda f=all_uploads: asyncio.run(f()))
        latencies = [x for r in results for x in r]
        rows.append(
            {
                "clients": n,
                "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99),
                "requests": len(latencies),
                "server_cpu_percent": cpu,
                "audio_s_per_s": round(len(latencies) * seconds / wall, 2),
            }
        )
        print(f"bench_serve: http {n} clients: {rows[-1]}", flush=True)
    return rows


def largest_under(rows: list[dict], bound_ms: float, key: str = "p99_ms") -> int | None:
    ok = [r["clients"] for r in rows if r[key] is not None and r[key] < bound_ms]
    return max(ok) if ok else None


def table(rows: list[dict], cols: list[str]) -> str:
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join("" if r.get(c) is None else str(r[c]) for c in cols) + " |" for r in rows]
    return "\n".join(lines)


def clip(args) -> tuple[np.ndarray, int, bytes]:
    """(PCM16 samples, rate, WAV bytes): ``--audio`` (mono mix), or a synthetic clip of ``--clip-seconds``."""
    if args.audio:
        x, rate = sf.read(args.audio, dtype="float32", always_2d=True)
        x = x.mean(axis=1)
    else:
        from asr_core.testing import make_wave

        rate = 16000
        x = np.concatenate([make_wave(1.0, rate, seed=k) for k in range(int(np.ceil(args.clip_seconds)))])
        x = x[: int(args.clip_seconds * rate)]
    pcm = np.clip(np.rint(x * 32768), -32768, 32767).astype("<i2")
    buf = io.BytesIO()
    sf.write(buf, pcm, rate, format="WAV", subtype="PCM_16")
    return pcm, rate, buf.getvalue()


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True, help="a model.pt or an export folder, as tasks.serve takes it")
    p.add_argument("--backend", help="tasks.serve --backend (default: its own choice)")
    p.add_argument("--audio", help="a clip to stream (default: a synthetic one of --clip-seconds)")
    p.add_argument("--clip-seconds", type=float, default=8.0)
    p.add_argument("--streams", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32], help="concurrent streams, each N")
    p.add_argument("--clients", type=int, nargs="+", default=[1, 2, 4, 8], help="concurrent uploaders, each N")
    p.add_argument("--uploads", type=int, default=3, help="uploads per client")
    p.add_argument("--chunk-ms", type=float, default=100.0, help="audio per WebSocket message")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="tasks.serve --workers")
    p.add_argument("--threads", type=int, default=1, help="tasks.serve --threads")
    p.add_argument("--batch-streams", type=int, default=0, help="tasks.serve --batch-streams")
    p.add_argument("--p99-ms", type=float, default=300.0, help="the latency bound of the summary")
    p.add_argument("--start-timeout", type=float, default=120.0)
    p.add_argument("--out", default="bench/results/serve.json")
    args = p.parse_args(argv)
    if max(args.streams + args.clients) > MAX_CLIENTS or min(args.streams + args.clients) < 1:
        p.error(f"--streams and --clients take 1 to {MAX_CLIENTS}")
    pcm, rate, wav = clip(args)
    port = free_port()
    proc = start_server(args, port)
    base = f"http://127.0.0.1:{port}"
    try:
        import httpx

        health = httpx.get(base + "/health", timeout=10).json()
        ws_rows = bench_streams(args, proc, base, pcm, rate)
        http_rows = bench_uploads(args, proc, base, wav, len(pcm) / rate)
    finally:
        proc.terminate()
        proc.wait(30)
    report = {
        "model": args.model,
        "kind": health["kind"],
        "backend": health["backend"],
        "clip_seconds": round(len(pcm) / rate, 3),
        "chunk_ms": args.chunk_ms,
        "workers": args.workers,
        "threads": args.threads,
        "batch_streams": args.batch_streams,
        "cpus": os.cpu_count(),
        "machine": platform.processor() or platform.machine(),
        "p99_bound_ms": args.p99_ms,
        "websocket": ws_rows,
        "websocket_max_streams_p99_under_bound": largest_under(ws_rows, args.p99_ms),
        "http": http_rows,
        "http_max_clients_p99_under_bound": largest_under(http_rows, args.p99_ms),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    cols = ["clients", "p50_ms", "p99_ms", "server_cpu_percent", "audio_s_per_s"]
    print(f"\n{health['kind']} model on {health['backend']}, {report['clip_seconds']} s clip, {args.workers} workers\n")
    print("WebSocket streams (partial latency; final p50 after end):\n")
    print(table(ws_rows, [*cols[:3], "final_p50_ms", *cols[3:]]))
    print(f"\nlargest N with p99 < {args.p99_ms:g} ms: {report['websocket_max_streams_p99_under_bound']}\n")
    print("HTTP uploads (request latency):\n")
    print(table(http_rows, cols))
    print(f"\nlargest N with p99 < {args.p99_ms:g} ms: {report['http_max_clients_p99_under_bound']}")
    print(f"\nwrote {out}")
    return report


if __name__ == "__main__":
    main()
