"""The live night monitor's WebSocket through the ASGI test client: a night streamed in numbered
blocks gives the events of `respira detect` on the same audio and lands in the store; a dropped
connection resumed with resent blocks loses and doubles nothing; refusals are clear."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("fastapi")
from detect_stub import PlantedScorer  # noqa: E402
from fastapi.testclient import TestClient  # noqa: E402
from starlette.websockets import WebSocketDisconnect  # noqa: E402
from test_server import make_bundle  # noqa: E402

from respira import audio, store  # noqa: E402
from respira.detect import DetectConfig, detect_array  # noqa: E402
from respira.inference import load_model  # noqa: E402
from respira.server import ServerSettings, create_app  # noqa: E402
from respira.server import app as app_module  # noqa: E402
from respira.server.live import PATH, SEQ  # noqa: E402
from respira.testing import scene  # noqa: E402

SR = 16000


@pytest.fixture(scope="module")
def night() -> tuple[np.ndarray, list]:
    """40 s with 6 planted coughs and 2 speech bursts (16 kHz)."""
    return scene(duration_s=40.0, events={"cough": 6, "speech": 2}, seed=11)


@pytest.fixture()
def stub_client(night, tmp_path, monkeypatch):
    """A server whose only model is the stub that knows the planted sounds; its db in tmp_path."""
    y, planted = night
    scorer = PlantedScorer(y, planted)
    monkeypatch.setattr(app_module, "load_models", lambda names: {"stub": scorer})
    with TestClient(create_app(ServerSettings(models=("stub",), db=str(tmp_path / "live.sqlite")))) as client:
        client.scorer = scorer
        yield client


def blocks_of(y: np.ndarray, seconds: float, sr: int = SR) -> list[np.ndarray]:
    size = round(seconds * sr)
    return [y[i: i + size] for i in range(0, len(y), size)]


def send(ws, blocks: list[np.ndarray], first: int = 0) -> None:
    for seq, block in enumerate(blocks[first:], first):
        ws.send_bytes(SEQ.pack(seq) + block.tobytes())


def read_until(ws, kind: str, events: list, seq: int | None = None) -> dict:
    """Read messages, collecting events, up to the first `kind` (an ack: of block `seq` or later)."""
    while True:
        m = ws.receive_json()
        assert m["type"] != "error", m["message"]
        if m["type"] == "event":
            events.append(m)
        elif m["type"] == kind and (seq is None or m["seq"] >= seq):
            return m


def hello(**fields) -> dict:
    return {"type": "hello", "sample_rate": SR, "format": "f32le", **fields}


def finish(ws, events: list) -> dict:
    ws.send_json({"type": "end"})
    return read_until(ws, "ended", events)["session"]


def times(events) -> list[tuple[float, float, float]]:
    return [(e["start"], e["end"], e["score"]) if isinstance(e, dict) else (e.start, e.end, e.score) for e in events]


def test_a_streamed_night_gives_the_events_of_detect_and_is_stored(stub_client, night, tmp_path, capsys):
    y, planted = night
    expected = detect_array(y, stub_client.scorer, DetectConfig(threshold=0.5)).events
    assert len(expected) == 6
    events: list = []
    with stub_client.websocket_connect(PATH) as ws:
        ws.send_json(hello(name="bedroom"))
        state = ws.receive_json()
        assert (state["type"], state["next_seq"], state["events"], state["sample_rate"]) == ("session", 0, [], SR)
        blocks = blocks_of(y, 0.7)
        send(ws, blocks)
        ack = read_until(ws, "ack", events, len(blocks) - 1)
        assert ack["seconds"] == pytest.approx(40.0) and ack["events"] == len(events) >= 5  # out while streaming
        session = finish(ws, events)
    assert times(events) == times(expected)
    assert all(e["label"] == "cough" and e["wall_time"] > session["started_at"] for e in events)
    con = store.connect(tmp_path / "live.sqlite", create=False)
    stored = store.find_session(con, "bedroom")
    assert (stored.id, stored.status, stored.source, stored.events, stored.seconds_analysed) == \
        (state["id"], "finished", "browser", 6, pytest.approx(40.0))
    assert stored.params["source"] == {"kind": "browser", "format": "f32le", "sample_rate": SR, "channels": 1}
    rows = store.events(con, stored.id)
    assert times(r.to_event("browser") for r in rows) == times(expected)
    assert [r.wall_time for r in rows] == [e["wall_time"] for e in events] and all(r.snippet is None for r in rows)

    from respira.cli import main

    with pytest.raises(SystemExit) as code:
        main(["report", "bedroom", "--db", str(tmp_path / "live.sqlite"), "-o", str(tmp_path / "report")])
    assert code.value.code == 0
    assert json.loads((tmp_path / "report" / "summary.json").read_text())["coughs"] == 6


def test_a_dropped_connection_resumes_without_loss_or_doubles(stub_client, night, tmp_path):
    y, planted = night
    expected = detect_array(y, stub_client.scorer, DetectConfig(threshold=0.5)).events
    blocks = blocks_of(y, 0.5)
    before: list = []
    with stub_client.websocket_connect(PATH) as ws:
        ws.send_json(hello(keep_snippets=True))
        session_id = ws.receive_json()["id"]
        send(ws, blocks[:50])
        acked = read_until(ws, "ack", before, 30)["seq"]  # then the line drops, blocks still in flight
    assert 30 <= acked < 50 and before
    after: list = []
    with stub_client.websocket_connect(PATH) as ws:
        ws.send_json(hello(session=session_id))
        state = ws.receive_json()
        assert state["type"] == "session" and state["id"] == session_id
        assert acked < state["next_seq"] <= 50 and times(state["events"][: len(before)]) == times(before)
        send(ws, blocks, first=acked + 1)  # what was not acknowledged, some of it processed already
        assert read_until(ws, "ack", after, len(blocks) - 1)["seconds"] == pytest.approx(40.0)
        finish(ws, after)
    assert times(state["events"] + after) == times(expected)
    con = store.connect(tmp_path / "live.sqlite", create=False)
    rows = store.events(con, session_id)
    assert times(r.to_event("browser") for r in rows) == times(expected)
    assert store.session_by_id(con, session_id).seconds_analysed == pytest.approx(40.0)
    assert all(r.snippet is not None for r in rows)  # asked for: each event's audio, nothing else


def test_a_48k_int16_stream_gives_the_events_of_detect_on_the_same_audio(night, tmp_path):
    y, _ = night
    bundle = make_bundle(tmp_path / "tiny.respira")
    pcm = np.round(np.clip(audio.resample(y, orig_sample_rate=SR, sample_rate=48000), -1, 1) * 32767).astype("<i2")
    wav = tmp_path / "night48k.wav"
    audio.write_wav(wav, pcm / 32768, sample_rate=48000)
    model = load_model(bundle)
    expected = detect_array(audio.load(wav, sample_rate=SR), model, DetectConfig(threshold=0.0)).events
    settings = ServerSettings(models=(str(bundle),), db=str(tmp_path / "live.sqlite"), detect={"threshold": 0.0})
    events: list = []
    with TestClient(create_app(settings)) as client, client.websocket_connect(PATH) as ws:
        ws.send_json({"type": "hello", "sample_rate": 48000, "format": "s16le"})
        assert ws.receive_json()["threshold"] == 0.0
        send(ws, blocks_of(pcm, 0.5, sr=48000))
        session = finish(ws, events)
    assert session["seconds_analysed"] == pytest.approx(40.0, abs=1e-3)
    hop = DetectConfig().hop_s
    assert len(events) == len(expected) >= 6
    for got, want in zip(events, expected):
        assert abs(got["start"] - want.start) <= hop and abs(got["end"] - want.end) <= hop


def test_refusals_are_reported_to_the_page(stub_client, night):
    y, _ = night

    def refused(first: dict, *then: bytes) -> dict:
        with stub_client.websocket_connect(PATH) as ws:
            ws.send_json(first)
            if then:
                assert ws.receive_json()["type"] == "session"
                for data in then:
                    ws.send_bytes(data)
            acks = []
            while (message := ws.receive_json())["type"] == "ack":
                acks.append(message["seq"])
            with pytest.raises(WebSocketDisconnect) as closed:
                ws.receive_json()
        assert message["type"] == "error"
        return message | {"code": closed.value.code, "acks": acks}

    block = y[:8000].tobytes()
    gap = refused(hello(), SEQ.pack(0) + block, SEQ.pack(0) + block, SEQ.pack(2) + block)
    assert gap["acks"] == [0, 0]  # a block processed already is acknowledged again, not processed
    assert gap["code"] == 4409 and gap["expected"] == 1 and "audio is missing" in gap["message"]
    assert "not open" in refused(hello(session=999))["message"]
    assert "sample_rate" in refused(hello(sample_rate=100))["message"]
    assert "format" in refused(hello(format="u8"))["message"]
    assert "hello" in refused({"type": "block"})["message"]
    assert "whole f32le samples" in refused(hello(), SEQ.pack(0) + b"abc")["message"]


def test_a_guarded_server_wants_the_token_in_the_hello(stub_client, tmp_path):
    settings = ServerSettings(models=("stub",), token="s3cret", db=str(tmp_path / "guarded.sqlite"))
    with TestClient(create_app(settings)) as client:
        with client.websocket_connect(PATH) as ws:
            ws.send_json(hello(token="wrong"))
            assert "wrong API token" in ws.receive_json()["message"]
        with client.websocket_connect(PATH) as ws:
            ws.send_json(hello(token="s3cret"))
            assert ws.receive_json()["type"] == "session"


def test_the_page_is_served_and_the_api_description_names_it(stub_client):
    page = stub_client.get("/live")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/static/live.js" in page.text and "default-src 'self'" in page.headers["content-security-policy"]
    for static in ("live.js", "live-worklet.js", "live.css"):
        assert stub_client.get(f"/static/{static}").status_code == 200
    description = stub_client.get("/openapi.json").json()["info"]["description"]
    assert "/live" in description and PATH in description
