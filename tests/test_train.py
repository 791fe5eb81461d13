"""Training end to end on synthetic clips: learning, artefacts, resume, tasks, k-fold, DDP."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from respira.bundle import load_bundle
from respira.config import config_from_dict, load_config
from respira.data import read_manifest, write_manifest
from respira.errors import ConfigError
from respira.testing import clip_dataset
from respira.train import Interrupted, train
from respira.train.dataset import prepare

ROOT = Path(__file__).resolve().parents[1]
TINY_MODEL = {"name": "compact_cnn", "params": {"channels": [16, 32, 64]}}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """60 one-second clips: 20 each of cough, speech, wheeze, from 10 subjects."""
    return clip_dataset(tmp_path_factory.mktemp("clips"), per_class=20, duration_s=1.0, subjects=10)


def settings(manifest: Path, **sections: dict) -> dict:
    """A small, fast config for `manifest`; `sections` update its sections key by key."""
    raw = {
        "data": {"sources": [{"path": str(manifest)}], "clip_s": 1.0, "split": {"val": 0.25, "test": 0.25}},
        "features": {"n_mels": 40},
        "model": TINY_MODEL,
        "augment": {"mixup_p": 0.0},
        "train": {"epochs": 2, "batch_size": 8, "lr": 3e-3, "warmup_epochs": 0.5},
    }
    for name, values in sections.items():
        raw[name] = {**raw.get(name, {}), **values}
    return raw


def relabelled(manifest: Path, out: Path, **columns: dict) -> Path:
    """A copy of `manifest` with columns derived from the label: column -> {label: value}."""
    df = read_manifest(manifest)
    for column, mapping in columns.items():
        df[column] = df["label"].map(mapping)
    write_manifest(df, out)
    return out


# --- the CLI run everything else builds on ---------------------------------------------------------


@pytest.fixture(scope="module")
def cli_run(clips: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from respira.cli import main

    folder = tmp_path_factory.mktemp("cli")
    config = folder / "synthetic.yaml"
    config.write_text(yaml.safe_dump(settings(clips, train={"epochs": 16})))
    run = folder / "run"
    argv = ["train", str(config), "-o", str(run), "--set", "train.seed=1"]
    saved = sys.argv
    sys.argv = ["respira", *argv]
    try:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
    finally:
        sys.argv = saved
    assert exit_.value.code == 0
    return run


def test_cli_writes_the_run(cli_run: Path, capsys: pytest.CaptureFixture) -> None:
    for name in ("model.respira", "config.yaml", "history.csv", "manifest.csv", "checkpoint.pt",
                 "eval/metrics.json", "eval/report.md"):
        assert (cli_run / name).is_file(), name
    cfg = load_config(cli_run / "config.yaml")
    assert cfg.train.seed == 1 and cfg.train.epochs == 16  # the override is in the resolved config
    history = pd.read_csv(cli_run / "history.csv")
    assert list(history["epoch"]) == list(range(1, 17))
    assert {"train_loss", "val_loss", "val_balanced_accuracy", "lr", "seconds"} <= set(history.columns)
    models, meta = load_bundle(cli_run / "model.respira")
    assert len(models) == 1 and meta.classes == ("cough", "speech", "wheeze") and meta.clip_s == 1.0
    provenance = meta.provenance
    assert provenance["command"].startswith("respira train ") and "train.seed=1" in provenance["command"]
    assert provenance["config"] == cfg.to_dict()
    assert provenance["data"]["counts"]["test"]["n"] > 0
    metrics = json.loads((cli_run / "eval" / "metrics.json").read_text())
    assert provenance["metrics"]["balanced_accuracy"] == pytest.approx(metrics["balanced_accuracy"])


def test_trained_model_learns_the_synthetic_classes(cli_run: Path, tmp_path: Path) -> None:
    from respira.inference import load_model

    metrics = json.loads((cli_run / "eval" / "metrics.json").read_text())
    assert metrics["accuracy"] >= 0.7  # chance is 1/3
    fresh = read_manifest(clip_dataset(tmp_path, per_class=8, duration_s=1.0, seed=7))  # never seen in training
    records = load_model(cli_run / "model.respira").predict(list(fresh["path"]))
    accuracy = np.mean([r["label"] == label for r, label in zip(records, fresh["label"])])
    assert accuracy >= 0.7


def test_a_used_run_folder_needs_resume(clips: Path, cli_run: Path) -> None:
    with pytest.raises(ConfigError, match="already holds a training run; pass --resume"):
        train(config_from_dict(settings(clips)), cli_run)


# --- resume ------------------------------------------------------------------------------------------


def test_resume_continues_from_the_same_step(clips: Path, tmp_path: Path) -> None:
    # on the CPU: CUDA kernels may differ in the last bits from run to run
    cfg = config_from_dict(settings(clips, data={"split": {"val": 0.25, "test": 0.0}}, train={"device": "cpu"}))
    straight = train(cfg, tmp_path / "straight", log=lambda line: None)

    def interrupt_at_step_8(step: int) -> None:
        if step == 8:
            signal.raise_signal(signal.SIGINT)  # what Ctrl-C does

    with pytest.raises(Interrupted) as stopped:
        train(cfg, tmp_path / "resumed", on_step=interrupt_at_step_8, log=lambda line: None)
    assert stopped.value.step == 8
    assert torch.load(stopped.value.checkpoint, weights_only=True)["step"] == 8
    assert not (tmp_path / "resumed" / "model.respira").exists()
    steps: list[int] = []
    resumed = train(cfg, tmp_path / "resumed", resume=True, on_step=steps.append, log=lambda line: None)

    a, b = pd.read_csv(tmp_path / "straight" / "history.csv"), pd.read_csv(tmp_path / "resumed" / "history.csv")
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"))
    total = int(a["step"].iloc[-1])
    assert a["step"].iloc[0] < 8 < total  # interrupted in the middle of epoch 2
    assert steps == list(range(9, total + 1))  # steps 1-8 were not run again
    (model_a,), _ = load_bundle(straight.bundle)
    (model_b,), _ = load_bundle(resumed.bundle)
    for (name, x), y in zip(model_a.state_dict().items(), model_b.state_dict().values()):
        torch.testing.assert_close(x, y, msg=name)


def test_resume_refuses_a_different_config(clips: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(settings(clips, data={"split": {"val": 0.25, "test": 0.0}}, train={"epochs": 1}))
    train(cfg, tmp_path / "run", log=lambda line: None)
    changed = config_from_dict(settings(clips, data={"split": {"val": 0.25, "test": 0.0}}, train={"epochs": 1, "lr": 1e-2}))
    with pytest.raises(ConfigError, match="different config"):
        train(changed, tmp_path / "run", resume=True, log=lambda line: None)


# --- other tasks -------------------------------------------------------------------------------------


def test_multilabel_runs_end_to_end(tmp_path: Path) -> None:
    source = clip_dataset(tmp_path / "clips", classes=("crackle", "wheeze", "speech"), per_class=12, duration_s=1.0)
    manifest = relabelled(source, tmp_path / "lung.csv", label={"crackle": "crackle", "wheeze": "wheeze", "speech": "normal"})
    cfg = config_from_dict(settings(manifest, data={"classes": ["crackle", "wheeze"]},
                                    task={"type": "multilabel", "loss": "bce"}))
    result = train(cfg, tmp_path / "run", log=lambda line: None)
    models, meta = load_bundle(result.bundle)
    assert meta.task == "multilabel" and meta.classes == ("crackle", "wheeze")
    assert {"crackle_auc", "wheeze_auc", "macro_auc"} <= set(result.metrics)
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert "val_macro_f1" in history.columns and len(history) == 2


def test_regression_runs_end_to_end(clips: Path, tmp_path: Path) -> None:
    manifest = relabelled(clips, tmp_path / "scored.csv", score={"cough": 1.0, "speech": 0.0, "wheeze": 0.5})
    cfg = config_from_dict(settings(manifest, data={"label_column": "score"}, augment={"balance": "none"},
                                    task={"type": "regression", "loss": "huber"}))
    result = train(cfg, tmp_path / "run", log=lambda line: None)
    _, meta = load_bundle(result.bundle)
    assert meta.task == "regression" and meta.classes == ("score",)
    assert np.isfinite(result.metrics["mae"]) and result.metrics["mae"] < 1.0
    predictions = pd.read_csv(tmp_path / "run" / "eval" / "predictions.csv")
    assert set(predictions["label"]) <= {0.0, 0.5, 1.0}


def test_binary_task_skips_unreadable_clips(clips: Path, tmp_path: Path, recwarn: pytest.WarningsRecorder) -> None:
    df = read_manifest(clips)
    broken = tmp_path / "broken.wav"
    broken.write_bytes(b"RIFF\x00\x00")
    df = pd.concat([df, df.iloc[[0]].assign(path=str(broken))], ignore_index=True)
    write_manifest(df, tmp_path / "with_broken.csv")
    cfg = config_from_dict(settings(tmp_path / "with_broken.csv", data={"positive": "cough"}, train={"epochs": 1}))
    data = prepare(cfg, progress=False)
    assert data.classes == ("other", "cough")
    assert len(data.table) == 60 and data.skipped and str(broken) in data.skipped[0]
    assert any("skipped 1 unreadable clip" in str(w.message) for w in recwarn)
    assert set(data.table.loc[data.table["original_label"] == "speech", "task_label"]) == {"other"}
    np.testing.assert_array_equal(data.targets[:, 1], (data.table["label"] == "cough").to_numpy())


def fabricated_icbhi(root: Path, *, sr: int = 8000) -> None:
    """An ICBHI 2017 layout: 8 patients, one recording each of 8 cycles (1.5 s; normal, crackle,
    wheeze, both, twice), annotations beside them, patients 107-108 in the official test split."""
    import soundfile as sf

    from respira.testing import crackle, noise_bed, wheeze

    root.mkdir()
    rng = np.random.default_rng(0)
    lines = []
    for patient in range(101, 109):
        name = f"{patient}_1b1_Al_sc_Meditron"
        cycles = [(0, 0), (1, 0), (0, 1), (1, 1)] * 2
        y = noise_bed(sample_rate=sr, rng=rng, duration_s=1.5 * len(cycles), level_db=-45)
        notes = []
        for i, (crackles, wheezes) in enumerate(cycles):
            start = int(1.5 * i * sr)
            if wheezes:
                w = 0.3 * wheeze(sample_rate=sr, rng=rng, duration_s=0.8)
                y[start + 2000 : start + 2000 + len(w)] += w
            for k in range(4 * crackles):
                c = 0.5 * crackle(sample_rate=sr, rng=rng)
                at = start + 1000 + 2400 * k
                y[at : at + len(c)] += c
            notes.append(f"{1.5 * i:.3f}\t{1.5 * (i + 1):.3f}\t{crackles}\t{wheezes}")
        sf.write(root / f"{name}.wav", y, sr)
        (root / f"{name}.txt").write_text("\n".join(notes) + "\n")
        lines.append(f"{name}\t{'test' if patient >= 107 else 'train'}")
    (root / "ICBHI_challenge_train_test.txt").write_text("\n".join(lines) + "\n")


def test_icbhi_config_keeps_the_official_split(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    fabricated_icbhi(tmp_path / "icbhi")
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "configs" / "icbhi.yaml", [
        f"data.sources.0.path={tmp_path / 'icbhi'}", "data.clip_s=1.5", "train.epochs=1",
        "model.params={channels: [8, 16, 32]}",
    ])
    result = train(cfg, tmp_path / "run", log=lambda line: None)
    table = read_manifest(tmp_path / "run" / "manifest.csv")
    assert set(table.loc[table["split"] == "test", "subject"]) == {"107", "108"}
    assert (table["split"] == "val").any() and (table.groupby("subject")["split"].nunique() == 1).all()
    assert {"icbhi_score", "icbhi_sensitivity", "icbhi_specificity"} <= set(result.metrics)
    _, meta = load_bundle(result.bundle)
    assert meta.classes == ("normal", "crackle", "wheeze", "both")


def test_coughvid_config_regresses_cough_detected(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The COUGHVID layout (metadata_compiled.csv + {uuid}.ogg / .webm): louder coughs, higher target."""
    import soundfile as sf

    from respira.testing import cough, noise_bed

    root = tmp_path / "coughvid"
    root.mkdir()
    rng = np.random.default_rng(0)
    rows = []
    for i in range(40):
        uuid = f"{i:08d}-0000-0000-0000-000000000000"
        target = i / 39
        y = noise_bed(sample_rate=16000, rng=rng, duration_s=2.0, level_db=-40)
        c = cough(sample_rate=16000, rng=rng) * target
        y[8000 : 8000 + len(c)] += c
        sf.write(root / f"{uuid}.ogg", y, 16000, format="OGG", subtype="VORBIS")
        rows.append({"uuid": uuid, "datetime": "2020-04-13", "cough_detected": round(target, 4), "age": 30,
                     "gender": "female", "status": "healthy"})
    pd.DataFrame(rows).to_csv(root / "metadata_compiled.csv", index=False)
    monkeypatch.chdir(ROOT)
    cfg = load_config(ROOT / "configs" / "coughvid.yaml", [
        f"data.sources.0.path={root}", "data.clip_s=2.0", "train.epochs=2",
        "model.params={channels: [8, 16, 32]}",
    ])
    result = train(cfg, tmp_path / "run", log=lambda line: None)
    assert {"mae", "rmse", "r2"} <= set(result.metrics)
    _, meta = load_bundle(result.bundle)
    assert meta.task == "regression" and meta.classes == ("cough_detected",)


