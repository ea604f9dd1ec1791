"""One WebSocket stream of ``/ws/transcribe``: read the client's messages, decode off the event loop.

Two tasks per stream share a queue of decoded samples:

- the reader takes the header, then each binary frame (decoded and checked against the limits) into the
  queue, until ``{"type": "end"}``. When more than ``max_backlog_seconds`` of audio waits to be decoded
  it stops reading until the decoder catches up: the socket's reads pause, and TCP's flow control slows
  the client down; nothing is dropped and no error is sent.
- the decoder takes everything queued at once and, on the server's thread pool (so many streams
  interleave and the event loop stays free), resamples it to the model's rate and runs the stream's
  session; it sends a partial when the hypothesis changed, and after the end the final result, then
  closes the stream.

A client mistake ends that stream with ``{"type": "error", "field", "reason"}`` and a close code; a client
that goes away ends it silently. Nothing here can end another stream or the server.
"""

from __future__ import annotations

import asyncio
import logging

import numpy as np
from starlette.websockets import WebSocket

from asr_core.serving import AudioInput, ProtocolError, parse_control, parse_header
from asr_core.serving.protocol import CLOSE_NORMAL, CLOSE_POLICY, CLOSE_SERVER_ERROR, CLOSE_TRY_LATER

log = logging.getLogger("tasks.serve")


class ClientGone(Exception):
    """The client closed the connection (or it broke): nothing more can be sent."""


class StreamHandler:
    def __init__(self, ws: WebSocket, service) -> None:
        self.ws, self.service, self.limits = ws, service, service.limits
        self.queue: asyncio.Queue = asyncio.Queue()  # sample arrays at the client's rate; None: the end
        self.backlog = 0  # samples queued and not yet decoded (at the client's rate)
        self.max_backlog = 0
        self.drained = asyncio.Event()
        self.send_lock = asyncio.Lock()
        self.open = True

    async def send(self, message: dict) -> None:
        async with self.send_lock:
            if not self.open:
                raise ClientGone
            try:
                await self.ws.send_json(message)
            except Exception as e:  # starlette/uvicorn raise several kinds once the peer is gone
                self.open = False
                raise ClientGone from e

    async def close(self, code: int) -> None:
        async with self.send_lock:
            if self.open:
                self.open = False
                try:
                    await self.ws.close(code)
                except Exception:  # already closed by the peer: nothing to tell it
                    log.debug("close after the peer left", exc_info=True)

    async def receive(self) -> tuple[str | None, bytes | None]:
        try:
            msg = await asyncio.wait_for(self.ws.receive(), self.limits.idle_seconds)
        except TimeoutError:
            raise ProtocolError("stream", f"no message for {self.limits.idle_seconds:g} s") from None
        except Exception as e:
            raise ClientGone from e
        if msg["type"] == "websocket.disconnect":
            self.open = False
            raise ClientGone
        data = msg.get("bytes")
        return (None, data) if data is not None else (msg.get("text") or "", None)

    async def run(self) -> str:
        """Serve the stream to its end; returns how it ended (for the log)."""
        tasks: list[asyncio.Task] = []
        try:
            text, _ = await self.receive()
            fmt = parse_header(text)
            audio = AudioInput(fmt, self.service.model.sample_rate, self.limits)
            self.max_backlog = int(self.limits.max_backlog_seconds * fmt.sample_rate)
            session = self.service.new_session()
            await self.send(
                {
                    "type": "ready",
                    "format": fmt.encoding,
                    "sample_rate": fmt.sample_rate,
                    "model_sample_rate": self.service.model.sample_rate,
                    "streaming": self.service.model.streaming,
                }
            )
            reader = asyncio.create_task(self.read(audio))
            decoder = asyncio.create_task(self.decode(audio, session))
            tasks = [reader, decoder]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    raise task.exception()
            await decoder
            await self.close(CLOSE_NORMAL)
            return f"final after {audio.seconds:.2f} s of audio"
        except ProtocolError as e:
            await self.report(e.message(), e.close_code)
            return f"error: {e}"
        except ClientGone:
            return "client left"
        except Exception as e:  # a decoding failure ends this stream only
            log.exception("stream failed")
            await self.report(
                {"type": "error", "field": "server", "reason": f"{type(e).__name__}: {e}"}, CLOSE_SERVER_ERROR
            )
            return f"server error: {e}"
        finally:
            for task in tasks:
                task.cancel()

    async def report(self, message: dict, code: int) -> None:
        try:
            await self.send(message)
        except ClientGone:
            return
        await self.close(code)

    async def read(self, audio: AudioInput) -> None:
        while True:
            text, data = await self.receive()
            if data is None:
                parse_control(text)  # only "end" passes
                self.queue.put_nowait(None)
                return
            await self.put(audio.decode(data))

    async def put(self, samples: np.ndarray) -> None:
        if samples.size:
            self.backlog += samples.size
            self.queue.put_nowait(samples)
        while self.backlog > self.max_backlog:  # pause reading until the decoder catches up
            self.drained.clear()
            await self.drained.wait()

    async def decode(self, audio: AudioInput, session) -> None:
        loop = asyncio.get_running_loop()
        pool = self.service.pool
        accept = lambda x: session.accept(audio.resample(x))

        def finish() -> dict:
            session.accept(audio.finish())  # the resampler's tail; the final follows at once
            return session.finish()

        while True:
            batch, end = [], False
            item = await self.queue.get()
            while True:  # everything waiting goes through in one call: a slow stream catches up
                if item is None:
                    end = True
                    break
                batch.append(item)
                if self.queue.empty():
                    break
                item = self.queue.get_nowait()
            if batch:
                samples = np.concatenate(batch)
                text = await loop.run_in_executor(pool, accept, samples)
                self.backlog -= samples.size
                self.drained.set()
                if text is not None:
                    seconds = round(session.samples / self.service.model.sample_rate, 3)
                    await self.send({"type": "partial", "text": text, "audio_seconds": seconds})
            if end:
                result = await loop.run_in_executor(pool, finish)
                await self.send({"type": "final", **result})
                return


async def serve_stream(ws: WebSocket, service) -> None:
    """``/ws/transcribe``: one stream, within the server's limit of open streams."""
    await ws.accept()
    handler = StreamHandler(ws, service)
    if not service.open_stream():
        reason = f"the server is at its limit of {service.limits.max_streams} open streams; try again later"
        await handler.report({"type": "error", "field": "stream", "reason": reason}, CLOSE_TRY_LATER)
        return
    try:
        log.info("stream %x: %s", id(handler), await handler.run())
    finally:
        service.close_stream()
        await handler.close(CLOSE_POLICY)  # a no-op unless the stream ended without closing (cancelled)
