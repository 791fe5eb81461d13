"""ONNX export: the (averaged) ensemble as one graph, plus a JSON sidecar.

Two graphs (`INPUTS`). "audio" (the default): input "audio" [batch, samples] float32 mono at the
sidecar's sample_rate, any number of samples; output the pooled probabilities of each whole clip,
what `respira predict` gives (`respira.onnx_graph.ClipGraph`: windows, features, ensemble,
pooling inside the graph). "features": the feature maps of one window ([batch, channels, bins,
frames], named after the feature kind: "logmel", "mfcc", or both for "dual"; batch and frames are
dynamic, the model was trained on the frames of clip_s) -> the probabilities of each window.
The output is "probabilities" [batch, n_classes] (regression: "value" [batch, 1]). The sidecar
``<out>.json`` names the input, the labels and the bundle's metadata, and holds the front-end
recipe a "features" graph needs (see docs/onnx.md).
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from respira.bundle import SIDECAR_FORMAT, SIDECAR_VERSION
from respira.errors import ConfigError, ModelError
from respira.features import AMIN, DELTA_WIDTH, KIND_MAPS, FeatureExtractor, n_frames
from respira.inference import Model, feature_inputs, load_model
from respira.tasks import TASKS, positive_index

if TYPE_CHECKING:
    from torch import nn

OPSET = 17
TOLERANCE = 1e-4
"""Largest |onnxruntime - torch| allowed on the check clips; export fails above it."""
INPUTS = ("audio", "features")
"""What an exported graph takes: raw audio (the default) or the feature maps of one window."""
CHECK_LENGTHS = (0.6, 1.0, 2.5)
"""Lengths, in windows, of the noise clips on which an "audio" graph is checked against `Model.predict_proba`."""


@dataclass(frozen=True)
class _Graph:
    """What to trace (module on example inputs), its input names and dynamic axes, and the checks:
    (onnxruntime feeds, the outputs torch gives for them)."""

    module: nn.Module
    inputs: tuple
    names: list[str]
    axes: dict[str, dict[int, str]]
    checks: list[tuple[dict[str, np.ndarray], np.ndarray]]


def export_onnx(model: Model | str | os.PathLike, out: str | os.PathLike, *, input: str = "audio",
                opset: int = OPSET) -> Path:
    """Write `model` (a Model on the torch backend, a bundle path or a built-in name) to the ONNX file `out`.

    One self-contained file taking `input` (one of `INPUTS`) with dynamic axes, checked with
    onnx.checker and against PyTorch on noise clips (|difference| <= 1e-4); the sidecar goes to
    out.with_suffix(".json"). Returns `out` as a Path.
    """
    import onnx
    import torch

    if input not in INPUTS:
        raise ConfigError(f"export: input must be one of {', '.join(INPUTS)}, got {input!r}")
    if not isinstance(model, Model):
        model = load_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ensemble = copy.deepcopy(model.ensemble).cpu().eval()
    graph = _audio_graph(model, ensemble) if input == "audio" else _feature_graph(model, ensemble)
    output_name = TASKS[model.task].output
    try:
        # The TorchScript exporter is deprecated but exports these models in one file; window lengths are
        # fixed where it warns of traced constants (the checks try several clip lengths); Pad's reversed
        # pads stay Slice ops.
        with warnings.catch_warnings():
            for category in (DeprecationWarning, torch.jit.TracerWarning):
                warnings.simplefilter("ignore", category)
            warnings.filterwarnings("ignore", "Constant folding", UserWarning)
            torch.onnx.export(
                graph.module, graph.inputs, str(out), input_names=graph.names, output_names=[output_name],
                dynamic_axes={**graph.axes, output_name: {0: "batch"}}, opset_version=opset, dynamo=False,
            )
        onnx.checker.check_model(str(out), full_check=True)
    except Exception as e:  # the exporter and checker raise many untyped errors
        raise ModelError(f"cannot export {model.name!r} to ONNX: {e}") from e
    _check_against_torch(out, graph.checks)
    out.with_suffix(".json").write_text(json.dumps(sidecar(model, input=input), indent=1) + "\n")
    return out


def _audio_graph(model: Model, ensemble: nn.Module) -> _Graph:
    """The raw-audio graph, checked against `Model.predict_proba` on pairs of noise clips of `CHECK_LENGTHS`."""
    import torch

    from respira.onnx_graph import ClipGraph

    module = ClipGraph(ensemble, cfg=model.feature_config, length=model.clip_samples, task=model.task,
                       pooling=model.meta.pooling, positive_index=positive_index(model.classes, model.positive))
    rng = np.random.default_rng(0)
    clips = [(rng.standard_normal((2, round(k * model.clip_samples))) * 0.1).astype(np.float32) for k in CHECK_LENGTHS]
    checks = [({"audio": c}, model.predict_proba(list(c)).reshape(len(c), -1)) for c in clips]
    return _Graph(module.eval(), (torch.from_numpy(clips[-1]),), ["audio"], {"audio": {0: "batch", 1: "samples"}},
                  checks)


def _feature_graph(model: Model, ensemble: nn.Module) -> _Graph:
    """The feature-input graph (the ensemble alone), checked against it on a noise clip."""
    import torch

    noise = np.random.default_rng(0).standard_normal((2, model.clip_samples)).astype(np.float32) * 0.1
    with torch.no_grad():  # not inference_mode: the exporter traces these tensors
        inputs = feature_inputs(torch.from_numpy(noise), model.feature_config)
        expected = ensemble(*inputs).numpy()
    names = list(KIND_MAPS[model.feature_config.kind])
    feeds = {name: x.numpy() for name, x in zip(names, inputs)}
    return _Graph(ensemble, inputs, names, {name: {0: "batch", 3: "frames"} for name in names}, [(feeds, expected)])


def load_exported(name_or_path: str | os.PathLike) -> Model:
    """A Model on onnxruntime: an .onnx file (with its sidecar) as it is, or a bundle (a path or a
    built-in name) exported to a "features" graph in a temporary folder first — what
    `respira predict --backend onnx` runs."""
    if Path(name_or_path).suffix == ".onnx":
        return Model.from_onnx(name_or_path)
    torch_model = load_model(name_or_path)
    with tempfile.TemporaryDirectory(prefix="respira-onnx-") as tmp:
        path = export_onnx(torch_model, Path(tmp) / f"{torch_model.name}.onnx", input="features")
        return Model.from_onnx(path, name=torch_model.name)


def _check_against_torch(path: Path, checks: list[tuple[dict[str, np.ndarray], np.ndarray]]) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    diff = max(float(np.max(np.abs(session.run(None, feeds)[0] - expected))) for feeds, expected in checks)
    if not diff <= TOLERANCE:
        raise ModelError(f"{path}: ONNX output differs from PyTorch by {diff:.2e} (> {TOLERANCE:g})")


def sidecar(model: Model, *, input: str = "audio") -> dict[str, Any]:
    """The JSON sidecar of `model`'s ONNX export taking `input`: input/output shapes, labels, the
    front-end recipe (for a "features" graph), bundle meta."""
    meta, cfg = model.meta, model.feature_config
    frames = n_frames(model.clip_samples, cfg)
    bins = {"logmel": cfg.n_mels, "mfcc": cfg.n_mfcc}
    inputs = ([{"name": "audio", "shape": ["batch", "samples"]}] if input == "audio" else
              [{"name": name, "shape": ["batch", cfg.channels, bins[name], frames]} for name in KIND_MAPS[cfg.kind]])
    extractor = FeatureExtractor(cfg)
    front_end: dict[str, Any] = {
        **cfg.to_dict(),
        "fmax": cfg.mel_fmax,
        "window": "hann, periodic, win_length samples, zero-padded centred to n_fft",
        "center": True,
        "pad_mode": "constant (zeros)",
        "power": 2.0,
        "mel_norm": "slaney",
        "mel_htk": False,
        "amin": AMIN,
        "ref": 1.0,
        "log": "10 * log10(max(mel_power, amin))",
        "top_db_clamp": "per window: max(db, max(db over the window) - top_db)",
        "delta_width": DELTA_WIDTH,
        "mel_basis": _rounded(extractor.mel_basis.numpy()),
    }
    if "mfcc" in KIND_MAPS[cfg.kind]:
        front_end["dct"] = _rounded(extractor.dct.numpy())
    return {
        "format": SIDECAR_FORMAT,
        "format_version": SIDECAR_VERSION,
        "name": model.name,
        "task": meta.task,
        "classes": list(meta.classes),
        "positive": meta.positive,
        "thresholds": meta.thresholds,
        "pooling": meta.pooling,
        "sample_rate": model.sample_rate,
        "clip_s": model.clip_s,
        "clip_samples": model.clip_samples,
        "input": input,
        "inputs": inputs,
        "output": {"name": TASKS[meta.task].output, "shape": ["batch", len(meta.classes)]},
        "features": front_end,
        "bundle": meta.to_dict(),
    }


def _rounded(a: np.ndarray) -> list:
    """float32 matrix -> nested lists of floats with 9 significant digits (exact in float32)."""
    return [[float(f"{v:.9g}") for v in row] for row in a.astype(np.float32).tolist()]
