"""Subject-disjoint splits: property checks over random manifests (seeded)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from respira.data import DataWarning, from_records, group_kfold, split_by_subject
from respira.errors import ConfigError, DataError


def random_manifest(rng: np.random.Generator, *, subjects: int, labels: int, max_rows: int = 8) -> pd.DataFrame:
    """Subjects with 1..max_rows rows each; each subject leans to one label, as speakers do."""
    records = []
    for s in range(subjects):
        main = rng.integers(labels)
        for r in range(rng.integers(1, max_rows + 1)):
            label = main if rng.random() < 0.8 else rng.integers(labels)
            records.append({"path": f"/d/{s}_{r}.wav", "label": f"c{label}", "subject": f"s{s}"})
    return from_records(records)


def sides_of_subjects(df: pd.DataFrame) -> pd.Series:
    return df.groupby("subject")["split"].nunique()


@pytest.mark.parametrize("case", range(12))
def test_random_manifests_split_disjoint_proportional_and_stratified(case):
    rng = np.random.default_rng(100 + case)
    df = random_manifest(rng, subjects=int(rng.integers(60, 300)), labels=int(rng.integers(2, 6)))
    val, test = [(0.15, 0.15), (0.1, 0.2), (0.2, 0.0), (0.25, 0.25)][case % 4]
    out = split_by_subject(df, val=val, test=test, seed=case)
    assert (sides_of_subjects(out) == 1).all()  # no subject on two sides
    share = out["split"].value_counts(normalize=True)
    assert share.get("val", 0.0) == pytest.approx(val, abs=0.04)
    assert share.get("test", 0.0) == pytest.approx(test, abs=0.04)
    assert set(out["split"]) == {"train", "val", "test"} - ({"test"} if test == 0 else set())
    # every label keeps roughly its share on each side
    overall = out["label"].value_counts(normalize=True)
    for side in out["split"].unique():
        per_side = out.loc[out["split"] == side, "label"].value_counts(normalize=True)
        assert (per_side.reindex(overall.index, fill_value=0) - overall).abs().max() < 0.12
    assert out.drop(columns="split").equals(df.drop(columns="split"))  # nothing else changes


def test_deterministic_for_a_seed_and_seed_dependent(rng):
    df = random_manifest(rng, subjects=120, labels=3)
    a = split_by_subject(df, seed=7)["split"].tolist()
    assert split_by_subject(df, seed=7)["split"].tolist() == a
    assert split_by_subject(df, seed=8)["split"].tolist() != a


def test_filled_splits_are_kept_and_subjects_follow_them(rng):
    df = random_manifest(rng, subjects=80, labels=2)
    first = df.index[df["subject"] == "s0"]
    df.loc[first[:1], "split"] = "test"  # one row of s0 already placed
    df.loc[df["subject"] == "s1", "split"] = "val"
    out = split_by_subject(df, seed=0)
    assert set(out.loc[out["subject"] == "s0", "split"]) == {"test"}  # the rest of s0 joins it
    assert set(out.loc[out["subject"] == "s1", "split"]) == {"val"}
    assert (sides_of_subjects(out) == 1).all()
    redone = split_by_subject(out, seed=3, overwrite=True)
    assert (sides_of_subjects(redone) == 1).all()
    assert redone["split"].tolist() == split_by_subject(df.assign(split=""), seed=3)["split"].tolist()


def test_subject_given_on_two_sides_is_warned_about():
    df = from_records([
        {"path": "a.wav", "label": "normal", "subject": "156", "split": "train"},
        {"path": "b.wav", "label": "normal", "subject": "156", "split": "test"},
        {"path": "c.wav", "label": "normal", "subject": "157"},
    ])  # fmt: skip
    with pytest.warns(DataWarning, match=r"1 subject\(s\) already on more than one side.*156"):
        out = split_by_subject(df)
    assert out["split"].tolist()[:2] == ["train", "test"]  # given splits are kept as they are


def test_rows_without_subject_count_as_their_own_subject():
    df = from_records([{"path": f"/d/{i}.wav", "label": "cough"} for i in range(40)])
    out = split_by_subject(df, val=0.25, test=0.25, stratify=None)
    assert out["split"].value_counts().to_dict() == {"train": 20, "val": 10, "test": 10}


def test_bad_arguments():
    df = from_records([{"path": "a.wav", "label": "cough", "subject": "s"}])
    with pytest.raises(ConfigError, match="val \\+ test < 1"):
        split_by_subject(df, val=0.6, test=0.5)
    with pytest.raises(DataError, match="cannot stratify by 'sex'"):
        split_by_subject(df, stratify="sex")
    with pytest.raises(ConfigError, match="folds must be between 2 and the number of subjects \\(1\\)"):
        group_kfold(df, folds=2)


@pytest.mark.parametrize("folds", [3, 5])
def test_group_kfold_is_subject_disjoint_and_covers_every_row_once(rng, folds):
    df = random_manifest(rng, subjects=90, labels=3)
    pairs = group_kfold(df, folds=folds, seed=1)
    assert len(pairs) == folds
    subjects = df["subject"].to_numpy()
    seen = np.concatenate([val for _, val in pairs])
    assert sorted(seen) == list(range(len(df)))
    for train, val in pairs:
        assert not set(subjects[train]) & set(subjects[val])
        assert len(train) + len(val) == len(df)
        assert set(df["label"].iloc[val]) == set(df["label"])  # stratified: every label in every fold
    again = group_kfold(df, folds=folds, seed=1)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(pairs, again))


def test_hash_split_puts_a_subject_on_the_same_side_in_any_manifest():
    subjects = [f"call{i}" for i in range(400)]
    alone = pd.DataFrame({"path": [f"{s}.wav" for s in subjects], "label": "cough", "start": np.nan, "end": np.nan,
                          "subject": subjects, "split": "", "source_label": "cough"})
    extra = alone.assign(subject=[f"other{i}" for i in range(400)], label="speech")
    a = split_by_subject(alone, val=0.15, test=0.2, seed=3, method="hash")
    b = split_by_subject(pd.concat([extra, alone], ignore_index=True), val=0.15, test=0.2, seed=3, method="hash")
    side = dict(zip(a["subject"], a["split"]))
    assert all(side[s] == sp for s, sp in zip(b["subject"], b["split"]) if s in side)
    counts = a["split"].value_counts(normalize=True)
    assert abs(counts["test"] - 0.2) < 0.06 and abs(counts["val"] - 0.15) < 0.06
    assert (split_by_subject(alone, seed=4, method="hash")["split"] != a["split"]).any()
