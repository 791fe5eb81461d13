"""Evaluating on a manifest broader than the model: rows of unknown labels left out with one warning,
or refused with --strict; a binary model's negatives are every other label."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from tiny_models import tiny_bundle, tone_clip, write_clip

import respira
from respira.cli import main
from respira.errors import DataError

WARNING = "whose labels the model does not know"
LABELS = ("cough", "laugh", "sneeze", "speech", "cough", "laugh", "sneeze", "snoring", "speech", "cough", "laugh",
          "sneeze", "speech", "cough", "laugh", "sneeze")  # 12 known to the 3-class model, speech 3, snoring 1
TONES = {"cough": 2500, "laugh": 300, "sneeze": 4000, "speech": 900, "snoring": 120}


def run(capsys, *args) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `respira ARGS`."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return exit_info.value.code, out.out, out.err


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    """(folder, manifest table) of 1 s tones, one per row of LABELS, two rows per subject."""
    root = tmp_path_factory.mktemp("broad")
    rng = np.random.default_rng(3)
    rows = [{"path": write_clip(root / f"{i}.wav", tone_clip(TONES[label], 1.0, rng=rng)).name, "label": label,
             "start": None, "end": None, "subject": f"s{i // 2}", "split": "test", "source_label": label}
            for i, label in enumerate(LABELS)]
    return root, pd.DataFrame(rows)


def _manifest(clips, name: str, keep=lambda label: True):
    root, table = clips
    path = root / name
    table[table["label"].map(keep)].to_csv(path, index=False)
    return path


@pytest.fixture(scope="module")
def three(tmp_path_factory):
    return tiny_bundle(tmp_path_factory.mktemp("three") / "three.respira", classes=("cough", "laugh", "sneeze"),
                       positive=None)


def test_unknown_labels_are_left_out_with_one_warning_and_known_rows_score_as_alone(capsys, clips, three, tmp_path):
    broad = _manifest(clips, "broad.csv")
    known = _manifest(clips, "known.csv", keep=lambda label: label in ("cough", "laugh", "sneeze"))
    code, out, err = run(capsys, "evaluate", three, broad, "-o", tmp_path / "broad", "--n-boot", "20")
    assert code == 0, err
    assert err.count(WARNING) == 1
    assert "left out 4 rows whose labels the model does not know: speech 3, snoring 1 (use --strict to refuse)" in err
    assert "4 with unknown labels left out" in out
    code, _, err = run(capsys, "evaluate", three, known, "-o", tmp_path / "known", "--n-boot", "20")
    assert code == 0 and WARNING not in err, err
    left = json.loads((tmp_path / "broad" / "metrics.json").read_text())
    alone = json.loads((tmp_path / "known" / "metrics.json").read_text())
    assert left.pop("left_out_labels") == {"speech": 3, "snoring": 1} and alone.pop("left_out_labels") == {}
    assert left["data"]["n"] == 12 and left == alone
    assert (tmp_path / "broad" / "predictions.csv").read_text() == (tmp_path / "known" / "predictions.csv").read_text()


def test_strict_refuses_unknown_labels(capsys, clips, three, tmp_path):
    code, _, err = run(capsys, "evaluate", three, _manifest(clips, "broad.csv"), "-o", tmp_path / "e", "--strict")
    assert code == 2
    assert "'snoring', 'speech'" in err and "not classes of model" in err and WARNING not in err
    assert not (tmp_path / "e" / "metrics.json").exists()


def test_a_manifest_of_only_unknown_labels_is_an_error(capsys, clips, three, tmp_path):
    only = _manifest(clips, "only.csv", keep=lambda label: label in ("speech", "snoring"))
    code, _, err = run(capsys, "evaluate", three, only, "-o", tmp_path / "e")
    assert code == 2
    assert "none of the 4 rows has a label model" in err and "speech 3, snoring 1" in err


def test_the_api_leaves_out_or_refuses_as_the_cli_does(clips, three, tmp_path):
    broad = _manifest(clips, "broad.csv")
    notes = []
    result = respira.evaluate(three, broad, out=tmp_path / "e", n_boot=0, log=notes.append)
    assert [note for note in notes if WARNING in note] == [
        "left out 4 rows whose labels the model does not know: speech 3, snoring 1 (use --strict to refuse)"]
    assert result.metrics["left_out_labels"] == {"speech": 3, "snoring": 1}
    assert result.metrics == json.loads((tmp_path / "e" / "metrics.json").read_text())
    with pytest.raises(DataError, match="not classes of model"):
        respira.evaluate(three, broad, out=tmp_path / "s", strict=True, n_boot=0, log=notes.append)


def test_a_binary_model_counts_every_other_label_as_negative(capsys, clips, tmp_path):
    binary = tiny_bundle(tmp_path / "binary.respira", classes=("other", "cough"), positive="cough")
    code, _, err = run(capsys, "evaluate", binary, _manifest(clips, "broad.csv"), "-o", tmp_path / "e",
                       "--n-boot", "0")
    assert code == 0 and WARNING not in err, err
    metrics = json.loads((tmp_path / "e" / "metrics.json").read_text())
    assert metrics["data"]["n"] == len(LABELS) and metrics["left_out_labels"] == {}
    assert metrics["data"]["labels"] == {"cough": 4, "other": 12}
