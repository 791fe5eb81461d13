"""The long-recording detector: planted coughs found at their times, nothing in silence, noise or
speech, the same result whatever the block size, resuming, the night summary and report, the CLI."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from detect_stub import PlantedScorer

from respira import audio
from respira.detect import DetectConfig, detect_array, detect_file, group_bouts
from respira.detect.night_report import night_report_html, summary, timeline_png
from respira.testing import Event, babble, cough, noise_bed, scene, write_night

SR = 16000


def _matches(found, planted, *, tolerance=0.15):
    """Each planted cough has exactly one event whose onset is within `tolerance` s of its own."""
    assert len(found) == len(planted), (found, planted)
    for e, p in zip(found, planted):
        assert abs(e.start - p.start) <= tolerance, (e, p)
        assert p.start - tolerance < e.end <= p.end + 0.02, (e, p)  # on the cough, not a window long


def test_planted_coughs_are_found_at_their_times_and_speech_is_not():
    y, planted = scene(duration_s=120.0, events={"cough": 8, "speech": 4}, seed=1)
    result = detect_array(y, PlantedScorer(y, planted), DetectConfig(), file="scene.wav")
    coughs = [p for p in planted if p.label == "cough"]
    _matches(result.events, coughs, tolerance=0.03)
    assert all(e.score == pytest.approx(1.0) and e.label == "cough" and e.file == "scene.wav" for e in result.events)
    assert result.duration_s == 120.0 and len(result.scores) == 477  # windows of 1 s every 0.25 s
    assert [round(c.score, 3) for c in result.candidates if c.score < 0.5]  # speech: candidates below the threshold


def test_a_bout_of_three_close_coughs_gives_three_events_and_one_bout():
    rng = np.random.default_rng(7)
    y = noise_bed(sample_rate=SR, rng=rng, duration_s=12.0).astype(np.float64)
    planted, t = [], 4.0
    for gap in (0.4, 0.15, 0.0):
        c = cough(sample_rate=SR, rng=rng) * 10 ** (-14 / 20)
        y[round(t * SR): round(t * SR) + len(c)] += c
        planted.append(Event(t, t + len(c) / SR, "cough"))
        t += len(c) / SR + gap
    y = y.astype(np.float32)
    result = detect_array(y, PlantedScorer(y, planted), DetectConfig())
    _matches(result.events, planted, tolerance=0.03)
    (bout,) = group_bouts(result.events, gap_s=DetectConfig().bout_gap_s)
    assert bout.count == 3


def test_a_word_after_a_cough_does_not_take_the_cough_s_score():
    rng = np.random.default_rng(5)
    y = noise_bed(sample_rate=SR, rng=rng, duration_s=10.0).astype(np.float64)
    c = cough(sample_rate=SR, rng=rng) * 10 ** (-14 / 20)
    word = babble(sample_rate=SR, rng=rng, duration_s=0.2) * 10 ** (-14 / 20)
    after = 4.0 + len(c) / SR + 0.5  # the word: in 1-s windows that hold part of the cough
    y[4 * SR: 4 * SR + len(c)] += c
    y[round(after * SR): round(after * SR) + len(word)] += word
    planted = [Event(4.0, 4.0 + len(c) / SR, "cough"), Event(after, after + len(word) / SR, "speech")]
    y = y.astype(np.float32)
    result = detect_array(y, PlantedScorer(y, planted), DetectConfig())
    _matches(result.events, planted[:1], tolerance=0.03)
    (word_burst,) = [c for c in result.candidates if c.start > after - 0.1]
    assert word_burst.score == pytest.approx(0.3)  # the windows centred on the word, not the ones reaching back to the cough


@pytest.mark.parametrize("kind", ["silence", "noise", "speech"])
def test_no_events_in_silence_steady_noise_or_speech(kind):
    rng = np.random.default_rng(2)
    planted: list = []
    if kind == "silence":
        y = np.zeros(60 * SR, np.float32)
    elif kind == "noise":
        y = noise_bed(sample_rate=SR, rng=rng, duration_s=60.0, level_db=-30.0, color="white")
    else:
        y, planted = scene(duration_s=60.0, events={"speech": 12}, seed=2)
    scorer = PlantedScorer(y, planted)
    result = detect_array(y, scorer, DetectConfig())
    assert result.events == []
    if kind == "speech":
        assert result.active_s > 10 and result.candidates  # the gate opens for speech; the scores keep it out
    else:
        assert result.active_s == 0 and scorer.calls == 0  # the gate stays closed: nothing is scored


@pytest.fixture(scope="module")
def night_wav(tmp_path_factory) -> tuple[Path, list, np.ndarray]:
    path = tmp_path_factory.mktemp("night") / "night.wav"
    planted = write_night(path, hours=0.05, coughs_per_hour=100, seed=3)  # 3 min, 5 coughs
    return path, planted, audio.load(path, sample_rate=SR)


def test_a_file_streamed_in_5_s_blocks_equals_60_s_blocks(night_wav):
    path, planted, y = night_wav
    scorer = PlantedScorer(y, planted)
    big = detect_file(path, scorer, DetectConfig(block_s=60.0))
    small = detect_file(path, scorer, DetectConfig(block_s=5.0))
    _matches(big.events, planted)
    assert len(small.events) == len(big.events) == 5
    for a, b in zip(small.events, big.events):
        assert abs(a.start - b.start) <= 0.01 and abs(a.end - b.end) <= 0.01 and a.score == b.score
    assert np.array_equal(small.scores, big.scores) and small.active_s == big.active_s
    assert big.duration_s == pytest.approx(180.0)


def test_a_killed_run_resumes_after_its_last_block(night_wav, tmp_path):
    path, planted, y = night_wav
    scorer = PlantedScorer(y, planted)
    cfg = DetectConfig(block_s=20.0)
    whole = detect_file(path, scorer, cfg)
    whole_calls, scorer.calls = scorer.calls, 0
    seen = []

    def killed_after_four_blocks(seconds: float) -> None:
        seen.append(seconds)
        if len(seen) == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        detect_file(path, scorer, cfg, checkpoint=tmp_path / "ckpt", progress=killed_after_four_blocks)
    first_calls, scorer.calls = scorer.calls, 0
    assert (tmp_path / "ckpt" / "state.npz").is_file()
    done = []
    resumed = detect_file(path, scorer, cfg, checkpoint=tmp_path / "ckpt", progress=done.append)
    assert sum(done) == pytest.approx(180.0)  # skipped blocks still advance the progress
    assert first_calls + scorer.calls == whole_calls  # no window is scored twice
    assert [(e.start, e.end, e.score) for e in resumed.events] == [(e.start, e.end, e.score) for e in whole.events]
    assert np.array_equal(resumed.scores, whole.scores) and resumed.active_s == whole.active_s
    assert not (tmp_path / "ckpt").exists()  # removed once the file is done


def test_summary_timeline_and_report(night_wav, tmp_path):
    path, planted, y = night_wav
    cfg = DetectConfig()
    result = detect_file(path, PlantedScorer(y, planted), cfg)
    quiet = detect_array(np.zeros(30 * SR, np.float32), PlantedScorer(np.zeros(0), []), cfg, file="quiet.wav")
    s = summary([result, quiet], model="stub", cfg=cfg)
    hours = 0.05 + 30 / 3600
    assert (s["coughs"], s["model"], s["threshold"]) == (5, "stub", 0.5)
    assert s["bouts"] == len(group_bouts(result.events, gap_s=cfg.bout_gap_s))
    assert s["hours_analysed"] == pytest.approx(hours, abs=1e-4)
    assert s["coughs_per_hour"] == pytest.approx(5 / hours, abs=1e-3)
    assert 0 < s["hours_active"] < 0.1 * hours
    assert [f["path"] for f in s["files"]] == [str(path), "quiet.wav"]
    assert s["files"][0]["coughs_per_hour"] == pytest.approx(100.0, abs=0.01) and s["files"][0]["per_hour"] == [5]
    assert s["files"][1]["coughs"] == 0 and s["settings"]["gate_db"] == cfg.gate_db
    png = timeline_png(result, tmp_path / "t.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    html = night_report_html(s, [result, quiet], tmp_path).read_text()
    assert html.count("data:image/png;base64,") == 2 and "src=\"http" not in html
    assert html.count("<tr>") >= 1 + 5 and f"{result.events[0].start:.3f}" in html


# --- the CLI, with a tiny untrained model ----------------------------------------------------


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    from respira.bundle import BundleMeta, save_bundle
    from respira.features import FeatureConfig
    from respira.models import build_model

    import torch

    torch.manual_seed(0)
    params = {"n_classes": 2, "in_channels": 1, "n_bins": 64, "channels": [8, 8]}
    meta = BundleMeta(task="classification", classes=("cough", "other"), positive="cough",
                      features=FeatureConfig().to_dict(), model={"name": "compact_cnn", "params": params}, clip_s=1.0)
    path = tmp_path_factory.mktemp("model") / "tiny.respira"
    save_bundle(path, [build_model("compact_cnn", **params).eval()], meta)
    return path


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from respira.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def test_cli_detect_writes_every_output_and_resumes(bundle, tmp_path, capsys, monkeypatch):
    rec = tmp_path / "rec"
    rec.mkdir()
    audio.write_wav(rec / "one.wav", scene(duration_s=20.0, events={"cough": 3}, seed=4)[0], sample_rate=SR)
    audio.write_wav(rec / "two.wav", scene(duration_s=8.0, events={"cough": 2}, seed=5)[0], sample_rate=SR)
    (rec / "broken.wav").write_text("not audio")
    out = tmp_path / "out"
    code, stdout, stderr = _cli(capsys, "detect", str(rec), "--model", str(bundle), "--threshold", "0", "-o", str(out))
    assert code == 1 and "broken.wav" in stderr and "report.html" in stdout  # the broken file fails, the others run
    for name in ("events.csv", "candidates.csv", "events.json", "summary.json", "report.html", "params.json",
                 "audacity/one.txt", "raven/two.txt", "timeline/one.png", "timeline/two.png"):
        assert (out / name).is_file(), name
    with open(out / "events.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "start", "end", "label", "score"] and {r["label"] for r in rows} == {"cough"}
    assert {Path(r["file"]).name for r in rows} == {"one.wav", "two.wav"}  # threshold 0: every burst is an event
    s = json.loads((out / "summary.json").read_text())
    assert s["coughs"] == len(rows) and s["hours_analysed"] == pytest.approx(28 / 3600, abs=1e-4) and s["threshold"] == 0
    params = json.loads((out / "params.json").read_text())
    assert params["model"] == str(bundle) and params["settings"]["hop_s"] == 0.25 and params["window_s"] == 1.0
    assert [f["file"] for f in params["failed"]] == [str(rec / "broken.wav")]

    import respira.detect.job

    def no_detection(*a, **k):
        raise AssertionError("a finished file was processed again")

    monkeypatch.setattr(respira.detect.job, "detect_file", no_detection)
    (rec / "broken.wav").unlink()
    code, stdout, _ = _cli(capsys, "detect", str(rec), "--model", str(bundle), "--threshold", "0.0", "-o", str(out))
    assert code == 0
    with open(out / "events.csv", newline="") as f:
        assert list(csv.DictReader(f)) == rows


def test_cli_evaluate_events_uses_the_candidates_beside_events_csv(bundle, tmp_path, capsys):
    y, planted = scene(duration_s=30.0, events={"cough": 3}, seed=6)
    audio.write_wav(tmp_path / "night.wav", y, sample_rate=SR)
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,start,end,subject,split,source_label\n" +
                        "".join(f"night.wav,cough,{p.start:.3f},{p.end:.3f},s1,test,cough\n" for p in planted))
    out = tmp_path / "out"
    code, _, _ = _cli(capsys, "detect", str(tmp_path / "night.wav"), "--model", str(bundle), "-o", str(out))
    assert code == 0
    code, stdout, _ = _cli(capsys, "evaluate-events", str(out / "events.csv"), str(manifest), "-o", str(tmp_path / "ev"))
    assert code == 0 and "sensitivity" in stdout
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    assert m["annotated_events"] == 3 and m["hours"] == pytest.approx(30 / 3600, abs=1e-6)
    assert m["threshold"] == 0.5 and m["detections_file"].endswith("candidates.csv")
    assert (tmp_path / "ev" / "curve.png").is_file()
    code, stdout, _ = _cli(capsys, "evaluate-events", str(out / "events.csv"), str(manifest), "-o", str(tmp_path / "ev"),
                           "--review", "2")
    sheets = sorted(p.name for p in (tmp_path / "ev" / "review").glob("*.png"))
    assert code == 0 and "review/index.html" in stdout.replace("\\", "/")
    assert len(sheets) == min(2, m["false_alarms"]) + min(2, m["annotated_events"] - m["found"])


def test_cli_detect_reports_bad_input_in_one_line(tmp_path, capsys, bundle):
    code, _, err = _cli(capsys, "detect", str(tmp_path / "missing.wav"), "--model", str(bundle), "-o", str(tmp_path / "o"))
    assert code == 1 and "no such file" in err
    code, _, err = _cli(capsys, "detect", str(tmp_path), "--model", str(bundle), "--threshold", "2", "-o", str(tmp_path / "o"))
    assert code == 2 and "--threshold" in err and "Traceback" not in err

