"""The microphone page (tasks/serve_page.html) in headless Chromium, driven by Playwright, with Chromium's
fake microphone playing a WAV file: the page streams it, shows partials and the transcript the server
made of the audio it received, and its upload fallback shows the file's offline transcript.

Chromium comes from the system (Debian's ``chromium``; ``CHROMIUM`` names another binary) and Playwright
only drives it: no browser is downloaded. Without either the test is skipped, saying which is missing.
"""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import soundfile as sf
import torch

from asr_core.serving import StreamLimits, load, resolve_source
from tasks import serve

CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")


def _browser_missing() -> str | None:
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "the playwright package is not installed (pip install -e '.[dev]')"
    if not CHROMIUM:
        return "no Chromium binary (apt-get install chromium, or set CHROMIUM=/path/to/chromium)"
    return None


pytestmark = pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))


class RecordingSession:
    """A stream's session that keeps the samples it decodes (what the server really received)."""

    def __init__(self, session, store: list) -> None:
        self.session, self.pieces = session, []
        store.append(self)

    def __getattr__(self, name):
        return getattr(self.session, name)

    def accept(self, samples):
        self.pieces.append(np.array(samples, dtype=np.float32))
        return self.session.accept(samples)

    def finish(self):
        return self.session.finish()


def best_correlation(segment: np.ndarray, source: np.ndarray) -> float:
    """Highest normalised correlation of ``segment`` with any stretch of the looping ``source``."""
    seg, looped = segment.astype(np.float64), np.tile(source.astype(np.float64), 3)
    size = len(looped) + len(seg)
    corr = np.fft.irfft(np.fft.rfft(looped, size) * np.conj(np.fft.rfft(seg, size)), size)[: len(looped) - len(seg)]
    energy = np.cumsum(np.concatenate(([0.0], looped**2)))
    norms = np.sqrt(energy[len(seg) : len(looped)] - energy[: len(looped) - len(seg)]) * np.linalg.norm(seg)
    return float(np.max(corr / np.maximum(norms, 1e-9)))


def matches_source(received: np.ndarray, source: np.ndarray) -> float:
    """Median over quarter-second pieces of ``received`` of their best correlation with ``source``
    (a piece across the seam where Chromium loops the file, with a short gap there, matches less)."""
    pieces = [received[i : i + 4000] for i in range(0, len(received) - 4000, 2000)]
    return float(np.median([best_correlation(p, source) for p in pieces]))


def test_serve_page_streams_a_fake_microphone_and_uploads(serve_assets, offline_texts, tmp_path):
    from playwright.sync_api import sync_playwright

    from tasks import transcribe

    torch.set_num_threads(1)
    wav = serve_assets.utterances[0]
    source, rate = sf.read(wav, dtype="float32")
    limits = StreamLimits(max_streams=2, max_stream_seconds=60.0)
    service = serve.Service(load(resolve_source(serve_assets.transducer), "torch"), limits, workers=2)
    sessions: list[RecordingSession] = []
    make_session = service.new_session
    service.new_session = lambda: RecordingSession(make_session(), sessions)
    flags = [
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-audio-capture={wav}",  # played in a loop
        "--autoplay-policy=no-user-gesture-required",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-background-networking",  # no connection leaves the machine
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
    ]
    try:
        with serve.running(serve.create_app(service), limits) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=flags)
            page = browser.new_page()
            page.goto(url + "/")
            page.click("#start")
            page.wait_for_selector("body[data-state=streaming]", timeout=20_000)
            # the fake microphone plays the file about 1.5 times, as a user speaking would
            page.wait_for_timeout(1500 * len(source) / rate)
            page.click("#stop")
            page.wait_for_selector("body[data-state=done]", timeout=30_000)
            shown = page.inner_text("#final").strip()
            word_count = page.locator("#words span").count()
            partials = int(page.evaluate("document.body.dataset.partials || '0'"))

            page.set_input_files("#file", str(wav))
            page.click("#upload")
            page.wait_for_selector("body[data-upload=done]", timeout=30_000)
            uploaded = page.inner_text("#upload-result").strip()
            browser.close()
    finally:
        service.close()

    assert len(sessions) == 1
    received = np.concatenate(sessions[0].pieces)
    assert len(received) >= 1.2 * len(source)  # at the model's 16 kHz
    assert matches_source(received, source) > 0.95  # the microphone really carried the file
    heard = tmp_path / "received.wav"
    sf.write(heard, received, 16000, subtype="FLOAT")  # float samples: the offline path reads them back exactly
    expected = transcribe.main(["--model", str(serve_assets.transducer), str(heard)])[0]
    assert expected and shown == expected.strip()
    assert word_count == len(expected.split()) and partials >= 1
    assert uploaded == offline_texts(serve_assets.transducer, wav).strip()
