"""covid19-cough-uncut calls by side: the caller's channel chosen by `caller_channel`, the sides written
as mono FLAC (reused when complete), rows per side; on fabricated two-channel calls and the real calls."""

from __future__ import annotations

import json
import os
import shutil
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import soundfile as sf

from respira.cli import main
from respira.data import DataWarning, import_dataset, read_manifest
from respira.data.importers.covid import caller_channel
from respira.errors import DataError
from respira.testing import babble, noise_bed, scene

SR = 8000
CALL_S = 20.0
UNCUT = "covid19-cough-uncut"
# Real calls where the louder channel inside the annotation is the operator's, and the caller's
# channel (seen in their spectrograms: a cough burst on one side, speech on the other).
REAL_CALLERS = {"db360a99-a7f5-466f-9128-c4022344e6ab": 1, "229752b5-21e1-4900-bc3a-838f0a264844": 0}


def call(*, cough_on: int, seed: int = 0) -> tuple[np.ndarray, tuple[float, float]]:
    """A phone call [2, samples] at SR: a quiet line with one cough on channel `cough_on`, loud
    continuous speech-like sound on the other; and the cough's (start, end) in s."""
    rng = np.random.default_rng(seed)
    caller, (event,) = scene(duration_s=CALL_S, sample_rate=SR, events={"cough": 1}, bed_db=-50.0, event_db=-20.0, seed=seed)
    operator = 0.8 * babble(sample_rate=SR, rng=rng, duration_s=CALL_S) + noise_bed(sample_rate=SR, rng=rng, duration_s=CALL_S)
    y = np.stack([operator, caller] if cough_on == 1 else [caller, operator]).astype(np.float32)
    return y, (event.start, event.end)


def write_calls(root: Path, calls: dict[str, np.ndarray | bytes], annotations: dict[str, tuple]) -> Path:
    """A covid19-cough-uncut layout: `raw/{uuid}.flac` ([channels, samples] arrays, or raw bytes for
    a broken file) and metadata.json in the real format."""
    (root / "raw").mkdir(parents=True)
    meta = []
    for i, (uuid, y) in enumerate(calls.items()):
        path = root / "raw" / f"{uuid}.flac"
        if isinstance(y, bytes):
            path.write_bytes(y)
        else:
            sf.write(path, y.T, SR, subtype="PCM_16")
        start, end = annotations[uuid]
        meta.append({"filename": path.name, "start_at": start, "end_at": end, "verified": True, "asymptomatic": False,
                     "comment": None, "covid19": i % 2 == 0, "source": "call-center"})  # fmt: skip
    (root / "metadata.json").write_text(json.dumps(meta))
    return root


def side_rows(df: pd.DataFrame) -> dict[str, list[str]]:
    return {side: sorted(df.loc[df["side"] == side, "subject"]) for side in ("caller", "operator")}


# --- caller_channel -------------------------------------------------------------------------


@pytest.mark.parametrize("cough_on", [0, 1])
def test_caller_is_the_channel_of_the_cough_though_the_other_is_louder(cough_on):
    y, (start, end) = call(cough_on=cough_on, seed=cough_on)
    a, b = round(start * SR), round(end * SR)
    energy = np.mean(y.astype(np.float64) ** 2, axis=1)
    inside = np.mean(y[:, a:b].astype(np.float64) ** 2, axis=1)
    assert np.argmax(energy) == np.argmax(inside) == 1 - cough_on  # raw energy picks the operator
    assert caller_channel(y, sample_rate=SR, start_s=start, end_s=end) == cough_on


def test_caller_channel_refuses_an_annotation_outside_the_call():
    y, _ = call(cough_on=1)
    with pytest.raises(DataError, match=r"annotation 30\.0\.\.31\.0 s lies outside the audio \(0\.\.20\.00 s\)"):
        caller_channel(y, sample_rate=SR, start_s=30.0, end_s=31.0)


# --- the importer and the CLI ---------------------------------------------------------------


def test_cli_writes_the_sides_and_one_row_per_cough_and_per_operator(tmp_path, capsys):
    (y1, t1), (y2, t2) = call(cough_on=1, seed=1), call(cough_on=0, seed=2)
    src = write_calls(tmp_path / "set", {"u1": y1, "u2": y2, "u3": y1}, {"u1": t1, "u2": t2, "u3": (5.0, 4.0)})
    out, sides = tmp_path / "m.csv", tmp_path / "sides"
    with pytest.raises(SystemExit) as exit_:
        main(["data", "import", UNCUT, str(src), "-o", str(out), "--sides", str(sides)])
    stdout, stderr = capsys.readouterr()
    assert exit_.value.code == 0, stderr
    assert "wrote" in stdout and "4 rows" in stdout and "u3.flac: invalid annotation" in stderr

    df = read_manifest(out)
    assert {"path", "label", "start", "end", "subject", "side"} <= set(df.columns)
    assert side_rows(df) == {"caller": ["u1", "u2"], "operator": ["u1", "u2"]}
    callers, operators = df[df["side"] == "caller"], df[df["side"] == "operator"]
    assert set(callers["label"]) == {"cough"} and set(operators["label"]) == {"speech"}
    assert callers[["start", "end"]].to_numpy() == pytest.approx(np.array([t1, t2]))
    assert operators[["start", "end"]].isna().all().all()
    assert (df.groupby("subject")["split"].nunique() == 1).all()  # both sides of a call on one side of a split
    for uuid, y, cough_on in (("u1", y1, 1), ("u2", y2, 0)):
        for side, channel in (("caller", cough_on), ("operator", 1 - cough_on)):
            path = sides / side / f"{uuid}.flac"
            assert set(df.loc[(df["subject"] == uuid) & (df["side"] == side), "path"]) == {str(path)}
            written, sr = sf.read(path, dtype="float32")
            assert sr == SR and sf.info(path).subtype == "PCM_16" and written.ndim == 1
            assert np.abs(written - y[channel]).max() < 1e-3


