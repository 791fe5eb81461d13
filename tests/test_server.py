"""The HTTP API through the ASGI test client: every endpoint, every refusal, and the one-path guarantee
(the server's numbers are `Model.predict`'s and `detect_file`'s numbers for the same audio)."""

from __future__ import annotations

import asyncio
import base64
import io
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

fastapi = pytest.importorskip("fastapi")
from fastapi.testclient import TestClient  # noqa: E402

from respira import audio  # noqa: E402
from respira.bundle import BundleMeta, save_bundle  # noqa: E402
from respira.features import FeatureConfig  # noqa: E402
from respira.inference import load_model  # noqa: E402
from respira.testing import encode  # noqa: E402
from respira.models import build_model  # noqa: E402
from respira.server import ServerSettings, create_app, jobs  # noqa: E402
from respira.server.uploads import receive_upload  # noqa: E402

SR = 16000
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------- fixtures


def make_bundle(path: Path, *, classes=("cough", "other"), positive: str | None = "cough",
                decision: float = 0.5, seed: int = 0, task: str = "classification") -> Path:
    """A tiny untrained compact_cnn bundle (32 mels, 1-s clips): deterministic, meaningless scores."""
    cfg = FeatureConfig(n_mels=32, n_mfcc=13)
    params = {"n_classes": len(classes), "in_channels": 1, "n_bins": 32, "channels": [8, 16]}
    torch.manual_seed(seed)
    net = build_model("compact_cnn", **params).eval()
    meta = BundleMeta(task=task, classes=tuple(classes), positive=positive, features=cfg.to_dict(),
                      model={"name": "compact_cnn", "params": params}, clip_s=1.0,
                      thresholds={"decision": decision},
                      provenance={"metrics": {"balanced_accuracy": 0.5, "roc_auc": float("nan")}})
    save_bundle(path, [net], meta)
    return path


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("bundles")
    return {
        "tiny": make_bundle(d / "tiny.respira"),
        "always": make_bundle(d / "always.respira", decision=0.0),
        "never": make_bundle(d / "never.respira", decision=1.0),
        "vocal3": make_bundle(d / "vocal3.respira", classes=("cough", "laugh", "speech"), positive=None, seed=1),
    }


def serve(bundles: dict[str, Path], **settings) -> TestClient:
    names = settings.pop("models", ("tiny", "always", "never", "vocal3"))
    return TestClient(create_app(ServerSettings(models=tuple(str(bundles[n]) for n in names), **settings)))


@pytest.fixture(scope="module")
def client(bundles):
    with serve(bundles) as c:
        yield c


