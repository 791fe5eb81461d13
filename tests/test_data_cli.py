"""`respira data import` and `respira data summary`, run through the real entry point."""

from __future__ import annotations

import json
import time

import numpy as np
import pandas as pd
import pytest

from respira.audio import write_wav
from respira.cli import main
from respira.cli.data_cmds import FORMATS
from respira.data import IMPORTERS, read_manifest

SR = 16000
IMPORT_FOLDER = ("data", "import", "folder")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_.value.code, out, err


@pytest.fixture()
def dataset(tmp_path, rng):
    """A folder data set: 3 classes x 4 speakers, clips of 0.25 s .. 1.0 s; one unreadable file."""
    root = tmp_path / "set"
    for label in ("cough", "sneeze", "sniff"):
        for speaker in range(4):
            seconds = 0.25 * (speaker + 1)
            y = (0.2 * np.sin(2 * np.pi * 440 * np.arange(round(seconds * SR)) / SR)).astype(np.float32)
            (root / label).mkdir(parents=True, exist_ok=True)
            y += 0.01 * rng.standard_normal(len(y)).astype(np.float32)
            write_wav(root / label / f"spk{speaker}_{label}.wav", y, sample_rate=SR)
    return root


def test_formats_in_help_match_the_registry():
    assert set(FORMATS) == set(IMPORTERS)


