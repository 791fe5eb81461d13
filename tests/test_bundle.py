"""Model bundles: round trip of an ensemble, built-in names, and a clear ModelError for every bad file."""

from __future__ import annotations

import json
import os

import pytest
import torch
from safetensors.torch import save_file
from tiny_models import tiny_bundle, tiny_members, tiny_meta

from respira import bundle
from respira.bundle import FORMAT_VERSION, BundleMeta, builtin_path, load_bundle, read_meta, save_bundle
from respira.errors import ModelError


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """(path, members, meta) of a 2-member ensemble bundle."""
    meta = tiny_meta()
    members = tiny_members(meta, n=2)
    path = tmp_path_factory.mktemp("bundle") / "two.respira"
    save_bundle(path, members, meta)
    return path, members, meta


def test_round_trip_keeps_every_member_and_the_meta(saved):
    path, members, meta = saved
    loaded, loaded_meta = load_bundle(path)
    assert loaded_meta == meta and loaded_meta.to_dict() == meta.to_dict()
    assert len(loaded) == 2
    for original, copy in zip(members, loaded):
        assert not copy.training
        a, b = original.state_dict(), copy.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    # the two members differ, so the bundle did not store one twice
    w0, w1 = (m.state_dict()["head.weight"] for m in loaded)
    assert not torch.equal(w0, w1)
    x = torch.randn(3, 1, 32, 101)
    with torch.no_grad():
        assert torch.equal(members[1](x), loaded[1](x))


def test_read_meta_needs_no_weights(saved):
    path, _, meta = saved
    assert read_meta(path) == meta


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "pickle"])
def test_damaged_files_raise_model_error(saved, tmp_path, damage):
    path, _, _ = saved
    data = path.read_bytes()
    bad = tmp_path / "bad.respira"
    if damage == "truncated":
        bad.write_bytes(data[: len(data) // 2])
    elif damage == "random":
        bad.write_bytes(os.urandom(4096))
    elif damage == "empty":
        bad.write_bytes(b"")
    else:  # a torch pickle is refused, never unpickled
        torch.save({"state_dict": {}}, bad)
    with pytest.raises(ModelError, match="bad.respira"):
        load_bundle(bad)


def test_missing_file(tmp_path):
    with pytest.raises(ModelError, match="not found"):
        load_bundle(tmp_path / "nope.respira")


def test_newer_format_asks_for_an_upgrade(tmp_path):
    meta = tiny_meta().to_dict() | {"format_version": FORMAT_VERSION + 1}
    path = tmp_path / "future.respira"
    save_file({"m0.x": torch.zeros(1)}, str(path), metadata={"respira": json.dumps(meta), "members": "1"})
    with pytest.raises(ModelError, match="newer respira.*upgrade"):
        load_bundle(path)


def test_bundles_saved_before_the_rename_of_clip_seconds_load(tmp_path):
    meta = tiny_meta().to_dict()
    assert "clip_s" in meta and "clip_seconds" not in meta
    meta["clip_seconds"] = meta.pop("clip_s")
    path = tmp_path / "old.respira"
    save_file({"m0.x": torch.zeros(1)}, str(path), metadata={"respira": json.dumps(meta), "members": "1"})
    assert read_meta(path).clip_s == tiny_meta().clip_s


def test_plain_safetensors_file_is_not_a_bundle(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ModelError, match="not a respira model bundle"):
        load_bundle(path)


def test_unknown_model_name(tmp_path):
    meta = tiny_meta()
    odd = BundleMeta(**{**meta.to_dict(), "model": {"name": "no_such_net", "params": meta.model["params"]}})
    path = tmp_path / "odd.respira"
    save_bundle(path, tiny_members(meta), odd)
    with pytest.raises(ModelError, match="odd.respira.*no_such_net"):
        load_bundle(path)


def test_weights_that_do_not_fit_the_architecture(tmp_path):
    meta = tiny_meta()
    wide = BundleMeta(**{**meta.to_dict(), "model": {"name": "compact_cnn", "params": {**meta.model["params"], "channels": [8, 32]}}})
    path = tmp_path / "mismatch.respira"
    save_bundle(path, tiny_members(meta), wide)  # weights of (8, 16), meta says (8, 32)
    with pytest.raises(ModelError, match="do not fit"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"task": "segmentation"}, "task must be one of"),
        ({"positive": "sneeze"}, "positive class 'sneeze'"),
        ({"task": "regression", "positive": None}, "regression bundle names one target"),
        ({"task": "multilabel"}, "positive class is only meaningful"),
        ({"pooling": "median"}, "pooling must be one of"),
        ({"classes": ("a", "b", "c"), "positive": None}, "n_classes=2 does not match 3"),
        ({"clip_s": 0}, "clip_s must be > 0"),
    ],
)
def test_meta_for_the_wrong_task_is_refused(changes, message):
    with pytest.raises(ModelError, match=message):
        BundleMeta(**{**tiny_meta().to_dict(), **changes})


def test_one_logit_binary_meta_is_valid():
    meta = tiny_meta(n_outputs=1)
    assert meta.model["params"]["n_classes"] == 1 and meta.positive == "cough"


def test_builtin_names(tmp_path, monkeypatch):
    monkeypatch.setattr(bundle, "BUILTIN_DIR", tmp_path)
    with pytest.raises(ModelError, match="no built-in model named 'cough'.*none are installed yet"):
        builtin_path("cough")
    tiny_bundle(tmp_path / "vocal.respira")
    assert bundle.builtin_names() == ["vocal"]
    with pytest.raises(ModelError, match=r"available: vocal"):
        load_bundle("cough")
    members, meta = load_bundle("vocal")
    assert len(members) == 1 and meta.classes == ("other", "cough")


def test_save_needs_models_and_json_metadata(tmp_path):
    with pytest.raises(ModelError, match="no models"):
        save_bundle(tmp_path / "x.respira", [], tiny_meta())
    meta = BundleMeta(**{**tiny_meta().to_dict(), "provenance": {"created": object()}})
    with pytest.raises(ModelError, match="plain JSON"):
        save_bundle(tmp_path / "x.respira", tiny_members(meta), meta)
