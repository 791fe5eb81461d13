"""The default ONNX export: raw audio in, each clip's probabilities out. The windows, features,
ensemble and pooling of `respira predict` in one graph of plain operators, equal to
`Model.predict_proba` within 1e-4 for clips of any length, and runnable by onnxruntime alone."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pandas as pd
import pytest
import torch
from tiny_models import SR, tiny_bundle, tiny_members, tiny_meta, write_clip

from respira import audio, export
from respira.bundle import builtin_names, save_bundle
from respira.cli import main
from respira.errors import ConfigError, ModelError
from respira.export import export_onnx
from respira.features import FeatureConfig, features
from respira.inference import load_model
from respira.onnx_graph import ConvFrontEnd, pool
from respira.tasks import TASKS

DOCS = Path(__file__).resolve().parents[1] / "docs" / "onnx.md"
LENGTHS = (0.3, 1.0, 1.0001, 2.5, 7.3)
"""Clip lengths in windows: shorter than one, exactly one, a sample or two more, 2.5, long."""
OPS = {"Add", "ArgMax", "AveragePool", "BatchNormalization", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape",
       "Conv", "Div", "Gather", "Gemm", "Identity", "Log", "MatMul", "Max", "Min", "Mul", "Pad", "Range", "ReduceMax",
       "ReduceMean", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Softmax", "Sub", "Transpose", "Unsqueeze"}
"""The operator types the graphs may hold (docs/onnx.md lists them): all run on ONNX Runtime's
CPU, mobile (onnxruntime-android / -objc) and web (onnxruntime-web, wasm) builds."""

BUNDLES = {
    "binary-mean-pair": dict(n=2),
    "binary-max-one-logit": dict(pooling="max", n_outputs=1),
    "multiclass-max-dual-deltas": dict(kind="dual", classes=("cough", "laugh", "speech"), positive=None,
                                       pooling="max", deltas=1),
    "multilabel-max": dict(task="multilabel", classes=("crackle", "wheeze"), positive=None, pooling="max"),
    "regression-odd-length": dict(task="regression", classes=("cough_count",), positive=None, clip_s=0.5000625),
}
"""Tiny bundles covering the tasks, both poolings, one-logit binary members, dual features with
deltas and an odd clip length (8001 samples: hop 4000)."""

SCRIPT = """
import json, sys
import numpy as np, onnxruntime as ort, soundfile as sf

model = sys.argv[1]
side = json.load(open(model[:-len(".onnx")] + ".json"))
session = ort.InferenceSession(model)
for path in sys.argv[2:]:
    y, sr = sf.read(path, dtype="float32")
    assert sr == side["sample_rate"] and y.ndim == 1
    p = session.run(None, {"audio": y[None]})[0][0]
    k = side["classes"].index(side["positive"])
    label = side["positive"] if p[k] >= side["thresholds"]["decision"] else side["classes"][1 - k]
    print(json.dumps({"file": path, "label": label, "score": float(p[k]), "probabilities": p.tolist()}))