# --- data preparation ---------------------------------------------------------------------------------


def test_splits_are_subject_disjoint_and_official_splits_kept(clips: Path, tmp_path: Path) -> None:
    data = prepare(config_from_dict(settings(clips)), progress=False)
    sides = data.table.groupby("subject")["split"].nunique()
    assert (sides == 1).all() and set(data.table["split"]) == {"train", "val", "test"}

    df = read_manifest(clips)
    df["split"] = np.where(df["subject"].isin(["s00", "s01", "s02"]), "test", "train")
    write_manifest(df, tmp_path / "official.csv")
    kept = prepare(config_from_dict(settings(tmp_path / "official.csv")), progress=False).table
    assert set(kept.loc[kept["split"] == "test", "subject"]) == {"s00", "s01", "s02"}
    assert (kept["split"] == "val").any()  # carved out of train, by subject
    assert (kept.groupby("subject")["split"].nunique() == 1).all()


def test_sources_relabel_filter_and_exclude(clips: Path, tmp_path: Path) -> None:
    banned = read_manifest(clips).query("subject in ['s03', 's04']")
    write_manifest(banned, tmp_path / "banned.csv")
    cfg = config_from_dict(settings(clips, data={
        "sources": [{"path": str(clips)}, {"path": str(clips), "label": "speech"}],
        "classes": ["wheeze", "speech"],
        "exclude_subjects_of": {"path": str(tmp_path / "banned.csv")},
    }))
    data = prepare(cfg, progress=False)
    assert data.classes == ("wheeze", "speech")
    assert not data.table["subject"].isin(["s03", "s04"]).any()
    assert set(data.table["dataset"]) == {"manifest"}
    assert sorted(data.table["task_label"].value_counts()) == [16, 64]  # 16 wheezes; 16 speech + 48 relabelled
    with pytest.raises(ConfigError, match=r"data.sources\[0\].path: not found"):
        prepare(config_from_dict(settings(tmp_path / "missing.csv")), progress=False)


