"""respira.config: YAML + overrides -> checked frozen dataclasses; errors name the full key."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from respira.config import (
    AugmentConfig, Config, DataConfig, SplitConfig, TaskConfig, TrainConfig, ValidationConfig, config_from_dict,
    load_config, save_config,
)
from respira.errors import ConfigError
from respira.features import FeatureConfig
from respira.settings import apply_override

ROOT = Path(__file__).resolve().parents[1]
MINIMAL = "data:\n  sources:\n    - {format: nonverbal, path: ../shared/data/nonverbal-vocalization}\n"


@pytest.fixture()
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "run.yaml"
    path.write_text(MINIMAL + "train: {lr: 1e-3, epochs: 3}\nfeatures: {n_mels: 48}\n")
    return path


def test_defaults_and_yaml_values(config_file: Path) -> None:
    cfg = load_config(config_file)
    assert isinstance(cfg, Config) and isinstance(cfg.features, FeatureConfig)
    assert cfg.train.lr == pytest.approx(1e-3)  # PyYAML reads "1e-3" as a string; the loader takes it as a number
    assert cfg.train.epochs == 3 and cfg.train.batch_size == 32
    assert cfg.features.n_mels == 48 and cfg.features.kind == "logmel"
    assert cfg.data.sources[0].format == "nonverbal"
    assert cfg.loss == "ce"
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.train.lr = 1.0  # type: ignore[misc]


def test_relative_paths_resolve_against_the_current_directory(config_file: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    work = tmp_path / "repo"
    work.mkdir()
    monkeypatch.chdir(work)
    cfg = load_config(config_file)
    assert cfg.data.sources[0].path == str((tmp_path / "shared" / "data" / "nonverbal-vocalization").resolve())


def test_overrides_parse_yaml_values(config_file: Path) -> None:
    cfg = load_config(config_file, [
        "train.lr=3e-4", "train.amp=false", "augment.noise_snr_db=[5, 20]", "data.classes=[cough, laugh]",
        "data.split.seed=7", "data.sources.0.format=folder", "model.params={channels: [8, 16]}", "train.ensemble=3",
    ])
    assert cfg.train.lr == pytest.approx(3e-4)
    assert cfg.train.amp is False
    assert cfg.augment.noise_snr_db == (5.0, 20.0)
    assert cfg.data.classes == ("cough", "laugh")
    assert cfg.data.split.seed == 7
    assert cfg.data.sources[0].format == "folder"
    assert cfg.model.params == {"channels": [8, 16]}
    assert cfg.train.ensemble == 3


def test_override_creates_missing_sections() -> None:
    raw: dict = {}
    apply_override(raw, "task.label_smoothing=0.1")
    assert raw == {"task": {"label_smoothing": 0.1}}


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.lrr=1", "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
        ("trian.lr=1", "unknown key 'trian' (did you mean 'train'?)"),
        ("data.split.vall=0.2", "unknown key 'data.split.vall' (did you mean 'data.split.val'?)"),
        ("features.nmels=40", "unknown key 'features.nmels' (did you mean 'features.n_mels'?)"),
        ("train.lr=fast", "train.lr: expected a number, got 'fast'"),
        ("train.epochs=2.5", "train.epochs: expected an integer, got 2.5"),
        ("train.amp=maybe", "train.amp: expected true or false, got 'maybe'"),
        ("train.lr=-1", "train.lr: must be > 0, got -1"),
        ("augment.noise_p=1.5", "augment.noise_p: must be <= 1, got 1.5"),
        ("augment.balance=oversample", "augment.balance: must be one of sampler, loss, none, got 'oversample'"),
        ("augment.noise_snr_db=[40, 10]", "augment.noise_snr_db: expected [low, high]"),
        ("augment.noise_snr_db=[10]", "augment.noise_snr_db: expected a list of 2 values"),
        ("train.ensemble=many", "train.ensemble: expected an integer or one of folds, got 'many'"),
        ("train.ensemble=folds", "train.ensemble: 'folds' needs validation.strategy: group_kfold"),
        ("features.n_mels=abc", "features.n_mels must be an integer"),
        ("task.loss=mae", "task.loss: a classification task takes ce, got 'mae'"),
        ("task.type=regression", "augment.balance: must be none for a regression task"),
        ("data.split.test=0.9", "data.split: val + test must be < 1"),
        ("train=3", "train: expected a mapping of keys, got 3"),
        ("train.device=tpu", "train.device: expected auto, cpu, cuda or cuda:N"),
    ],
)
def test_errors_name_the_key(config_file: Path, override: str, message: str) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(config_file, [override])
    assert message in str(e.value)


def test_cross_field_rules() -> None:
    base = {"data": {"sources": [{"path": "x.csv"}]}}
    with pytest.raises(ConfigError, match="data.sources: give at least one source"):
        config_from_dict({})
    with pytest.raises(ConfigError, match="data.classes: a multilabel task needs its output labels"):
        config_from_dict({**base, "task": {"type": "multilabel"}})
    with pytest.raises(ConfigError, match="data.positive: 'cough' is not one of data.classes"):
        config_from_dict({"data": {**base["data"], "classes": ["laugh", "sigh"], "positive": "cough"}})
    with pytest.raises(ConfigError, match="train.ensemble: with group_kfold"):
        config_from_dict({**base, "validation": {"strategy": "group_kfold"}, "train": {"ensemble": 3}})
    with pytest.raises(ConfigError, match=r"data.sources\[0\]: missing key data.sources\[0\].path"):
        config_from_dict({"data": {"sources": [{"format": "nonverbal"}]}})
    ok = config_from_dict({**base, "task": {"type": "regression", "loss": "huber"}, "augment": {"balance": "none"}})
    assert ok.loss == "huber"


def test_file_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(bad)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="expected a mapping of sections"):
        load_config(listed)
    assert "\n" not in str(pytest.raises(ConfigError, load_config, bad).value)
    good = tmp_path / "good.yaml"
    good.write_text(MINIMAL)
    with pytest.raises(ConfigError, match="expected key=value"):
        load_config(good, ["train.lr"])


def test_saved_config_loads_back_equal(config_file: Path, tmp_path: Path) -> None:
    cfg = load_config(config_file, ["train.ensemble=2", "augment.mixup_on=waveform"])
    out = tmp_path / "run" / "config.yaml"
    save_config(cfg, out)
    assert load_config(out) == cfg
    assert cfg.to_dict()["augment"]["noise_snr_db"] == [10.0, 40.0]


@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_example_configs_load(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    cfg = load_config(path)
    assert all(Path(s.path).is_absolute() for s in cfg.data.sources)
    assert cfg.data.sources[0].path.startswith(str(ROOT.parent / "shared" / "data"))


def test_background_mixing_needs_a_derived_binary_task() -> None:
    raw = {"data": {"sources": [{"path": "m.csv"}]}, "augment": {"background_p": 0.5}}
    with pytest.raises(ConfigError, match="augment.background_p"):
        config_from_dict(raw)
    assert config_from_dict({**raw, "data": {**raw["data"], "positive": "cough"}}).augment.background_p == 0.5


def test_sections_check_their_ranges_on_construction() -> None:
    with pytest.raises(ConfigError, match=r"^train.lr: must be > 0, got -1$"):
        TrainConfig(lr=-1)
    with pytest.raises(ConfigError, match=r"^data.split.val: must be <= 0.9, got 1$"):
        SplitConfig(val=1.0)
    with pytest.raises(ConfigError, match=r"^augment.noise_p: must be <= 1, got 1.5$"):
        dataclasses.replace(AugmentConfig(), noise_p=1.5)
    with pytest.raises(ConfigError, match=r"^data.clip_s: must be > 0, got 0$"):
        DataConfig(clip_s=0)
    with pytest.raises(ConfigError, match=r"^task.label_smoothing: must be <= 0.5"):
        TaskConfig(label_smoothing=0.6)
    with pytest.raises(ConfigError, match=r"^validation.folds: must be >= 2, got 1$"):
        ValidationConfig(folds=1)
    assert TrainConfig(lr=2e-3).lr == 2e-3


@pytest.mark.parametrize("name", ["cough", "vocal"])
def test_built_in_models_provenance_configs_still_load(name: str) -> None:
    """A bundle's provenance holds the config it was trained with, written with the key names of its day."""
    from respira.bundle import builtin_path, read_meta

    cfg = config_from_dict(read_meta(builtin_path(name)).provenance["config"])
    assert cfg.data.clip_s == read_meta(builtin_path(name)).clip_s