def test_mono_and_broken_calls_are_warned_the_rest_kept(tmp_path):
    y, t = call(cough_on=1)
    calls = {"good": y, "mono": y[1:], "broken": b"not audio at all\n" * 50, "late": y}
    src = write_calls(tmp_path / "set", calls, {"good": t, "mono": t, "broken": t, "late": (30.0, 31.0)})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DataWarning)
        df = import_dataset(UNCUT, src, sides=tmp_path / "sides")
    notes = sorted(str(w.message) for w in caught)
    assert len(notes) == 3
    assert "broken.flac: not audio (a text file); skipped" in notes[0]
    assert "late.flac: annotation 30.0..31.0 s lies outside the audio" in notes[1]
    assert "mono.flac: mono, so the one channel is taken as the caller; no operator row" in notes[2]
    assert side_rows(df) == {"caller": ["good", "mono"], "operator": ["good"]}
    assert not (tmp_path / "sides" / "operator" / "mono.flac").exists()


def test_sides_are_reused_when_complete_and_rewritten_when_stale_or_damaged(tmp_path):
    y, t = call(cough_on=1)
    src = write_calls(tmp_path / "set", {"a": y, "b": y}, {"a": t, "b": t})
    sides = tmp_path / "sides"
    first = import_dataset(UNCUT, src, sides=sides)
    paths = {p: p.stat().st_mtime_ns for p in sides.glob("*/*.flac")}
    assert len(paths) == 4 and not list(sides.glob("*/.*"))  # no temporary files left behind

    again = import_dataset(UNCUT, src, sides=sides)
    pd.testing.assert_frame_equal(first, again)
    assert {p: p.stat().st_mtime_ns for p in paths} == paths  # nothing rewritten

    later = os.stat(src / "raw" / "a.flac").st_mtime + 10
    os.utime(src / "raw" / "a.flac", (later, later))  # call a changed since its sides were written
    (sides / "operator" / "b.flac").write_bytes(b"fLaC")  # b's operator side damaged
    import_dataset(UNCUT, src, sides=sides)
    rewritten = {p.relative_to(sides).as_posix() for p in paths if p.stat().st_mtime_ns != paths[p]}
    assert rewritten == {"caller/a.flac", "operator/a.flac", "caller/b.flac", "operator/b.flac"}
    assert np.abs(sf.read(sides / "operator" / "b.flac", dtype="float32")[0] - y[0]).max() < 1e-3


def test_background_rows_come_from_the_callers_side(tmp_path):
    y, t = call(cough_on=0)
    src = write_calls(tmp_path / "set", {"a": y}, {"a": t})
    df = import_dataset(UNCUT, src, sides=tmp_path / "sides", background=2, background_s=2.0, ignore_around_s=1.0)
    assert df["label"].tolist() == ["cough", "background", "background", "speech"]
    assert df["side"].tolist() == ["caller", "caller", "caller", "operator"]
    assert set(df.loc[df["label"] == "background", "path"]) == {str(tmp_path / "sides" / "caller" / "a.flac")}


def test_without_sides_the_calls_are_not_split(tmp_path):
    y, t = call(cough_on=1)
    df = import_dataset(UNCUT, write_calls(tmp_path / "set", {"a": y}, {"a": t}))
    assert "side" not in df.columns and df["path"].tolist() == [str(tmp_path / "set" / "raw" / "a.flac")]


# --- the real calls -------------------------------------------------------------------------


@pytest.mark.shared
def test_real_calls_sides_chosen_against_raw_energy(shared_data, tmp_path):
    real = shared_data / "covid19-cough-uncut"
    entries = json.loads((real / "metadata.json").read_text())
    picked = [e for e in entries if Path(e["filename"]).stem in REAL_CALLERS]
    (tmp_path / "set" / "raw").mkdir(parents=True)
    for e in picked:
        (tmp_path / "set" / "raw" / e["filename"]).symlink_to(real / "raw" / e["filename"])
    (tmp_path / "set" / "metadata.json").write_text(json.dumps(picked))
    df = import_dataset(UNCUT, tmp_path / "set", sides=tmp_path / "sides")
    assert side_rows(df) == {"caller": sorted(REAL_CALLERS), "operator": sorted(REAL_CALLERS)}
    for uuid, channel in REAL_CALLERS.items():
        y, sr = sf.read(real / "raw" / f"{uuid}.mp3", dtype="float32", always_2d=True)
        caller, caller_sr = sf.read(tmp_path / "sides" / "caller" / f"{uuid}.flac", dtype="float32")
        assert caller_sr == sr == SR and np.abs(caller - y[:, channel]).max() < 1e-3


@pytest.mark.shared
@pytest.mark.slow
def test_real_calls_all_split(shared_data, tmp_path):
    """~20-40 s, and ~360 MB of FLAC (removed after)."""
    sides = tmp_path / "sides"
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", DataWarning)
            df = import_dataset(UNCUT, shared_data / "covid19-cough-uncut", sides=sides)
        notes = [str(w.message) for w in caught if issubclass(w.category, DataWarning)]
        assert len(notes) == 1 and "098d66e5-bda6-4e99-b787-ab890046c44b.mp3: invalid annotation" in notes[0]
        sizes = df.groupby(["side", "label"]).size().to_dict()
        assert sizes == {("caller", "cough"): 366, ("operator", "speech"): 366}
        assert len(list(sides.glob("*/*.flac"))) == 732
    finally:
        shutil.rmtree(sides, ignore_errors=True)
