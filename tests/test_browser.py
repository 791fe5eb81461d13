"""The page in a real browser: Debian's chromium driven by Playwright, with a fake microphone.

Skipped where /usr/bin/chromium or the playwright package is missing (scripts/install_browser.sh
installs chromium; `playwright install` is never used). The server is the real one (uvicorn on a
free 127.0.0.1 port) serving a tiny untrained bundle, so labels are meaningless but deterministic.
"""

from __future__ import annotations

import socket
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox", "--use-fake-ui-for-media-stream", "--use-fake-device-for-media-stream", "--disable-gpu",
    "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run",
]
TIMEOUT_MS = 30_000

pytestmark = pytest.mark.browser
if not CHROMIUM.exists():
    pytest.skip(f"{CHROMIUM} not installed (scripts/install_browser.sh installs it)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api")
uvicorn = pytest.importorskip("uvicorn")

from test_server import make_bundle  # noqa: E402  (the same tiny bundle as the API tests)

from respira import audio  # noqa: E402
from respira.inference import load_model  # noqa: E402
from respira.server import ServerSettings, create_app  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return make_bundle(tmp_path_factory.mktemp("browser") / "tiny.respira", decision=0.0)


@contextmanager
def running_server(settings: ServerSettings):
    """The real server in a thread: uvicorn on a free loopback port; yields its URL."""
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("the server did not start")
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.fixture(scope="module")
def base_url(bundle):
    with running_server(ServerSettings(models=(str(bundle),))) as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    sync_api.expect.set_options(timeout=TIMEOUT_MS)  # the first analysis warms up torch and matplotlib
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture()
def page(browser, base_url):
    context = browser.new_context(viewport={"width": 390, "height": 844}, permissions=["microphone"])  # a phone
    page = context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(base_url + "/")
    sync_api.expect(page.locator("#model option")).to_have_count(1)
    yield page
    context.close()


def shown_bars(page) -> dict[str, float]:
    bars = page.locator("#probabilities [data-class]")
    return {bars.nth(i).get_attribute("data-class"): float(bars.nth(i).get_attribute("data-probability"))
            for i in range(bars.count())}


def test_record_from_the_fake_microphone(page, tmp_path):
    expect = sync_api.expect
    expect(page.locator("#status")).to_contain_text("Ready")
    page.click("#record")
    expect(page.locator("#stop")).to_be_enabled()
    expect(page.locator("#status")).to_contain_text("Recording")
    page.wait_for_timeout(2000)
    page.click("#stop")
    expect(page.locator("#label")).to_have_text("cough")  # decision threshold 0: always the positive class
    expect(page.locator("#diagnosis")).to_contain_text("cough")
    bars = shown_bars(page)
    assert set(bars) == {"cough", "other"} and sum(bars.values()) == pytest.approx(1.0, abs=1e-5)
    for image in ("#waveform", "#mfcc", "#mel"):
        expect(page.locator(image)).to_be_visible()
        assert page.get_attribute(image, "src").startswith("data:image/png;base64,")
    expect(page.locator("#error")).to_be_hidden()
    duration = float(page.locator("#status").inner_text().split("(")[1].split(" s")[0])
    assert 1.5 <= duration <= 4.0  # about the 2 s recorded
    page.screenshot(path=str(tmp_path / "recorded.png"), full_page=True)
    assert (tmp_path / "recorded.png").stat().st_size > 10_000


@pytest.mark.shared
def test_upload_a_real_cough_clip(page, shared_data, bundle, tmp_path):
    clips = sorted((shared_data / "nonverbal-vocalization" / "coughing").glob("*.wav"))
    if not clips:
        pytest.skip("no coughing clips in the shared data")
    clip = clips[0]
    page.set_input_files("#file", str(clip))
    sync_api.expect(page.locator("#label")).to_have_text("cough")
    expected = load_model(bundle).predict(str(clip))[0]
    bars = shown_bars(page)
    for name, p in expected["probabilities"].items():  # the page shows the library's numbers
        assert bars[name] == pytest.approx(p, abs=1e-6)
    sync_api.expect(page.locator("#score")).to_contain_text(f"{expected['score']:.2f}")
    page.screenshot(path=str(tmp_path / "uploaded.png"), full_page=True)


def test_a_file_that_is_not_audio_shows_an_error(page, tmp_path):
    fake = tmp_path / "notes.wav"
    fake.write_text("this is not a recording\n" * 10)
    page.set_input_files("#file", str(fake))
    error = page.locator("#error")
    sync_api.expect(error).to_be_visible()
    sync_api.expect(error).to_contain_text("not audio")
    sync_api.expect(page.locator("#result")).to_be_hidden()


def test_a_long_recording_shows_coughs_per_hour(page, tmp_path):
    from respira import testing

    y, _ = testing.scene(duration_s=6.0, events={"cough": 2}, seed=5)
    path = tmp_path / "night.wav"
    audio.write_wav(path, y, sample_rate=16000)
    page.check("#long")
    page.set_input_files("#file", str(path))
    sync_api.expect(page.locator("#detection")).to_be_visible()
    sync_api.expect(page.locator("#timeline")).to_be_visible()
    rows = page.locator("#events tbody tr")
    assert rows.count() >= 1  # threshold 0: every burst is an event
    per_hour = float(page.locator("#coughs-per-hour").inner_text())
    assert per_hour == pytest.approx(rows.count() / (6.0 / 3600), rel=1e-3)
    assert np.all(np.diff([float(rows.nth(i).locator("td").first.inner_text()) for i in range(rows.count())]) > 0)


def test_the_token_field_unlocks_a_guarded_server(browser, bundle, tmp_path):
    path = tmp_path / "clip.wav"
    audio.write_wav(path, 0.3 * np.sin(2 * np.pi * 440 * np.arange(16000) / 16000), sample_rate=16000)
    with running_server(ServerSettings(models=(str(bundle),), token="s3cret")) as url:
        context = browser.new_context()
        page = context.new_page()
        page.goto(url + "/")
        sync_api.expect(page.locator("#error")).to_contain_text("Missing API token")
        sync_api.expect(page.locator("#token")).to_be_visible()  # the token box opened itself
        page.fill("#token", "s3cret")
        page.locator("#token").blur()
        sync_api.expect(page.locator("#model option")).to_have_count(1)
        sync_api.expect(page.locator("#error")).to_be_hidden()
        page.set_input_files("#file", str(path))
        sync_api.expect(page.locator("#label")).to_have_text("cough")
        context.close()
