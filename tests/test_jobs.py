"""The jobs of the Python API (`respira.detect`, `respira.evaluate_events`, `respira.monitor`) equal
the CLI's; detector settings from --config FILE.yaml and --set, checked with errors that name the key;
the one audio-file finder; the detector's running active time."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from detect_stub import PlantedScorer
from tiny_models import tiny_bundle

import respira
from respira import audio, store
from respira.detect import DetectConfig, StreamDetector, detect_array, detect_settings
from respira.detect.config import detect_config
from respira.errors import ConfigError
from respira.testing import scene

SR = 16000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("model") / "tiny.respira")


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> tuple[Path, list]:
    y, planted = scene(duration_s=20.0, events={"cough": 3}, seed=4)
    path = tmp_path_factory.mktemp("rec") / "night.wav"
    audio.write_wav(path, y, sample_rate=SR)
    return path, planted


def _cli(capsys, *args: str) -> tuple[int, str, str]:
    from respira.cli import main

    with pytest.raises(SystemExit) as e:
        main(list(args))
    out, err = capsys.readouterr()
    return e.value.code, out, err


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


# --- settings -----------------------------------------------------------------------------------


def test_settings_come_from_the_file_then_set_then_options(tmp_path):
    cfg = tmp_path / "detect.yaml"
    cfg.write_text("detect:\n  threshold: 0.9\n  hop_s: 0.5\n")
    assert detect_settings(cfg) == {"threshold": 0.9, "hop_s": 0.5}
    assert detect_settings(cfg, ["detect.threshold=0.7"]) == {"threshold": 0.7, "hop_s": 0.5}
    assert detect_settings(cfg, ["detect.threshold=0.7"], threshold=0.3, gate=None) == {"threshold": 0.3, "hop_s": 0.5}
    scorer = PlantedScorer(np.zeros(SR, np.float32), [])
    assert detect_config(scorer).threshold == 0.5  # a scorer without a bundle: 0.5
    assert detect_config(scorer, {"gate": False}, block_s=0.5) == DetectConfig(gate=False, block_s=0.5)
    assert detect_config(scorer, {"block_s": 2.0}, block_s=0.5).block_s == 2.0  # the user's over the job's


@pytest.mark.parametrize("overrides, options, message", [
    (["detect.treshold=0.9"], {}, "unknown key 'detect.treshold' (did you mean 'detect.threshold'?)"),
    (["detect.threshold=2"], {}, "detect.threshold: must be in [0, 1], got 2"),
    (["detect.hop_s=fast"], {}, "detect.hop_s: expected a number, got 'fast'"),
    (["train.lr=1"], {}, "unknown key 'train' (known: detect)"),
    ([], {"threshold": 1.5}, "--threshold 1.5: detect.threshold: must be in [0, 1], got 1.5"),
])
def test_bad_settings_name_the_key(overrides, options, message):
    with pytest.raises(ConfigError) as e:
        detect_settings(None, overrides, **options)
    assert str(e.value) == message


def test_config_dataclasses_check_their_bounds_on_construction():
    from respira.monitor import MonitorConfig
    from respira.server import ServerSettings

    with pytest.raises(ConfigError, match=r"detect.gate_pad_s: must be >= 0, got -1"):
        DetectConfig(gate_pad_s=-1)
    with pytest.raises(ConfigError, match=r"monitor.history_s: must be > 0"):
        MonitorConfig(history_s=0)
    with pytest.raises(ConfigError, match="unknown key 'detect.treshold'"):
        ServerSettings(detect={"treshold": 0.9})


# --- the jobs -----------------------------------------------------------------------------------


def test_config_file_and_set_give_the_same_events_as_the_python_api(bundle, night, tmp_path, capsys):
    path, _ = night
    cfg = tmp_path / "detect.yaml"
    cfg.write_text("detect:\n  threshold: 0.2\n")
    for name, extra in (("file", ["--config", str(cfg)]), ("set", ["--set", "detect.threshold=0.2"])):
        code, _, err = _cli(capsys, "detect", str(path), "--model", str(bundle), *extra, "-o", str(tmp_path / name))
        assert code == 0, err
    run = respira.detect([path], out=tmp_path / "api", model=str(bundle), settings={"threshold": 0.2})
    assert _rows(tmp_path / "file" / "events.csv") == _rows(tmp_path / "set" / "events.csv") \
        == _rows(tmp_path / "api" / "events.csv")
    params = json.loads((tmp_path / "file" / "params.json").read_text())
    assert params["settings"] == run.cfg.to_dict() and run.cfg.threshold == 0.2
    assert len(run.events) == len(_rows(tmp_path / "api" / "events.csv"))


def test_evaluate_events_job_equals_the_cli(bundle, night, tmp_path, capsys):
    path, planted = night
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("path,label,start,end,subject,split,source_label\n" +
                        "".join(f"{path},cough,{p.start:.3f},{p.end:.3f},s1,test,cough\n" for p in planted))
    respira.detect([path], out=tmp_path / "det", model=str(bundle))
    code, _, err = _cli(capsys, "evaluate-events", str(tmp_path / "det" / "events.csv"), str(manifest),
                        "-o", str(tmp_path / "cli"), "--review", "1")
    assert code == 0, err
    metrics = respira.evaluate_events(tmp_path / "det" / "events.csv", manifest, out=tmp_path / "api", review=1)
    cli = json.loads((tmp_path / "cli" / "metrics.json").read_text())
    api = json.loads((tmp_path / "api" / "metrics.json").read_text())
    assert cli == api and metrics["annotated_events"] == 3 and Path(metrics["review_page"]).is_file()


def test_monitor_job_on_a_file_writes_the_detect_outputs_in_its_report(bundle, night, tmp_path):
    from respira.monitor import session_report

    path, _ = night
    db = tmp_path / "m.sqlite"
    seen = []
    result = respira.monitor(str(path), db=db, model=str(bundle), settings={"threshold": 0.0},
                             on_event=lambda e, wall: seen.append((e, wall)))
    direct = respira.detect([path], out=tmp_path / "det", model=str(bundle), settings={"threshold": 0.0})
    assert [e for e, _ in seen] == result.events == direct.events and all(w is None for _, w in seen)
    assert result.session.params["monitor"]["detect"] == direct.cfg.to_dict()  # a file: read in blocks of 60 s
    con = store.connect(db, create=False)
    session_report(con, result.session, tmp_path / "report")
    for name in ("events.csv", "candidates.csv", "events.json", "summary.json", "report.html", "params.json",
                 "audacity/night.txt", "raven/night.txt", "timeline/night.png"):
        assert (tmp_path / "report" / name).is_file(), name
    assert (tmp_path / "report" / "audacity" / "night.txt").read_text() == (tmp_path / "det" / "audacity" / "night.txt").read_text()
    assert json.loads((tmp_path / "report" / "params.json").read_text()) == result.session.params


def test_monitor_source_choices_fail_in_one_line(tmp_path):
    from respira.sources import Source

    assert (Source.parse("-").kind, Source.parse("mic").name, Source.parse("stdin").block_s) == ("stdin", "mic", 0.5)
    with pytest.raises(ConfigError, match="--follow needs --input FILE"):
        Source.parse("stdin", follow=True)
    with pytest.raises(ConfigError, match="no such file"):
        Source.parse(str(tmp_path / "gone.wav"))
    with pytest.raises(ConfigError, match="--idle must be > 0"):
        Source.parse("stdin", idle_s=0)


# --- the finder and the active time ---------------------------------------------------------------


def test_one_finder_skips_hidden_files_and_folders(tmp_path):
    for name in ("b.wav", "a/c.FLAC", "a/notes.txt", ".hidden.wav", ".cache/d.wav", "a/.e.ogg"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    assert audio.audio_files(tmp_path) == [tmp_path / "a" / "c.FLAC", tmp_path / "b.wav"]
    given = tmp_path / "a" / "notes.txt"  # a file named explicitly is taken whatever its extension
    files, failures = audio.find_audio_files([tmp_path, given, tmp_path / "b.wav", tmp_path / "missing"])
    assert files == [str(tmp_path / "a" / "c.FLAC"), str(tmp_path / "b.wav"), str(given)]
    assert [(f.file, f.reason) for f in failures] == [(str(tmp_path / "missing"), f"{tmp_path / 'missing'}: no such file or folder")]
    infos, bad = audio.read_infos(files, check=False)
    assert infos == [] and [f.file for f in bad] == files


@pytest.mark.parametrize("block_s", [0.5, 3.0, 60.0])
def test_the_detector_reports_its_active_time_as_it_goes(block_s):
    y, planted = scene(duration_s=30.0, events={"cough": 4}, seed=2)
    scorer = PlantedScorer(y, planted)
    detector = StreamDetector(scorer, DetectConfig(block_s=block_s))
    size, running = round(block_s * SR), []
    for i in range(0, len(y), size):
        detector.feed(y[i: i + size])
        running.append(detector.active_s)
    result = detector.finish()
    assert running == sorted(running) and 0 < running[-1] <= result.active_s < 30.0
    assert result.active_s == detect_array(y, scorer, DetectConfig(block_s=7.0)).active_s  # whatever the blocks