def test_import_then_summary_json(capsys, dataset, tmp_path):
    out_csv = tmp_path / "m.csv"
    code, out, err = run(capsys, *IMPORT_FOLDER, str(dataset), "-o", str(out_csv), "--subject-regex", r"^(spk\d)_")
    assert code == 0, err
    assert f"wrote {out_csv}: 12 rows, 3 labels, 4 subjects" in out
    df = read_manifest(out_csv)
    assert (df.groupby("subject")["split"].nunique() == 1).all()
    assert set(df["split"]) <= {"train", "val", "test"}

    code, out, err = run(capsys, "data", "summary", str(out_csv), "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["rows"] == 12 and summary["subjects"] == 4
    assert summary["labels"] == {"cough": 4, "sneeze": 4, "sniff": 4}
    assert summary["duration_s"] == pytest.approx(3 * (0.25 + 0.5 + 0.75 + 1.0), abs=1e-3)
    assert summary["unreadable"] == [] and summary["invalid"] == 0
    assert sum(summary["splits"].values()) == 12
    assert "cough" in out and "total" in out  # the table


def test_import_without_split_and_with_options(capsys, dataset, tmp_path):
    code, out, err = run(capsys, *IMPORT_FOLDER, str(dataset), "-o", str(tmp_path / "m.jsonl"), "--no-split")
    assert code == 0, err
    assert set(read_manifest(tmp_path / "m.jsonl")["split"]) == {""}
    out_csv = tmp_path / "x.csv"
    code, _, err = run(capsys, *IMPORT_FOLDER, str(dataset), "-o", str(out_csv), "-O", r"subject_regex=^spk\d")
    assert code == 0, err
    assert read_manifest(out_csv)["subject"].nunique() == 4


def test_summary_reports_unreadable_files_and_invalid_rows_but_succeeds(capsys, dataset, tmp_path):
    (dataset / "cough" / "broken.wav").write_bytes(b"RIFF....WAVE")
    rows = pd.DataFrame({
        "path": [str(dataset / name) for name in ("cough/spk0_cough.wav", "cough/broken.wav", "sniff/spk1_sniff.wav")],
        "label": ["cough", "cough", "sniff"], "start": [None, None, 0.4], "end": [None, None, 0.1],
        "subject": ["a", "b", "c"], "split": ["", "", ""], "source_label": ["", "", ""],
    })  # fmt: skip
    rows.to_csv(tmp_path / "m.csv", index=False)
    code, out, err = run(capsys, "data", "summary", str(tmp_path / "m.csv"), "--json")
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["unreadable"] == [str(dataset / "cough" / "broken.wav")]
    assert summary["invalid"] == 1
    assert f"unreadable: {dataset / 'cough' / 'broken.wav'}" in err
    assert "Traceback" not in err


def test_summary_without_audio(capsys, tmp_path):
    pd.DataFrame({"path": ["nowhere.wav"], "label": ["cough"], "start": [1.0], "end": [2.5], "subject": ["a"],
                  "split": ["train"], "source_label": ["x"]}).to_csv(tmp_path / "m.csv", index=False)  # fmt: skip
    code, out, err = run(capsys, "data", "summary", str(tmp_path / "m.csv"), "--no-audio", "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert (summary["duration_s"], summary["unreadable"], summary["splits"]) == (1.5, [], {"train": 1})


@pytest.mark.parametrize(
    "argv, message",
    [
        (["data", "summary", "{tmp}/missing.csv"], "error: manifest not found"),
        (["data", "summary", "{tmp}/bad.csv"], "missing required column(s) start, end"),
        (["data", "import", "nope", "{tmp}", "-o", "{tmp}/o.csv"], "unknown data set format 'nope'; known formats:"),
        (["data", "import", "esc50", "{tmp}", "-o", "{tmp}/o.csv"], "expected metadata file"),
        (["data", "import", "folder", "{tmp}", "-o", "{tmp}/o.csv", "-O", "novalue"], "--option takes KEY=VALUE"),
    ],
)
def test_errors_are_one_line_and_exit_2(capsys, tmp_path, argv, message):
    (tmp_path / "bad.csv").write_text("path,label\nx.wav,cough\n")
    code, out, err = run(capsys, *(a.format(tmp=tmp_path) for a in argv))
    assert code == 2
    assert err.startswith("error: ") and "Traceback" not in err
    assert message in err.replace("\n", "")  # (rich wraps long lines at 80 columns off a terminal)


@pytest.mark.shared
def test_nonverbal_import_and_summary(capsys, shared_data, tmp_path):
    src = shared_data / "nonverbal-vocalization"
    code, out, err = run(capsys, "data", "import", "nonverbal", str(src), "-o", str(tmp_path / "nv.csv"))
    assert code == 0, err
    assert "596 rows, 16 labels, 328 subjects" in out
    code, out, err = run(capsys, "data", "summary", str(tmp_path / "nv.csv"), "--json")
    assert code == 0, err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["rows"] == 596 and len(summary["labels"]) == 16 and summary["unreadable"] == []
    assert 1500 < summary["duration_s"] < 1800  # 596 clips of 2-6 s


@pytest.mark.shared
def test_covid19_cough_summary_reports_broken_files(capsys, shared_data, tmp_path):
    src = shared_data / "covid19-cough"
    code, out, err = run(capsys, "data", "import", "covid19-cough", str(src), "-o", str(tmp_path / "c.csv"))
    assert code == 0, err
    assert "918 rows" in out
    started = time.perf_counter()
    code, out, err = run(capsys, "data", "summary", str(tmp_path / "c.csv"), "--json")
    assert time.perf_counter() - started < 30
    assert code == 0
    summary = json.loads(out.strip().splitlines()[-1])
    small = sorted(str(p) for p in (shared_data / "covid19-cough" / "raw").iterdir() if p.stat().st_size < 2048)
    assert small and set(small) <= set(summary["unreadable"])
    assert summary["rows"] == 918 and summary["labels"] == {"covid19": 465, "negative": 453}


@pytest.mark.shared
def test_covid19_cough_uncut_import_warns_once(capsys, shared_data, tmp_path):
    src = shared_data / "covid19-cough-uncut"
    code, out, err = run(capsys, "data", "import", "covid19-cough-uncut", str(src), "-o", str(tmp_path / "u.csv"))
    assert code == 0, err
    assert "366 rows" in out
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "098d66e5-bda6-4e99-b787-ab890046c44b.mp3: invalid annotation" in warnings[0]


def test_summary_names_every_broken_file_and_warns_about_silence(capsys, bad_audio, tmp_path):
    folder, corpus = bad_audio
    write_wav(folder / "silent.wav", np.zeros(16000, np.float32), sample_rate=SR)
    names = sorted(corpus) + ["silent.wav", "good.wav", "half.wav"]
    rows = pd.DataFrame({"path": [str(folder / n) for n in names], "label": "cough", "start": None, "end": None,
                         "subject": names, "split": "", "source_label": ""})
    rows.to_csv(tmp_path / "m.csv", index=False)
    code, out, err = run(capsys, "data", "summary", str(tmp_path / "m.csv"), "--json")
    assert code == 0 and "Traceback" not in err
    summary = json.loads(out.strip().splitlines()[-1])
    assert sorted(summary["unreadable"]) == sorted(str(folder / n) for n in corpus)
    for name, reason in corpus.items():
        assert any(str(folder / name) in line and reason in line for line in err.splitlines()), name
    assert summary["rows"] == len(names)
    assert "silent" in summary["warnings"][str(folder / "silent.wav")]
    assert "damaged: recovered" in " ".join(summary["warnings"][str(folder / "half.wav")])  # read up to the cut
