"""The transcription service (tasks/serve.py) on a real uvicorn server on 127.0.0.1: streams give the
offline transcripts, uploads and health answer, every bad input ends only its own stream with a JSON
error, and the command line refuses what it cannot serve (export folders: test_serve_export.py)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import httpx
import numpy as np
import pytest
import soundfile as sf
import torch
from websockets.asyncio.client import connect

from asr_core.serving import StreamLimits, load, resolve_source
from tasks import serve
from tests.tasks.serve_client import collect, final_of, health, run, send_then_collect, stream_wav

LIMITS = StreamLimits(
    max_streams=3,
    max_stream_seconds=5.0,
    max_frame_bytes=32000,  # one second of 16 kHz PCM16
    max_backlog_seconds=1.0,  # the test clients send faster than real time: reads pause
    idle_seconds=3.0,
    max_upload_bytes=400_000,
)
HEADER = {"format": "pcm16", "sample_rate": 16000}


@contextlib.contextmanager
def serving(model_path, backend="torch", limits=LIMITS, batch_streams=0, workers=2, **options):
    torch.set_num_threads(1)
    model = load(resolve_source(model_path), backend)
    model.batch_streams(batch_streams)
    service = serve.Service(model, limits, workers=workers, **options)
    try:
        with serve.running(serve.create_app(service), limits) as url:
            yield url, service
    finally:
        service.close()


@pytest.fixture(scope="module")
def rnnt_server(serve_assets):
    with serving(serve_assets.transducer) as s:
        yield s


@pytest.fixture(scope="module")
def ctc_server(serve_assets):
    with serving(serve_assets.ctc, partial_every=0.5) as s:
        yield s


def test_serve_transducer_stream_equals_offline_transcript(rnnt_server, serve_assets, offline_texts):
    url, _ = rnnt_server
    partials = 0
    for wav in serve_assets.utterances:
        messages, code = run(stream_wav(url, wav))
        final = final_of(messages)
        assert code == 1000 and final["text"] == offline_texts(serve_assets.transducer, wav)
        for p in messages[1:-1]:
            assert p["type"] == "partial" and final["text"].startswith(p["text"]), (p, final)
        partials += len(messages) - 2
    assert partials >= 2  # the transducer decodes as the audio arrives
    assert any(offline_texts(serve_assets.transducer, w) for w in serve_assets.utterances)
    # float32 frames and an 8 kHz stream (resampled as the file reader resamples) decode alike
    messages, _ = run(stream_wav(url, serve_assets.utterances[1], fmt="float32", chunk_seconds=0.037))
    assert final_of(messages)["text"] == offline_texts(serve_assets.transducer, serve_assets.utterances[1])
    messages, _ = run(stream_wav(url, serve_assets.utterance_8k, chunk_seconds=0.05))
    assert final_of(messages)["text"] == offline_texts(serve_assets.transducer, serve_assets.utterance_8k)


def test_serve_ctc_whole_utterance_equals_offline_transcript(ctc_server, serve_assets, offline_texts):
    url, service = ctc_server
    assert not service.model.streaming
    partials = 0
    for wav in serve_assets.utterances:
        messages, code = run(stream_wav(url, wav))
        final = final_of(messages)
        assert code == 1000 and final["text"] == offline_texts(serve_assets.ctc, wav)
        assert all(p["type"] == "partial" and p["audio_seconds"] > 0 for p in messages[1:-1])
        partials += len(messages) - 2
    assert partials >= 2  # re-decoded every 0.5 s of audio


def test_serve_word_timings_follow_the_decoders_frames(rnnt_server, ctc_server, serve_assets):
    from asr_core.decoding.rnnt_stream import TorchBackend, greedy_decoder
    from asr_core.models.artifact import load_model
    from asr_core.serving.engine import ctc_alignment

    several = 0
    for (url, _), path in ((rnnt_server, serve_assets.transducer), (ctc_server, serve_assets.ctc)):
        model, features, vocab = load_model(path)
        for wav in serve_assets.utterances:
            final = final_of(run(stream_wav(url, wav))[0])
            words, text = final["words"], final["text"]
            assert [w["word"] for w in words] == text.split()
            if not words:
                continue
            several += len(words) > 1
            x = torch.from_numpy(sf.read(wav, dtype="float32")[0])
            feats, lens = features(x[None], torch.tensor([x.numel()]))
            with torch.no_grad():
                if model.kind == "transducer":  # the frame at which each token was emitted
                    backend = TorchBackend(model)
                    dec = greedy_decoder(backend)
                    frames = dec.advance(dec.init(1), *backend.encode_utterances(feats, lens)).frames[0]
                    first, last = frames[0], frames[-1] + 1
                    step = 0.06  # 10 ms hop x 3 stacked x 2 time reduction
                else:  # the runs of the best path
                    log_probs, out_lens = model(feats, lens)
                    _, starts, ends = ctc_alignment(log_probs[0, : int(out_lens[0])], vocab.blank)
                    first, last, step = starts[0], ends[-1], 0.02  # 10 ms hop x 2 subsampling
            assert words[0]["start"] == pytest.approx(first * step, abs=1e-3)
            assert words[-1]["end"] == pytest.approx(last * step, abs=1e-3)
            for a, b in zip(words, words[1:]):
                assert a["start"] <= a["end"] <= b["start"] <= b["end"], (a, b)
            assert words[-1]["end"] <= final["audio_seconds"] + step
    assert several >= 2, "the fixtures' models should say several words in some utterances"


def test_serve_http_upload_and_health(rnnt_server, serve_assets, offline_texts):
    url, _ = rnnt_server
    wav = serve_assets.utterances[2]
    expected = offline_texts(serve_assets.transducer, wav)
    raw = httpx.post(url + "/transcribe", content=wav.read_bytes(), timeout=30)
    form = httpx.post(url + "/transcribe", files={"file": ("u.wav", wav.read_bytes(), "audio/wav")}, timeout=30)
    for r in (raw, form):
        assert r.status_code == 200 and r.json()["text"] == expected, r.text
        assert r.json()["kind"] == "transducer" and r.json()["backend"] == "torch"
    eight = httpx.post(url + "/transcribe", content=serve_assets.utterance_8k.read_bytes(), timeout=30)
    assert eight.json()["text"] == offline_texts(serve_assets.transducer, serve_assets.utterance_8k)

    async def bad_upload_during_a_stream():
        post = lambda: httpx.post(url + "/transcribe", files={"file": ("notes.txt", b"not audio", "text/plain")})
        return await asyncio.gather(asyncio.to_thread(post), stream_wav(url, wav))

    bad, (messages, _) = run(bad_upload_during_a_stream())
    assert bad.status_code == 415 and bad.json()["field"] == "file" and "not an audio file" in bad.json()["reason"]
    assert final_of(messages)["text"] == expected
    big = httpx.post(url + "/transcribe", content=b"\0" * (LIMITS.max_upload_bytes + 1))
    assert big.status_code == 413 and "400000-byte limit" in big.json()["reason"]
    no_part = httpx.post(url + "/transcribe", data={"other": "x"}, files={"x": (None, b"1")})
    assert no_part.status_code == 400 and "no file part" in no_part.json()["reason"]

    h = health(url)
    assert (h["kind"], h["backend"], h["streaming"], h["streams_open"]) == ("transducer", "torch", True, 0)

    async def open_stream_then_health():
        async with connect(url.replace("http://", "ws://") + "/ws/transcribe") as ws:
            await ws.send(json.dumps(HEADER))
            await ws.recv()
            during = await asyncio.to_thread(health, url)
            await ws.send(json.dumps({"type": "end"}))
            messages, _ = await collect(ws)
        return during, messages

    during, messages = run(open_stream_then_health())
    assert during["streams_open"] == 1 and messages[-1] == {
        "type": "final",
        "text": "",
        "words": [],
        "audio_seconds": 0,
    }
    assert httpx.get(url + "/", timeout=10).text.count("/ws/transcribe") >= 1


BAD_STREAMS = {
    "not_json": (["hello"], "header", "not valid JSON", 1008),
    "not_an_object": (["[1, 2]"], "header", "expected a JSON object, got list", 1008),
    "binary_first": ([b"\0\1"], "format", "the first message must be the JSON header", 1008),
    "missing_format": ([{"sample_rate": 16000}], "format", "missing", 1008),
    "unknown_format": ([{"format": "mp3", "sample_rate": 16000}], "format", "unknown format 'mp3'", 1008),
    "missing_rate": ([{"format": "pcm16"}], "sample_rate", "missing", 1008),
    "bad_rate": ([{"format": "pcm16", "sample_rate": 100}], "sample_rate", "outside 8000-192000 Hz", 1008),
    "unknown_key": ([{**HEADER, "channels": 2}], "channels", "unknown header key", 1008),
    "odd_pcm16": ([HEADER, b"\0\0\0"], "audio", "not a whole number of samples", 1008),
    "nan_float32": (
        [{"format": "float32", "sample_rate": 16000}, np.array([0.0, np.nan], "<f4").tobytes()],
        "audio",
        "must be finite",
        1008,
    ),
    "frame_too_big": ([HEADER, bytes(40000)], "audio", "frame of 40000 bytes exceeds the 32000-byte limit", 1009),
    "stream_too_long": ([HEADER] + [bytes(16000)] * 12, "audio", "the stream exceeds the 5 s limit", 1009),
    "unknown_message": ([HEADER, {"type": "pause"}], "type", "unknown message type 'pause'", 1008),
    "idle": ([HEADER], "stream", "no message for 3 s", 1008),
}


@pytest.mark.parametrize("case", list(BAD_STREAMS))
def test_serve_bad_stream_gets_an_error_and_others_go_on(case, rnnt_server, serve_assets, offline_texts):
    url, _ = rnnt_server
    sent, field, reason, code = BAD_STREAMS[case]
    hold = LIMITS.idle_seconds + 1 if case == "idle" else 0.0

    async def both():
        return await asyncio.gather(send_then_collect(url, sent, hold), stream_wav(url, serve_assets.utterances[1]))

    (messages, close_code), (good, good_code) = run(both())
    errors = [m for m in messages if m["type"] == "error"]
    assert len(errors) == 1 and errors[0]["field"] == field and reason in errors[0]["reason"], messages
    assert messages[-1] == errors[0] and close_code == code
    assert good_code == 1000 and final_of(good)["text"] == offline_texts(
        serve_assets.transducer, serve_assets.utterances[1]
    )


def test_serve_transport_limit_client_gone_and_stream_limit(rnnt_server, serve_assets, offline_texts):
    url, _ = rnnt_server
    ws_url = url.replace("http://", "ws://") + "/ws/transcribe"
    expected = offline_texts(serve_assets.transducer, serve_assets.utterances[3])

    # over twice the frame limit uvicorn itself refuses the message (close 1009, no JSON)
    async def huge_and_good():
        return await asyncio.gather(
            send_then_collect(url, [HEADER, bytes(2 * LIMITS.max_frame_bytes + 2)]),
            stream_wav(url, serve_assets.utterances[3]),
        )

    (messages, code), (good, _) = run(huge_and_good())
    assert code == 1009 and {m["type"] for m in messages} <= {"ready"} and final_of(good)["text"] == expected

    # a client that vanishes mid-stream (no close handshake) frees its stream; the others go on
    async def vanish_and_good():
        async def vanish():
            ws = await connect(ws_url)
            await ws.send(json.dumps(HEADER))
            await ws.recv()
            await ws.send(bytes(8000))
            ws.transport.abort()

        return await asyncio.gather(vanish(), stream_wav(url, serve_assets.utterances[3]))

    _, (good, _) = run(vanish_and_good())
    assert final_of(good)["text"] == expected
    deadline = time.monotonic() + 10
    while health(url)["streams_open"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health(url)["streams_open"] == 0

    # past max_streams a new stream is told to come back later; the open ones finish
    async def over_the_limit():
        x = sf.read(serve_assets.utterances[3], dtype="int16")[0].tobytes()
        opened = [await connect(ws_url) for _ in range(LIMITS.max_streams)]
        for ws in opened:
            await ws.send(json.dumps(HEADER))
            await ws.recv()
        await opened[0].send(x[:16000])  # half a second of the utterance, the rest after the refusal
        refused = await send_then_collect(url, [HEADER])
        for i in range(16000, len(x), 16000):
            await opened[0].send(x[i : i + 16000])
        for ws in opened:
            await ws.send(json.dumps({"type": "end"}))
        return refused, [await collect(ws) for ws in opened]

    (refused, code), finished = run(over_the_limit())
    assert code == 1013 and refused == [
        {
            "type": "error",
            "field": "stream",
            "reason": "the server is at its limit of 3 open streams; try again later",
        }
    ]
    # ("ready" was read above)
    assert [(m[-1]["type"], m[-1]["text"], c) for m, c in finished] == [("final", t, 1000) for t in (expected, "", "")]


def test_serve_concurrent_streams_keep_their_own_state(rnnt_server, ctc_server, serve_assets, offline_texts):
    for (url, _), model in ((rnnt_server, serve_assets.transducer), (ctc_server, serve_assets.ctc)):
        wavs = serve_assets.utterances[:3]

        async def together(url=url, wavs=wavs):
            return await asyncio.gather(
                *(stream_wav(url, w, chunk_seconds=0.05 + 0.02 * i) for i, w in enumerate(wavs))
            )

        for wav, (messages, code) in zip(wavs, run(together())):
            final = final_of(messages)
            assert code == 1000 and final["text"] == offline_texts(model, wav)
            if model == serve_assets.transducer:
                assert all(final["text"].startswith(p["text"]) for p in messages[1:-1])


def test_serve_batched_streams_equal_offline_transcripts(serve_assets, offline_texts):
    """--batch-streams: the chunks of streams waiting together go through one encoder call; every
    stream still gets its offline transcript, with partials that lead to it."""
    wavs = serve_assets.utterances[:3]
    with serving(serve_assets.transducer, batch_streams=3, workers=3) as (url, service):

        async def together():
            return await asyncio.gather(
                *(stream_wav(url, w, chunk_seconds=0.05 + 0.01 * i) for i, w in enumerate(wavs))
            )

        for wav, (messages, code) in zip(wavs, run(together())):
            final = final_of(messages)
            assert code == 1000 and final["text"] == offline_texts(serve_assets.transducer, wav)
            assert all(p["type"] == "partial" and final["text"].startswith(p["text"]) for p in messages[1:-1])
        batcher = service.model.batcher
        assert health(url)["batch_streams"] == 3 and batcher.batched >= batcher.rounds > 0
    assert not batcher._thread.is_alive()  # the service closed: its encoder thread ended


def test_serve_cli_refuses_what_it_cannot_serve(serve_assets, capsys):
    for argv, why in (
        (["--model", "no/such/model.pt"], "neither a model.pt nor an export folder"),
        (["--model", str(serve_assets.ctc), "--backend", "openvino"], "give the export folder as --model"),
        (["--model", str(serve_assets.ctc), "--max-streams", "0"], "max_streams must be a positive number"),
        (["--model", str(serve_assets.transducer), "--chunk-frames", "3"], "chunk_frames must be a positive multiple"),
        (["--model", str(serve_assets.transducer), "--batch-streams", "-1"], "--batch-streams >= 0"),
    ):
        with pytest.raises(SystemExit):
            serve.main(argv)
        assert why in capsys.readouterr().err
