"""Confound check: metadata that predicts the label is flagged; independent metadata is not."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from respira.errors import DataError
from respira.evaluate import confound_check


def _covid_like(rng: np.random.Generator) -> pd.DataFrame:
    """The covid19-cough layout: call-center 338 positive / 148 negative, telegram 127 / 305."""
    source = ["call-center"] * 486 + ["telegram"] * 432
    label = ["covid19"] * 338 + ["negative"] * 148 + ["covid19"] * 127 + ["negative"] * 305
    n = len(label)
    return pd.DataFrame(
        {
            "path": [f"raw/{i}.mp3" for i in range(n)],
            "label": label,
            "subject": [f"u{i}" for i in range(n)],
            "split": "",
            "source": source,
            "sex": rng.choice(["female", "male"], n),
        }
    )


def _independent(rng: np.random.Generator, n: int = 400) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "label": rng.choice(["cough", "other"], n),
            "subject": [f"s{i // 4}" for i in range(n)],  # 4 clips per subject
            "sex": rng.choice(["F", "M"], n),
            "age": rng.uniform(5, 90, n),
            "source": rng.choice(["phone", "web", "clinic"], n),
            "start": rng.uniform(0, 10, n),  # contract column: never checked
        }
    )


def test_flags_a_source_confounded_with_the_label(rng):
    result = confound_check(_covid_like(rng))
    assert result["flagged"] == ["source"]
    source = result["columns"]["source"]
    assert source["flag"] and source["chance"] == 0.5
    assert source["balanced_accuracy"] == pytest.approx(0.70, abs=0.02)  # (338/465 + 305/453) / 2
    assert source["roc_auc"] >= 0.65
    assert not result["columns"]["sex"]["flag"]
    assert "source" in result["warning"]
    json.dumps(result, allow_nan=False)


def test_independent_metadata_is_not_flagged(rng):
    result = confound_check(_independent(rng))
    assert set(result["columns"]) == {"sex", "age", "source"}
    assert result["flagged"] == []
    assert result["warning"] is None
    assert not result["combined"]["flag"]
    for scores in result["columns"].values():
        assert abs(scores["roc_auc"] - 0.5) < 0.12


def test_multiclass_label_uses_balanced_accuracy_against_one_third(rng):
    n = 300
    label = rng.choice(["crackle", "wheeze", "normal"], n)
    device = np.where(rng.random(n) < 0.7, pd.Series(label).map({"crackle": "A", "wheeze": "B", "normal": "C"}), "A")
    result = confound_check(pd.DataFrame({"label": label, "device": device, "sex": rng.choice(["F", "M"], n)}))
    assert result["columns"]["device"]["chance"] == pytest.approx(1 / 3)
    assert result["columns"]["device"]["roc_auc"] is None
    assert result["flagged"] == ["device"]


def test_small_samples_need_more_than_the_threshold():
    # 10 vs 10 subjects, source agrees with the label 8 times in 10: ROC-AUC ~0.7, but for 20
    # subjects 2.5 null standard errors above chance is ~0.83, so this can be luck
    label = np.array(["pos"] * 10 + ["neg"] * 10)
    agrees = np.r_[np.arange(10) >= 2, np.arange(10) >= 2]
    source = np.where(agrees == (label == "pos"), "a", "b")
    result = confound_check(pd.DataFrame({"label": label, "source": source}))
    assert result["columns"]["source"]["roc_auc"] >= 0.65
    assert result["flagged"] == []
    # the same association over 10 times as many subjects is flagged
    big = pd.DataFrame({"label": np.tile(label, 10), "source": np.tile(source, 10)})
    assert confound_check(big)["flagged"] == ["source"]


def test_subjects_keep_their_rows_together_in_cross_validation(rng):
    # every subject has one label and one random id-like code: pooled over rows the code looks
    # predictive, but a subject never appears in both training and test, so it is not
    n_subjects = 40
    subject_label = rng.choice(["a", "b"], n_subjects)
    subject_code = rng.choice([f"c{i}" for i in range(20)], n_subjects)
    rows = np.repeat(np.arange(n_subjects), 10)
    df = pd.DataFrame({"label": subject_label[rows], "code": subject_code[rows], "subject": rows.astype(str)})
    assert confound_check(df)["flagged"] == []


def test_label_like_columns_are_skipped_and_bad_input_raises(rng):
    df = _independent(rng)
    df["source_label"] = df["label"]
    df["cough"] = (df["label"] == "cough").astype(int)
    df["target"] = df["label"]
    df["path"] = [f"{i}.wav" for i in range(len(df))]
    assert set(confound_check(df)["columns"]) == {"sex", "age", "source"}
    assert set(confound_check(df, columns=["sex"])["columns"]) == {"sex"}
    with pytest.raises(DataError, match="no label column 'diagnosis'"):
        confound_check(df, label_col="diagnosis")
    with pytest.raises(DataError, match="site"):
        confound_check(df, columns=["site"])


@pytest.mark.shared
def test_real_covid19_cough_metadata_flags_source(shared_data):
    records = json.loads((shared_data / "covid19-cough" / "metadata.json").read_text())
    df = pd.DataFrame(records)
    df["label"] = np.where(df.pop("covid19").astype(bool), "covid19", "negative")
    df["subject"] = [Path(name).stem for name in df.pop("filename")]
    result = confound_check(df)
    assert "source" in result["flagged"]
    assert result["columns"]["source"]["roc_auc"] >= 0.65
    assert "source" in result["warning"]