def tone(seconds: float, *, sr: int = SR, freq: float = 440.0, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def wav_bytes(y: np.ndarray, *, sr: int = SR) -> bytes:
    import soundfile as sf

    buffer = io.BytesIO()
    sf.write(buffer, y, sr, format="WAV", subtype="PCM_16")
    return buffer.getvalue()


def webm_opus_bytes(y: np.ndarray, *, sr: int = 48000) -> bytes:
    """Opus in WebM written to a non-seekable sink, as a browser's MediaRecorder makes it (no duration)."""
    av = pytest.importorskip("av")
    if "libopus" not in av.codecs_available:
        pytest.skip("PyAV has no libopus encoder here")
    return encode(y, sample_rate=sr, fmt="webm", codec="libopus")


def png_of(url: str) -> bytes:
    prefix = "data:image/png;base64,"
    assert url.startswith(prefix)
    png = base64.b64decode(url[len(prefix):], validate=True)
    assert png.startswith(PNG_MAGIC)
    width, height = int.from_bytes(png[16:20], "big"), int.from_bytes(png[20:24], "big")
    assert width >= 100 and height >= 100
    return png


# ----------------------------------------------------------------------------- service endpoints


def test_health_lists_the_models(client):
    r = client.get("/health")
    assert r.status_code == 200
    assert r.json() == {"status": "ok", "models": ["tiny", "always", "never", "vocal3"]}


def test_models_describe_each_bundle(client):
    r = client.get("/api/v1/models")
    assert r.status_code == 200
    by_name = {m["name"]: m for m in r.json()}
    assert list(by_name) == ["tiny", "always", "never", "vocal3"]
    tiny = by_name["tiny"]
    assert tiny == {"name": "tiny", "task": "classification", "classes": ["cough", "other"], "positive": "cough",
                    "threshold": 0.5, "sample_rate": 16000, "clip_seconds": 1.0,
                    "metrics": {"balanced_accuracy": 0.5, "roc_auc": None}}  # NaN is not JSON: null
    assert by_name["vocal3"]["positive"] is None


def test_page_and_static_files_are_served(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    html = page.text
    for element in ("record", "stop", "file", "label", "probabilities", "waveform", "mfcc", "mel", "error", "status"):
        assert f'id="{element}"' in html
    assert "http://" not in html and "https://" not in html  # nothing loads from elsewhere
    for asset, kind in (("app.js", "javascript"), ("style.css", "text/css")):
        r = client.get(f"/static/{asset}")
        assert r.status_code == 200 and kind in r.headers["content-type"]
        assert "http://" not in r.text and "https://" not in r.text


def test_openapi_documents_the_upload_and_the_answers(client):
    spec = client.get("/openapi.json").json()
    predict = spec["paths"]["/api/v1/predict"]["post"]
    assert "file" in predict["requestBody"]["content"]["multipart/form-data"]["schema"]["properties"]
    assert {"200", "400", "404", "413", "415", "422"} <= set(predict["responses"])
    assert "Prediction" in spec["components"]["schemas"] and "Detection" in spec["components"]["schemas"]


# ----------------------------------------------------------------------------- /predict


def test_predict_raw_body_equals_model_predict(client, bundles):
    wav = wav_bytes(tone(2.5, sr=44100), sr=44100)  # resampled on the way in
    r = client.post("/api/v1/predict", content=wav, headers={"Content-Type": "application/octet-stream"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"model", "label", "score", "probabilities", "duration_s", "diagnosis"}
    assert answer["model"] == "tiny"  # the default: the first model
    assert sum(answer["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
    expected = load_model(bundles["tiny"]).predict(wav)[0]
    assert answer["label"] == expected["label"]
    assert answer["score"] == pytest.approx(expected["score"], abs=1e-6)
    assert answer["duration_s"] == pytest.approx(expected["duration_s"]) == pytest.approx(2.5)
    for c, p in expected["probabilities"].items():
        assert answer["probabilities"][c] == pytest.approx(p, abs=1e-6)


def test_multipart_and_raw_bodies_give_the_same_answer(client):
    wav = wav_bytes(tone(1.5, freq=900.0))
    raw = client.post("/api/v1/predict?model=vocal3", content=wav).json()
    form = client.post("/api/v1/predict?model=vocal3",
                       files={"file": ("clip.mp3", wav, "audio/mpeg")},  # the name and type are not trusted
                       data={"note": "extra fields are ignored"}).json()
    assert form == raw
    assert raw["model"] == "vocal3" and "diagnosis" not in raw  # not a binary model
    assert raw["label"] in ("cough", "laugh", "speech")
    assert raw["score"] == pytest.approx(max(raw["probabilities"].values()))


def test_browser_webm_opus_upload(client, bundles):
    webm = webm_opus_bytes(tone(3.0, sr=48000))
    r = client.post("/api/v1/predict", content=webm, headers={"Content-Type": "audio/webm;codecs=opus"})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["duration_s"] == pytest.approx(3.0, abs=0.05)
    expected = load_model(bundles["tiny"]).predict(webm)[0]
    assert answer["score"] == pytest.approx(expected["score"], abs=1e-6)


def test_quality_warnings_come_with_the_answer(client):
    silent = client.post("/api/v1/predict", content=wav_bytes(np.zeros(SR, np.float32))).json()
    assert silent["warnings"] == ["silent"]
    clipped = client.post("/api/v1/predict", content=wav_bytes(np.sign(tone(1.0)))).json()
    assert clipped["warnings"][0].startswith("clipped")


def test_images_are_png_data_urls(client):
    r = client.post("/api/v1/predict?images=true", content=wav_bytes(tone(2.0)))
    assert r.status_code == 200
    images = r.json()["images"]
    assert set(images) == {"waveform", "mfcc", "mel", "probabilities"}
    pngs = {name: png_of(url) for name, url in images.items()}
    assert len(set(pngs.values())) == 4
    no_images = client.post("/api/v1/predict?images=false", content=wav_bytes(tone(2.0))).json()
    assert "images" not in no_images


def test_diagnosis_follows_the_decision_threshold(client):
    wav = wav_bytes(tone(1.0))
    always = client.post("/api/v1/predict?model=always", content=wav).json()
    never = client.post("/api/v1/predict?model=never", content=wav).json()
    tiny = client.post("/api/v1/predict?model=tiny", content=wav).json()
    assert (always["diagnosis"], always["label"]) == ("cough", "cough")
    assert (never["diagnosis"], never["label"]) == ("not cough", "other")
    assert always["score"] == never["score"] == tiny["score"]  # same weights, same positive-class probability
    assert tiny["diagnosis"] == ("cough" if tiny["score"] >= 0.5 else "not cough")


def test_regression_models_answer_a_value(bundles, tmp_path):
    path = make_bundle(tmp_path / "rate.respira", classes=("coughs_per_minute",), positive=None, task="regression")
    wav = wav_bytes(tone(1.2))
    with serve({"rate": path}, models=("rate",)) as c:
        r = c.post("/api/v1/predict?images=true", content=wav)
    assert r.status_code == 200, r.text
    answer = r.json()
    assert set(answer) == {"model", "value", "duration_s", "images"}
    assert answer["value"] == pytest.approx(load_model(path).predict(wav)[0]["value"], abs=1e-6)
    assert set(answer["images"]) == {"waveform", "mfcc", "mel"}  # no probabilities to draw


def test_an_unexpected_failure_is_a_bare_500(bundles, monkeypatch):
    def broken(model, data, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(jobs, "predict", broken)
    app = create_app(ServerSettings(models=(str(bundles["tiny"]),)))
    with TestClient(app, raise_server_exceptions=False) as c:
        r = c.post("/api/v1/predict", content=wav_bytes(tone(0.5)))
    assert r.status_code == 500
    assert r.json() == {"error": "internal server error (see the server log)"}


# ----------------------------------------------------------------------------- /detect


def test_detect_equals_detect_file(client, bundles, tmp_path):
    from respira import testing
    from respira.detect import DetectConfig, detect_file

    y, planted = testing.scene(duration_s=8.0, events={"cough": 3}, seed=3)
    path = tmp_path / "night.wav"
    audio.write_wav(path, y, sample_rate=SR)
    r = client.post("/api/v1/detect?model=always&images=true", files={"file": ("night.wav", path.read_bytes())})
    assert r.status_code == 200, r.text
    answer = r.json()
    assert answer["model"] == "always" and answer["duration_s"] == pytest.approx(8.0)
    summary = answer["summary"]
    assert set(summary) == {"coughs", "bouts", "coughs_per_hour", "hours_analysed", "hours_active"}
    assert summary["hours_analysed"] == pytest.approx(8 / 3600, abs=1e-4)
    assert summary["coughs"] == len(answer["events"]) and 1 <= summary["bouts"] <= summary["coughs"]
    assert 0 < summary["hours_active"] <= summary["hours_analysed"]
    assert answer["threshold"] == answer["settings"]["threshold"] == 0.0  # the model's decision threshold
    expected = detect_file(path, load_model(bundles["always"]), DetectConfig(threshold=0.0)).events
    assert len(expected) >= 1
    got = [(e["start"], e["end"], e["label"], e["score"]) for e in answer["events"]]
    assert got == [(round(e.start, 3), round(e.end, 3), e.label, round(e.score, 4)) for e in expected]
    for e in answer["events"]:
        assert 0 <= e["start"] < e["end"] <= 8.0 and e["label"] == "cough"
    png_of(answer["images"]["timeline"])


def test_detect_removes_its_temporary_file_and_hides_its_path(bundles, tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    with serve(bundles) as c:
        ok = c.post("/api/v1/detect", content=wav_bytes(tone(2.0)))
        bad = c.post("/api/v1/detect", content=b"\x00\x01garbage" * 100)
    assert ok.status_code == 200 and "images" not in ok.json()
    assert bad.status_code == 415
    assert bad.json()["error"].startswith("upload") and str(tmp_path) not in bad.json()["error"]
    assert list(tmp_path.iterdir()) == []


def test_detect_uses_the_served_settings_and_answers_with_them(bundles):
    body = wav_bytes(tone(2.0))
    with serve(bundles, detect={"threshold": 0.7, "hop_s": 0.5}) as c:
        served = c.post("/api/v1/detect?model=always", content=body).json()
        asked = c.post("/api/v1/detect?model=always&threshold=0.2", content=body).json()
    assert (served["threshold"], served["settings"]["threshold"], served["settings"]["hop_s"]) == (0.7, 0.7, 0.5)
    assert (asked["threshold"], asked["settings"]["hop_s"]) == (0.2, 0.5)  # the request's threshold wins


def test_detect_needs_a_binary_model(client):
    r = client.post("/api/v1/detect?model=vocal3", content=wav_bytes(tone(1.0)))
    assert r.status_code == 400
    assert "binary" in r.json()["error"]


# ----------------------------------------------------------------------------- refusals


@pytest.mark.parametrize("body, status, words", [
    (b"", 400, "empty request body"),
    (b"just some text, not audio\n" * 20, 415, "not audio"),
    (bytes(np.random.default_rng(0).integers(0, 256, 4000, dtype=np.uint8)), 415, "not a recognised audio format"),
    (wav_bytes(tone(1.0))[:44], 415, "truncated"),
])
def test_bad_bodies_get_json_errors(client, body, status, words):
    r = client.post("/api/v1/predict", content=body)
    assert r.status_code == status
    assert r.headers["content-type"] == "application/json"
    assert words in r.json()["error"]


def test_multipart_without_the_file_field(client):
    r = client.post("/api/v1/predict", files={"audio": ("x.wav", wav_bytes(tone(1.0)))})
    assert r.status_code == 400 and "no field 'file'" in r.json()["error"]
    r = client.post("/api/v1/predict", files={"file": ("x.wav", b"")})
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = client.post("/api/v1/predict", content=b"--x\r\n", headers={"Content-Type": "multipart/form-data"})
    assert r.status_code == 400 and "boundary" in r.json()["error"]


def test_unknown_model_is_404_and_never_a_path(client):
    for name in ("nope", "../tiny", str(Path(tempfile.gettempdir()) / "tiny.respira")):
        r = client.post("/api/v1/predict", params={"model": name}, content=wav_bytes(tone(1.0)))
        assert r.status_code == 404
        assert "unknown model" in r.json()["error"] and "tiny" in r.json()["error"]


def test_bad_parameters_and_paths_are_json(client):
    r = client.post("/api/v1/predict?images=perhaps", content=wav_bytes(tone(1.0)))
    assert r.status_code == 422 and "images" in r.json()["error"]
    assert client.get("/api/v1/nothing").json() == {"error": "Not Found"}
    r = client.get("/api/v1/predict")
    assert r.status_code == 405 and "error" in r.json()


def test_too_large_by_content_length_and_by_counting(bundles):
    wav = wav_bytes(tone(2.0))  # 64 kB
    with serve(bundles, max_upload_mb=0.01) as c:
        declared = c.post("/api/v1/predict", content=wav)
        assert declared.status_code == 413 and "too large" in declared.json()["error"]

        def chunks():  # no Content-Length: sent chunked, counted as it arrives
            for i in range(0, len(wav), 4096):
                yield wav[i:i + 4096]

        chunked = c.post("/api/v1/predict", content=chunks())
        assert chunked.status_code == 413
        multipart = c.post("/api/v1/detect", files={"file": ("x.wav", wav)})
        assert multipart.status_code == 413
        small = c.post("/api/v1/predict", content=wav_bytes(tone(0.2)))
        assert small.status_code == 200


def test_a_lying_content_length_is_cut_off_at_the_limit():
    """receive_upload counts what arrives: a client declaring 10 bytes and sending 1 MB stops at the limit."""
    from starlette.requests import Request

    from respira.server.api_errors import ApiError

    sent = []

    async def receive():
        sent.append(1)
        return {"type": "http.request", "body": b"\0" * 65536, "more_body": len(sent) < 16}

    scope = {"type": "http", "method": "POST", "path": "/", "headers": [(b"content-length", b"10")]}
    kept = bytearray()
    with pytest.raises(ApiError) as e:
        asyncio.run(receive_upload(Request(scope, receive), kept.extend, limit=100_000))
    assert e.value.status == 413
    assert len(kept) <= 100_000 and len(sent) == 2  # stopped at the chunk that crossed the limit


def test_too_long_audio_is_422(bundles):
    with serve(bundles, max_predict_s=1.0, max_detect_s=1.5) as c:
        assert c.post("/api/v1/predict", content=wav_bytes(tone(0.9))).status_code == 200
        r = c.post("/api/v1/predict", content=wav_bytes(tone(2.0)))
        assert r.status_code == 422 and "too long" in r.json()["error"]
        webm = c.post("/api/v1/predict", content=webm_opus_bytes(tone(2.0, sr=48000)))  # no length in the header
        assert webm.status_code == 422
        r = c.post("/api/v1/detect", content=wav_bytes(tone(2.0)))
        assert r.status_code == 422 and "too long" in r.json()["error"]


def test_token_guards_the_api_but_not_the_page(bundles):
    wav = wav_bytes(tone(1.0))
    with serve(bundles, models=("tiny",), token="s3cret") as c:
        assert c.get("/health").status_code == 200
        assert c.get("/").status_code == 200
        missing = c.post("/api/v1/predict", content=wav)
        assert missing.status_code == 401 and "missing API token" in missing.json()["error"]
        assert missing.headers["www-authenticate"] == "Bearer"
        wrong = c.get("/api/v1/models", headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json() == {"error": "wrong API token"}
        right = c.post("/api/v1/predict", content=wav, headers={"Authorization": "Bearer s3cret"})
        assert right.status_code == 200 and right.json()["model"] == "tiny"


def test_token_from_the_environment(monkeypatch):
    monkeypatch.setenv("RESPIRA_API_TOKEN", "from-env")
    assert ServerSettings().token == "from-env"
    assert ServerSettings(token="given").token == "given"
    monkeypatch.setenv("RESPIRA_API_TOKEN", "")
    assert ServerSettings().token is None


def test_bad_settings_and_duplicate_model_names(bundles):
    from respira.errors import ConfigError, ModelError

    with pytest.raises(ConfigError, match="workers"):
        ServerSettings(models=("x",), workers=0)
    with pytest.raises(ConfigError, match="two models are named 'tiny'"):
        create_app(ServerSettings(models=(str(bundles["tiny"]), str(bundles["tiny"]))))
    with pytest.raises(ModelError, match="not found"):
        create_app(ServerSettings(models=(str(bundles["tiny"].with_name("missing.respira")),)))


def test_queue_full_is_503(bundles, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def stuck(model, data, **kwargs):
        started.set()
        release.wait(10)
        return {"model": model.name, "duration_s": 0.0}

    monkeypatch.setattr(jobs, "predict", stuck)
    wav = wav_bytes(tone(0.5))
    with serve(bundles, models=("tiny",), workers=1, max_queue=0) as c:
        first = threading.Thread(target=c.post, args=("/api/v1/predict",), kwargs={"content": wav})
        first.start()
        try:
            assert started.wait(5)
            r = c.post("/api/v1/predict", content=wav)
            assert r.status_code == 503 and r.headers["retry-after"] == "1" and "busy" in r.json()["error"]
            assert c.get("/health").status_code == 200
        finally:
            release.set()
            first.join()
        assert c.post("/api/v1/predict", content=wav).status_code == 200  # the place is free again


def test_health_answers_while_a_worker_is_busy(bundles, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def slow(model, data, **kwargs):  # holds a worker thread (and the GIL now and then) like a real job
        started.set()
        end = time.monotonic() + 5
        while not release.is_set() and time.monotonic() < end:
            sum(range(10_000))
        return {"model": model.name, "duration_s": 0.0}

    monkeypatch.setattr(jobs, "predict", slow)
    with serve(bundles, models=("tiny",)) as c:
        worker = threading.Thread(target=c.post, args=("/api/v1/predict",), kwargs={"content": wav_bytes(tone(0.5))})
        worker.start()
        try:
            assert started.wait(5)
            latencies = []
            for _ in range(5):
                t0 = time.perf_counter()
                assert c.get("/health").status_code == 200
                latencies.append(time.perf_counter() - t0)
            assert worker.is_alive()  # the job was still running throughout
            assert sorted(latencies)[len(latencies) // 2] < 0.1, latencies  # the median
        finally:
            release.set()
            worker.join()


# ----------------------------------------------------------------------------- the command


def test_serve_refuses_an_open_network_address_without_a_token(capsys):
    from respira.cli import main
    from respira.cli.serve_cmd import is_loopback

    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.org")
    with pytest.raises(SystemExit) as e:
        main(["serve", "--host", "0.0.0.0", "--model", "whatever"])
    assert e.value.code == 2
    assert "without a token" in capsys.readouterr().err


def test_serve_exits_2_when_a_model_is_missing(tmp_path, capsys):
    from respira.cli import main

    with pytest.raises(SystemExit) as e:
        main(["serve", "--model", str(tmp_path / "absent.respira")])
    assert e.value.code == 2
    assert "absent.respira" in capsys.readouterr().err


def test_the_mfcc_picture_shows_every_coefficient_and_says_it_is_standardised(client):
    import matplotlib.image as mpimg

    assert "MFCC, each coefficient standardised over time" in client.get("/").text
    y = np.concatenate([tone(1.0, freq=300.0), 0.3 * tone(1.0, freq=3000.0, seed=1)])
    images = client.post("/api/v1/predict?images=true", content=wav_bytes(y)).json()["images"]
    rgb = mpimg.imread(io.BytesIO(png_of(images["mfcc"])), format="png")[..., :3]
    blue, red = (rgb[..., 2] - rgb[..., 0] > 0.25).mean(), (rgb[..., 0] - rgb[..., 2] > 0.25).mean()
    assert blue > 0.1 and red > 0.1, (blue, red)  # drawn raw, coefficient 0 alone was blue
