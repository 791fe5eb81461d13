"""The night monitor page in a real browser: Debian's chromium plays a WAV as its fake microphone,
the page streams it to the real server (uvicorn) and the built-in cough model counts the coughs.

The fake device plays in real time, so the recording is a 48 s excerpt of examples/night.ogg
(four pieces, each around one of its coughs; the first cough 5 s in, as the device loops the file).
The connection is dropped twice on the way; the count must still be `respira detect`'s on the
excerpt (within one: the browser resamples and quantises the audio) and the server must have
analysed exactly the audio the page captured, no more and no less. Skipped without chromium or
playwright, as tests/test_browser.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.browser
from test_browser import CHROMIUM, CHROMIUM_ARGS, running_server  # noqa: E402  (skips without chromium/playwright)

from respira import audio, store  # noqa: E402
from respira.detect import detect_array  # noqa: E402
from respira.detect.config import detect_config  # noqa: E402
from respira.inference import load_model  # noqa: E402
from respira.server import ServerSettings  # noqa: E402

sync_api = pytest.importorskip("playwright.sync_api")

NIGHT = Path(__file__).resolve().parents[1] / "examples" / "night.ogg"
PIECES_S = ((14, 26), (44, 56), (100, 112), (160, 172))  # night.truth.csv: coughs at 19.3, 48.5, 105.9, 163.2 s
SR = 16000
BLOCK_S = 0.5  # live.js BLOCK_S
TIMEOUT_MS = 90_000


@pytest.fixture(scope="module")
def excerpt(tmp_path_factory) -> Path:
    y = audio.load(NIGHT, sample_rate=SR)
    path = tmp_path_factory.mktemp("live") / "excerpt.wav"
    audio.write_wav(path, np.concatenate([y[a * SR: b * SR] for a, b in PIECES_S]), sample_rate=SR)
    return path


def until(page, condition, timeout_s: float = TIMEOUT_MS / 1000) -> dict:
    """Poll the page's state until `condition(state)` (wait_for_function would eval, which the page's CSP forbids)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        state = page.evaluate("window.respiraLive.state()")
        if state and condition(state):
            return state
        page.wait_for_timeout(200)
    pytest.fail(f"the page did not get there in {timeout_s:g} s: {state}")


def test_the_page_counts_the_coughs_of_a_night_through_dropped_connections(excerpt, tmp_path):
    model = load_model("cough")
    expected = detect_array(audio.load(excerpt, sample_rate=model.sample_rate), model, detect_config(model)).events
    assert len(expected) >= 8
    db = tmp_path / "live.sqlite"
    args = [*CHROMIUM_ARGS, f"--use-file-for-fake-audio-capture={excerpt}"]
    with running_server(ServerSettings(models=("cough",), db=str(db))) as url, sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=str(CHROMIUM), args=args)
        page = browser.new_context(viewport={"width": 390, "height": 844}, permissions=["microphone"]).new_page()
        page.set_default_timeout(TIMEOUT_MS)
        page.goto(url + "/live")
        page.click("#start")
        until(page, lambda s: s["nextSeq"] * BLOCK_S >= 15)
        page.evaluate("window.respiraLive.drop(3000)")  # offline for 3 s: the audio waits on the page
        until(page, lambda s: s["nextSeq"] * BLOCK_S >= 30)
        page.evaluate("window.respiraLive.drop(0)")
        until(page, lambda s: s["nextSeq"] * BLOCK_S >= 49)  # the excerpt and a second (the device then loops it)
        page.click("#stop")
        state = until(page, lambda s: s["ended"])
        shown = int(page.locator("#count").inner_text())
        assert page.locator("#error").is_hidden()
        assert page.locator("#events tbody tr").count() == min(shown, 20)
        page.screenshot(path=str(tmp_path / "live.png"), full_page=True)
        browser.close()
    assert abs(shown - len(expected)) <= 1, (shown, [round(e.start, 2) for e in expected])
    con = store.connect(db, create=False)
    session = store.session_by_id(con, state["id"])
    assert (session.status, session.source, session.events) == ("finished", "browser", shown)
    samples = (state["nextSeq"] - 1) * BLOCK_S * state["sampleRate"]  # the last block may be shorter
    assert samples / state["sampleRate"] <= session.seconds_analysed <= state["nextSeq"] * BLOCK_S + 0.01