# --- k-fold and DDP -------------------------------------------------------------------------------------


def test_group_kfold_writes_cv_and_ships_the_folds(clips: Path, tmp_path: Path) -> None:
    cfg = config_from_dict(settings(clips, validation={"strategy": "group_kfold", "folds": 3},
                                    train={"epochs": 1, "ensemble": "folds"}))
    result = train(cfg, tmp_path / "run", log=lambda line: None)
    cv = json.loads((tmp_path / "run" / "cv.json").read_text())
    assert cv == result.cv and cv["metric"] == "balanced_accuracy" and len(cv["folds"]) == 3
    values = [fold["balanced_accuracy"] for fold in cv["folds"]]
    assert cv["mean"]["balanced_accuracy"] == pytest.approx(np.mean(values))
    assert cv["std"]["balanced_accuracy"] == pytest.approx(np.std(values, ddof=1))
    models, _ = load_bundle(result.bundle)
    assert len(models) == 3
    history = pd.read_csv(tmp_path / "run" / "history.csv")
    assert sorted(set(history["member"])) == ["fold1", "fold2", "fold3"]
    assert all((tmp_path / "run" / f"fold{k}" / "checkpoint.pt").is_file() for k in (1, 2, 3))


@pytest.mark.skipif(shutil.which("torchrun", path=os.path.dirname(sys.executable)) is None, reason="no torchrun")
def test_ddp_trains_on_two_processes(clips: Path, tmp_path: Path) -> None:
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump(settings(clips, train={"epochs": 1, "device": "cpu"})))  # gloo
    bin_dir = Path(sys.executable).parent
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(
        [str(bin_dir / "torchrun"), "--standalone", "--nproc_per_node", "2", "--no-python",
         str(bin_dir / "respira"), "train", str(config), "-o", str(tmp_path / "run")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # torchrun and its workers: the session this test started
        stdout, stderr = proc.communicate()
        pytest.fail(f"torchrun did not finish in 180 s: {stderr[-3000:]}")
    assert proc.returncode == 0, stderr[-3000:]
    assert "x 2 processes" in stderr
    assert stdout.count("test: accuracy") == 1  # rank 0 alone reports
    _, meta = load_bundle(tmp_path / "run" / "model.respira")
    assert meta.provenance["training"]["processes"] == 2
    assert len(pd.read_csv(tmp_path / "run" / "history.csv")) == 1


def test_tuned_threshold_separates_validation_scores(monkeypatch):
    from types import SimpleNamespace

    import respira.inference
    from respira.train import job

    scores = np.array([0.1, 0.2, 0.3, 0.6, 0.7, 0.9])  # val: 3 negatives then 3 positives
    targets = np.array([[1, 0]] * 3 + [[0, 1]] * 3, dtype=np.float32)

    class Fake:
        def __init__(self, *args, **kwargs):
            pass

        def predict_proba(self, waves):
            return np.stack([1 - scores, scores], axis=1)

    monkeypatch.setattr(respira.inference, "Model", Fake)
    data = SimpleNamespace(rows=lambda split: np.arange(6), waves=[None] * 6, targets=targets)
    meta = SimpleNamespace(classes=("other", "cough"), positive="cough")
    assert job.tune_threshold([], meta, data) == pytest.approx(0.45)  # midway between 0.3 and 0.6


def test_auxiliary_labels_train_extra_outputs_that_the_bundle_leaves_out(clips: Path, tmp_path: Path) -> None:
    from respira.train.job import narrowed, plan_members

    two = settings(clips, data={"classes": ["cough", "wheeze"]},
                   validation={"strategy": "group_kfold", "folds": 3}, train={"epochs": 1, "ensemble": "folds"})
    cfg = config_from_dict({**two, "data": {**two["data"], "auxiliary": ["speech"]}})
    plain, data = prepare(config_from_dict(two), progress=False), prepare(cfg, progress=False)
    assert data.outputs == ("cough", "wheeze", "speech") and data.targets.shape[1] == 3
    main = data.table[~data.auxiliary_rows()]
    assert main[["path", "split"]].equals(plain.table[["path", "split"]])  # the split ignores auxiliary rows
    extra = data.table[data.auxiliary_rows()]
    assert (extra["split"] == "train").all()
    assert set(extra["subject"]) == set(main.loc[main["split"] == "train", "subject"])  # no val/test subject's clip
    for member in plan_members(cfg, data, tmp_path):
        val_subjects = set(data.table.iloc[member.val]["subject"])
        trained = data.table.iloc[member.train]
        assert (trained["task_label"] == "speech").any() and not trained["subject"].isin(val_subjects).any()

    result = train(cfg, tmp_path / "run", log=lambda line: None)
    models, meta = load_bundle(result.bundle)
    assert meta.classes == ("cough", "wheeze") and all(m.head.out_features == 2 for m in models)
    assert result.metrics["n"] == len(plain.rows("test"))

    from respira.train.loop import build, model_spec
    wide = build(model_spec(cfg, 3)).eval()
    narrow = narrowed(wide, model_spec(cfg, 2)).eval()
    x = torch.randn(2, 1, 40, 101)
    assert torch.allclose(narrow(x), wide(x)[:, :2], atol=1e-6)
    with pytest.raises(ConfigError, match="data.auxiliary"):
        config_from_dict({**two, "data": {**two["data"], "auxiliary": ["cough"]}})
