"""Streaming transcription service: WebSocket streams, file uploads and a microphone page.

    python -m tasks.serve --model models/rnnt_small/model.pt              # PyTorch
    python -m tasks.serve --model exports/rnnt_small                      # fastest backend that passed parity
    python -m tasks.serve --model exports/quartznet_tiny --backend openvino --port 8000
    python -m tasks.serve --model models:/asr-rnnt@champion             # the registry's champion (export folder)

    WS   /ws/transcribe   {"format": "pcm16" | "float32", "sample_rate": 16000}, binary audio, {"type": "end"}
                          -> {"type": "partial", "text"} ... {"type": "final", "text", "words"}
    POST /transcribe      an audio file (raw body or multipart field "file") -> {"text", "words", ...}
    GET  /health          model kind, backend, streams open
    GET  /                the microphone page (serve_page.html)

Binds 127.0.0.1 unless ``--host`` says otherwise. Model work runs on a thread pool (``--workers``, one
per core by default), so streams interleave; see docs/serving.md for the protocol, limits and errors.
"""

from __future__ import annotations

import tasks.offline
import tasks.threads  # noqa: F401  (before torch: GOMP_SPINCOUNT)

# isort: split
import argparse
import asyncio
import contextlib
import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from fastapi import FastAPI, Request, WebSocket
from fastapi.responses import HTMLResponse, JSONResponse

from asr_core.serving import (
    SERVE_BACKENDS,
    ModelSource,
    ProtocolError,
    StreamLimits,
    choose,
    load,
    resolve_source,
)
from asr_core.serving.upload import decode_upload, file_from_body
from tasks.serve_stream import serve_stream

PAGE = Path(__file__).with_name("serve_page.html")
log = logging.getLogger("tasks.serve")


def error(field: str, reason: str) -> dict:
    return {"type": "error", "field": field, "reason": reason}


class Service:
    """What every request shares: the model, the limits, the decode pool and the open-stream count.
    ``source``: where the model was loaded from (a registry version already downloaded), if known."""

    def __init__(
        self,
        model,
        limits: StreamLimits,
        workers: int,
        partial_every: float = 1.0,
        partial_max_seconds: float = 15.0,
        probe: dict | None = None,
        source: ModelSource | None = None,
    ) -> None:
        self.model, self.limits, self.source = model, limits, source
        self.pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="decode")
        self.session_options = {"partial_every": partial_every, "partial_max_seconds": partial_max_seconds}
        self.probe = probe or {}
        self.streams = self.uploads = 0
        self._lock = threading.Lock()

    def open_stream(self) -> bool:
        with self._lock:
            if self.streams >= self.limits.max_streams:
                return False
            self.streams += 1
            return True

    def close_stream(self) -> None:
        with self._lock:
            self.streams -= 1

    def close(self) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)
        if self.model.batcher is not None:
            self.model.batcher.close()

    def new_session(self):
        return self.model.stream(**self.session_options)

    def health(self) -> dict:
        m = self.model
        return {
            "status": "ok",
            "kind": m.kind,
            "backend": m.backend_name,
            "streaming": m.streaming,
            "sample_rate": m.sample_rate,
            "streams_open": self.streams,
            "max_streams": self.limits.max_streams,
            "uploads_in_flight": self.uploads,
            "batch_streams": self.model.batcher.max_batch if self.model.batcher is not None else None,
            "backend_probe": self.probe,
        }


def create_app(service: Service) -> FastAPI:
    app = FastAPI(title="asr-toolkit transcription", docs_url=None, redoc_url=None)
    app.state.service = service

    @app.get("/health")
    async def health() -> dict:
        return service.health()

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        return PAGE.read_text(encoding="utf-8")

    @app.websocket("/ws/transcribe")
    async def ws_transcribe(ws: WebSocket) -> None:
        await serve_stream(ws, service)

    @app.post("/transcribe")
    async def transcribe(request: Request):
        limit = service.limits.max_upload_bytes
        try:
            declared = int(request.headers.get("content-length") or 0)
        except ValueError:
            declared = 0
        too_big = ProtocolError("file", f"upload exceeds the {limit}-byte limit", http_status=413)
        try:
            if declared > limit:
                raise too_big
            body = bytearray()
            async for chunk in request.stream():
                body += chunk
                if len(body) > limit:
                    raise too_big
        except ProtocolError as e:
            return JSONResponse(e.message(), status_code=e.http_status)

        def work() -> dict:  # parsing, decoding and resampling a large file take a while: not on the loop
            data = file_from_body(bytes(body), request.headers.get("content-type"))
            return service.model.transcribe(decode_upload(data, service.model.sample_rate, service.limits))

        service.uploads += 1
        try:
            result = await asyncio.get_running_loop().run_in_executor(service.pool, work)
        except ProtocolError as e:
            return JSONResponse(e.message(), status_code=e.http_status)
        except Exception as e:  # a decoding failure answers this request only
            log.exception("upload failed")
            return JSONResponse(error("server", f"{type(e).__name__}: {e}"), status_code=500)
        finally:
            service.uploads -= 1
        return {**result, "kind": service.model.kind, "backend": service.model.backend_name}

    return app


