"""ONNX export with `--input features`: one checked graph with a dynamic batch, outputs equal to PyTorch
within 1e-4 on the same audio, and a sidecar from which a front end can compute the inputs with numpy
alone. The default, raw-audio graph: tests/test_export_audio.py."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from tiny_models import SR, tiny_bundle, tone_clip

from respira.errors import ModelError
from respira.export import export_onnx, load_exported
from respira.inference import Model, feature_inputs, load_model


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(bundle path, onnx path) of a 2-member ensemble exported once."""
    folder = tmp_path_factory.mktemp("onnx")
    bundle = tiny_bundle(folder / "pair.respira", n=2)
    return bundle, export_onnx(bundle, folder / "pair.onnx", input="features")


@pytest.fixture(scope="module")
def waves() -> list[np.ndarray]:
    rng = np.random.default_rng(7)
    return [tone_clip(300, 1.0, rng=rng), tone_clip(2500, 0.6, rng=rng), tone_clip(900, 3.2, rng=rng),
            0.1 * rng.standard_normal(SR).astype(np.float32)]


def test_one_checked_file_with_a_sidecar(exported):
    _, path = exported
    onnx.checker.check_model(str(path), full_check=True)
    graph = onnx.load(str(path))
    assert max(o.version for o in graph.opset_import if o.domain in ("", "ai.onnx")) >= 17
    assert [i.name for i in graph.graph.input] == ["logmel"] and [o.name for o in graph.graph.output] == ["probabilities"]
    assert not list(path.parent.glob("*.data"))  # no external weight files
    side = json.loads(path.with_suffix(".json").read_text())
    assert side["classes"] == ["other", "cough"] and side["positive"] == "cough" and side["task"] == "classification"
    assert side["sample_rate"] == SR and side["clip_samples"] == SR and side["thresholds"] == {"decision": 0.5}
    assert side["input"] == "features" and side["inputs"] == [{"name": "logmel", "shape": ["batch", 1, 32, 101]}]
    assert side["output"] == {"name": "probabilities", "shape": ["batch", 2]}
    assert np.array(side["features"]["mel_basis"]).shape == (32, 257)


def test_dynamic_batch_and_torch_equality(exported, waves):
    bundle, path = exported
    torch_model = load_model(bundle)
    windows = np.stack([w[:SR] if len(w) >= SR else np.pad(w, (0, SR - len(w))) for w in waves])
    expected = torch_model.score_windows(windows)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (x,) = feature_inputs(torch.from_numpy(windows), torch_model.feature_config)
    for n in (1, 4):
        got = session.run(None, {"logmel": x[:n].numpy()})[0]
        np.testing.assert_allclose(got, expected[:n], atol=1e-4, rtol=0)
    # the frames axis is dynamic too: a detector may score windows of another length
    long = np.concatenate([windows, windows[::-1]], axis=1)
    (x2,) = feature_inputs(torch.from_numpy(long), torch_model.feature_config)
    np.testing.assert_allclose(session.run(None, {"logmel": x2.numpy()})[0], torch_model.score_windows(long), atol=1e-4, rtol=0)


def test_onnx_backend_gives_the_torch_numbers(exported, waves):
    bundle, path = exported
    torch_p = load_model(bundle).predict_proba(waves)
    from_file = load_model(path, backend="onnx")
    on_the_fly = load_exported(bundle)
    assert from_file.backend == on_the_fly.backend == "onnx" and from_file.classes == ("other", "cough")
    assert np.ptp(torch_p[:, 1]) > 0.01
    for m in (from_file, on_the_fly):
        np.testing.assert_allclose(m.predict_proba(waves), torch_p, atol=1e-4, rtol=0)
    records = from_file.predict(waves, sample_rate=SR)
    assert [r["label"] for r in records] == ["cough" if p >= 0.5 else "other" for p in torch_p[:, 1]]
    with pytest.raises(ModelError, match="backend='torch'"):
        from_file.ensemble


def test_dual_input_model(tmp_path, waves):
    bundle = tiny_bundle(tmp_path / "dual.respira", kind="dual", classes=("cough", "laugh", "speech"), positive=None)
    path = export_onnx(bundle, tmp_path / "dual.onnx", input="features")
    assert [i.name for i in onnx.load(str(path)).graph.input] == ["mfcc", "logmel"]
    side = json.loads(path.with_suffix(".json").read_text())
    assert np.array(side["features"]["dct"]).shape == (13, 32)
    np.testing.assert_allclose(load_model(path, backend="onnx").predict_proba(waves),
                               load_model(bundle).predict_proba(waves), atol=1e-4, rtol=0)


def test_front_end_from_the_sidecar_alone(exported, waves):
    """What docs/onnx.md tells an app to do, in numpy: the graph then gives the torch numbers."""
    bundle, path = exported
    side = json.loads(path.with_suffix(".json").read_text())
    f = side["features"]
    y = np.pad(waves[0][: side["clip_samples"]], (0, max(0, side["clip_samples"] - len(waves[0]))))
    n_fft, hop, win = f["n_fft"], f["hop_length"], f["win_length"]
    window = np.zeros(n_fft)
    left = (n_fft - win) // 2
    window[left : left + win] = 0.5 - 0.5 * np.cos(2 * np.pi * np.arange(win) / win)  # periodic Hann
    padded = np.pad(y.astype(np.float64), n_fft // 2)  # centred frames, zero padding
    frames = 1 + (len(padded) - n_fft) // hop
    stft = np.fft.rfft(np.stack([padded[t * hop : t * hop + n_fft] * window for t in range(frames)]), axis=1)
    mel = np.array(f["mel_basis"]) @ (np.abs(stft) ** 2).T  # [n_mels, frames]
    db = 10 * np.log10(np.maximum(mel, f["amin"]))
    db = np.maximum(db, db.max() - f["top_db"])
    x = db[None, None].astype(np.float32)
    assert list(x.shape[1:]) == side["inputs"][0]["shape"][1:]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {"logmel": x})[0][0]
    np.testing.assert_allclose(got, load_model(bundle).predict_proba([y])[0], atol=1e-4)


def test_loading_a_bundle_on_onnx_asks_for_an_export_first(exported):
    bundle, path = exported
    with pytest.raises(ModelError, match="export the bundle first"):
        load_model(bundle, backend="onnx")
    assert load_exported(path).backend == "onnx"  # an .onnx file is loaded as it is


def test_missing_sidecar(exported, tmp_path):
    _, path = exported
    lonely = tmp_path / "lonely.onnx"
    lonely.write_bytes(path.read_bytes())
    with pytest.raises(ModelError, match="sidecar lonely.json is missing"):
        load_model(lonely, backend="onnx")


def test_export_accepts_a_model_object(tmp_path, exported):
    bundle, _ = exported
    model = load_model(bundle)
    assert isinstance(model, Model)
    out = export_onnx(model, tmp_path / "sub" / "m.onnx")
    assert out.is_file() and out.with_suffix(".json").is_file()