assert "respira" not in sys.modules and "torch" not in sys.modules
"""
"""What docs/onnx.md tells a Python app to do with a binary model: onnxruntime, numpy and soundfile only."""


def run_cli(*args: str) -> int:
    with pytest.raises(SystemExit) as done:
        main(list(args))
    return done.value.code


def _maps(x) -> tuple:
    return x if isinstance(x, tuple) else (x,)


def _bundle(path: Path, *, deltas: int = 0, **kwargs) -> Path:
    if not deltas:
        return tiny_bundle(path, **kwargs)
    meta = tiny_meta(**kwargs)
    params = {**meta.model["params"], "in_channels": [1 + deltas] * 2}
    meta = dataclasses.replace(meta, features={**meta.features, "deltas": deltas},
                               model={**meta.model, "params": params})
    save_bundle(path, tiny_members(meta), meta)
    return path


def _clips(n: int, *, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    """Two clips of n samples: a swelling 700 Hz tone in a little noise and a burst of noise, float32 [2, n]."""
    t = np.arange(n) / sample_rate
    tone = np.linspace(0.05, 0.5, n) * np.sin(2 * np.pi * 700 * t) + 0.01 * rng.standard_normal(n)
    burst = np.zeros(n)
    burst[n // 3: n // 3 + n // 5] = 0.3 * rng.standard_normal(n // 5)
    return np.stack([tone, burst]).astype(np.float32)


def _max_difference(path: Path, model, *, rng: np.random.Generator) -> float:
    """Largest |onnx - predict_proba| over two clips of each of `LENGTHS`, fed as one batch per length."""
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for k in LENGTHS:
        clips = _clips(round(k * model.clip_samples), sample_rate=model.sample_rate, rng=rng)
        got = session.run(None, {"audio": clips})[0]
        expected = model.predict_proba(list(clips)).reshape(len(clips), -1)
        assert got.shape == expected.shape
        worst = max(worst, float(np.abs(got - expected).max()))
    return worst


def _op_types(path: Path) -> set[str]:
    return {node.op_type for node in onnx.load(str(path)).graph.node}


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """{name: (bundle, its audio-input export)} of `BUNDLES`."""
    folder = tmp_path_factory.mktemp("audio-onnx")
    bundles = {name: _bundle(folder / f"{name}.respira", **kwargs) for name, kwargs in BUNDLES.items()}
    return {name: (b, export_onnx(b, folder / f"{name}.onnx")) for name, b in bundles.items()}


@pytest.fixture(scope="module")
def builtins(tmp_path_factory) -> dict[str, Path]:
    if not {"cough", "vocal"} <= set(builtin_names()):
        pytest.skip("built-in models not installed")
    folder = tmp_path_factory.mktemp("builtin-onnx")
    return {name: export_onnx(name, folder / f"{name}.onnx") for name in ("cough", "vocal")}


@pytest.mark.parametrize("name", BUNDLES)
def test_any_length_gives_predict_proba(tiny, name):
    bundle, path = tiny[name]
    assert _max_difference(path, load_model(bundle), rng=np.random.default_rng(1)) <= 1e-4


@pytest.mark.parametrize("name", ["cough", "vocal"])
def test_builtins_give_predict_proba_on_synthetic_audio(builtins, name):
    assert _max_difference(builtins[name], load_model(name), rng=np.random.default_rng(2)) <= 1e-4


def test_one_input_one_output_plain_operators(tiny, builtins):
    for bundle, path in tiny.values():
        graph = onnx.load(str(path))
        onnx.checker.check_model(graph, full_check=True)
        assert [i.name for i in graph.graph.input] == ["audio"]
        dims = graph.graph.input[0].type.tensor_type.shape.dim
        assert [d.dim_param for d in dims] == ["batch", "samples"]
        assert [o.name for o in graph.graph.output] == [TASKS[load_model(bundle).task].output]
    graphs = [p for _, p in tiny.values()] + list(builtins.values())
    assert set().union(*map(_op_types, graphs)) <= OPS
    documented = DOCS.read_text()
    assert all(f"`{op}`" in documented for op in OPS)


def test_sidecar_names_the_input(tiny, builtins):
    side = json.loads(tiny["binary-mean-pair"][1].with_suffix(".json").read_text())
    assert side["input"] == "audio" and side["inputs"] == [{"name": "audio", "shape": ["batch", "samples"]}]
    assert side["output"] == {"name": "probabilities", "shape": ["batch", 2]}
    assert side["sample_rate"] == SR and side["clip_samples"] == SR and side["classes"] == ["other", "cough"]
    cough = json.loads(builtins["cough"].with_suffix(".json").read_text())
    assert (cough["sample_rate"], cough["clip_samples"], cough["pooling"]) == (8000, 12000, "max")
    assert builtins["cough"].stat().st_size < 3e6 and builtins["vocal"].stat().st_size < 6e6  # a few MB


def test_respira_refuses_to_run_a_raw_audio_export_as_a_feature_graph(tiny):
    with pytest.raises(ModelError, match="takes raw audio .*--input features"):
        load_model(tiny["binary-mean-pair"][1], backend="onnx")


def test_plain_onnxruntime_agrees_with_respira_predict(tiny, tmp_path, capsys):
    bundle, path = tiny["binary-mean-pair"]
    rng = np.random.default_rng(3)
    wavs = [write_clip(tmp_path / f"{k}.wav", _clips(round(k * SR), sample_rate=SR, rng=rng)[0])
            for k in (0.4, 1.0, 3.3)]
    csv = tmp_path / "p.csv"
    assert run_cli("predict", str(bundle), *map(str, wavs), "--format", "csv", "-o", str(csv)) in (0, None)
    expected = pd.read_csv(csv).set_index("file")
    done = subprocess.run([sys.executable, "-c", SCRIPT, str(path), *map(str, wavs)], capture_output=True, text=True,
                          check=True)
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == len(wavs)
    for row in rows:
        want = expected.loc[row["file"]]
        assert row["label"] == want["label"] and row["score"] == pytest.approx(want["score"], abs=1e-4)
        assert row["probabilities"] == pytest.approx([want["prob_other"], want["prob_cough"]], abs=1e-4)


def test_cli_input_option(tiny, tmp_path, capsys):
    bundle, _ = tiny["binary-mean-pair"]
    for flags, graph_input, name in (([], "audio", "audio"), (["--input", "features"], "features", "logmel")):
        out = tmp_path / f"{graph_input}.onnx"
        assert run_cli("export", str(bundle), "-o", str(out), *flags) in (0, None)
        assert [i.name for i in onnx.load(str(out)).graph.input] == [name]
        assert json.loads(out.with_suffix(".json").read_text())["input"] == graph_input
    with pytest.raises(ConfigError, match="input must be one of audio, features"):
        export_onnx(bundle, tmp_path / "x.onnx", input="spectrogram")


def test_export_checks_the_graph_against_respira(tiny, tmp_path, monkeypatch):
    monkeypatch.setattr(export, "TOLERANCE", 0.0)  # float32 STFT: the graph is ~1e-7 off, never exactly equal
    with pytest.raises(ModelError, match="differs from PyTorch"):
        export_onnx(tiny["binary-mean-pair"][0], tmp_path / "strict.onnx")


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("positive", [None, 0, 1])
def test_graph_pooling_is_the_task_pooling(task, positive):
    rng = np.random.default_rng(4)
    p = rng.random((3, 5, 2)).astype(np.float32)
    p[1, 3] = p[1, 1]  # a tie: the first window wins, as in numpy
    for pooling in ("mean", "max"):
        got = pool(torch.from_numpy(p), task=task, pooling=pooling, positive_index=positive).numpy()
        want = [TASKS[task].pool(clip, pooling=pooling, positive_index=positive) for clip in p]
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-7)


@pytest.mark.parametrize("cfg", [FeatureConfig(n_mels=32, n_mfcc=13),
                                 FeatureConfig(kind="dual", n_mels=32, n_mfcc=13, deltas=2),
                                 FeatureConfig(sample_rate=8000, win_length=201, hop_length=80)])
def test_conv_front_end_gives_the_features(cfg):
    y = _clips(cfg.sample_rate, sample_rate=cfg.sample_rate, rng=np.random.default_rng(5))
    with torch.no_grad():
        got = _maps(ConvFrontEnd(cfg)(torch.from_numpy(y)))
    for a, b in zip(got, _maps(features(y, cfg)), strict=True):
        assert a.shape == b.shape and float((a - b).abs().max()) < 2e-4  # dB: float32 against the float64 STFT


# --- real clips -------------------------------------------------------------------------------


def _covid_clips(root: Path, source: str, n: int) -> list[Path]:
    rows = json.loads((root / "metadata.json").read_text())
    paths = [root / "raw" / r["filename"] for r in rows if r["source"] == source]
    return [p for p in paths if p.is_file() and p.stat().st_size > 2000][:n]


@pytest.mark.shared
@pytest.mark.parametrize("name", ["cough", "vocal"])
def test_real_clips_at_8_16_and_48_khz(name, builtins, shared_data):
    """nonverbal wavs (16 kHz), covid19-cough call-centre (8 kHz, 2 channels) and Telegram (48 kHz)
    mp3s, resampled by the caller to the model's rate: the graph gives `respira predict`'s numbers."""
    nonverbal = shared_data / "nonverbal-vocalization"
    covid = shared_data / "covid19-cough"
    files = ([sorted((nonverbal / c).glob("*.wav"))[0] for c in ("coughing", "laughing", "sneezing")]
             + _covid_clips(covid, "call-center", 3) + _covid_clips(covid, "telegram", 3))
    records = load_model(name).predict([str(f) for f in files])
    side = json.loads(builtins[name].with_suffix(".json").read_text())
    session = ort.InferenceSession(str(builtins[name]), providers=["CPUExecutionProvider"])
    for path, record in zip(files, records):
        y = audio.load(path, sample_rate=side["sample_rate"])
        p = session.run(None, {"audio": y[None]})[0][0]
        np.testing.assert_allclose(p, [record["probabilities"][c] for c in side["classes"]], rtol=0, atol=1e-4)
