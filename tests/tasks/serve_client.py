"""A WebSocket / HTTP client of tasks.serve for the serving tests: stream a file, send raw messages,
collect the answers (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json

import httpx
import soundfile as sf
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed


def run(coro, timeout: float = 60.0):
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def collect(ws) -> tuple[list[dict], int | None]:
    """Every message until the server closes: (messages, close code)."""
    messages = []
    with contextlib.suppress(ConnectionClosed):
        async for m in ws:
            messages.append(json.loads(m))
    return messages, ws.close_code


async def stream_wav(url, wav, fmt="pcm16", chunk_seconds=0.1):
    """Stream a WAV file's samples as ``fmt`` in pieces: (messages, close code)."""
    x, file_rate = sf.read(wav, dtype="int16" if fmt == "pcm16" else "float32")
    dtype = "<i2" if fmt == "pcm16" else "<f4"
    async with connect(url.replace("http://", "ws://") + "/ws/transcribe") as ws:
        await ws.send(json.dumps({"format": fmt, "sample_rate": file_rate}))
        n = int(file_rate * chunk_seconds)
        for i in range(0, len(x), n):
            await ws.send(x[i : i + n].astype(dtype).tobytes())
            await asyncio.sleep(0)  # let concurrent streams interleave
        await ws.send(json.dumps({"type": "end"}))
        return await collect(ws)


async def send_then_collect(url, messages, hold: float = 0.0):
    """Send raw messages (dicts as JSON, str as text, bytes as binary), then read until closed."""
    async with connect(url.replace("http://", "ws://") + "/ws/transcribe", max_size=None) as ws:
        with contextlib.suppress(ConnectionClosed):  # the server may close before all is sent
            for m in messages:
                await ws.send(json.dumps(m) if isinstance(m, dict) else m)
            await asyncio.sleep(hold)
        return await collect(ws)


def final_of(messages) -> dict:
    assert messages[0]["type"] == "ready", messages[0]
    assert messages[-1]["type"] == "final", messages[-1]
    return messages[-1]


def health(url) -> dict:
    return httpx.get(url + "/health", timeout=10).json()