def uvicorn_config(app, host: str, port: int, limits: StreamLimits, log_level: str = "info"):
    import uvicorn

    # uvicorn refuses messages over ws_max_size itself (close 1009, no JSON): twice our own limit, so a
    # frame somewhat over it still gets the JSON error that names the limit.
    return uvicorn.Config(app, host=host, port=port, ws_max_size=2 * limits.max_frame_bytes, log_level=log_level)


@contextlib.contextmanager
def running(app, limits: StreamLimits, host: str = "127.0.0.1", port: int = 0):
    """Serve ``app`` from a thread of this process: yields the base URL (``port`` 0: a free one)."""
    import uvicorn

    server = uvicorn.Server(uvicorn_config(app, host, port, limits, log_level="warning"))
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        while not server.started:
            if not thread.is_alive():
                raise RuntimeError("the server did not start (see its log)")
            thread.join(0.02)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{host}:{bound}"
    finally:
        server.should_exit = True
        thread.join(10)


def build_service(args, log_fn=print) -> Service:
    import torch

    torch.set_num_threads(args.threads)
    limits = StreamLimits(
        max_streams=args.max_streams,
        max_stream_seconds=args.max_stream_seconds,
        max_frame_bytes=args.max_frame_bytes,
        max_backlog_seconds=args.max_backlog_seconds,
        idle_seconds=args.idle_seconds,
        max_upload_bytes=args.max_upload_bytes,
    )
    model = args.model
    if model.startswith("models:/"):  # the MLflow Model Registry (tasks/registry.py)
        from tasks.registry import download_version

        model = download_version(model, args.registry_cache)
        log_fn(f"serve: {args.model} is {model}")
    source = resolve_source(model)
    transducer = {"chunk_frames": args.chunk_frames, "max_symbols": args.max_symbols}
    if args.backend:
        model, probe = load(source, args.backend, args.threads, **transducer), {args.backend: "named by --backend"}
    else:
        model, probe = choose(source, args.threads, log=log_fn, **transducer)
    log_fn(f"serve: {model.kind} model {source.model_path} on {model.backend_name}")
    model.batch_streams(args.batch_streams)
    # batched streams wait in their decode threads while one thread encodes: a thread for each
    workers = max(args.workers, args.batch_streams) if model.batcher is not None else args.workers
    service = Service(model, limits, workers, args.partial_every, args.partial_max_seconds, probe, source)
    service.new_session()  # a bad --chunk-frames or --partial-* value fails now, not on the first stream
    return service


def parser() -> argparse.ArgumentParser:
    d = StreamLimits()
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument(
        "--model",
        required=True,
        help="a model.pt, an export folder (exports/<name>), or a registered transducer (models:/asr-rnnt@champion)",
    )
    p.add_argument(
        "--registry-cache", default=".cache/registry", help="where registered versions are downloaded (models:/...)"
    )
    p.add_argument(
        "--backend",
        choices=SERVE_BACKENDS,
        help="default: torch for a model.pt; for an export folder the fastest backend that passed its parity gate",
    )
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decode threads (streams in parallel)")
    p.add_argument("--threads", type=int, default=1, help="threads of one model call")
    p.add_argument("--max-streams", type=int, default=d.max_streams, help="WebSocket streams open at once")
    p.add_argument("--max-stream-seconds", type=float, default=d.max_stream_seconds, help="audio per stream/upload")
    p.add_argument("--max-frame-bytes", type=int, default=d.max_frame_bytes, help="one binary message")
    p.add_argument(
        "--max-backlog-seconds",
        type=float,
        default=d.max_backlog_seconds,
        help="audio waiting to be decoded before a stream's reads pause",
    )
    p.add_argument("--idle-seconds", type=float, default=d.idle_seconds, help="longest wait for a client message")
    p.add_argument("--max-upload-bytes", type=int, default=d.max_upload_bytes, help="one HTTP upload")
    p.add_argument("--chunk-frames", type=int, default=10, help="transducer: stacked frames per encoder call")
    p.add_argument("--max-symbols", type=int, default=5, help="transducer: tokens per encoder frame at most")
    p.add_argument(
        "--batch-streams",
        type=int,
        default=0,
        help="streaming transducer: encode the chunks of up to this many streams in one call (0: each alone); "
        "docs/serving.md says when it pays",
    )
    p.add_argument(
        "--partial-every",
        type=float,
        default=1.0,
        help="CTC: re-decode the audio so far every this many seconds of audio for a partial (0: off)",
    )
    p.add_argument("--partial-max-seconds", type=float, default=15.0, help="CTC: no partials past this much audio")
    p.add_argument("--log-level", default="info")
    return p


def main(argv: list[str] | None = None) -> None:
    import uvicorn

    p = parser()
    args = p.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(message)s")
    if args.workers < 1 or args.threads < 1 or args.batch_streams < 0:
        p.error("--workers and --threads must be >= 1, --batch-streams >= 0")
    try:
        service = build_service(args)
    except (ValueError, FileNotFoundError) as e:
        p.error(str(e))
    app = create_app(service)
    print(f"serve: http://{args.host}:{args.port}/ (streams: ws://{args.host}:{args.port}/ws/transcribe)", flush=True)
    uvicorn.Server(uvicorn_config(app, args.host, args.port, service.limits, args.log_level)).run()


if __name__ == "__main__":
    main()
