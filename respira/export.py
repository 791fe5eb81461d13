"""ONNX export: the (averaged) ensemble as one graph, features in, probabilities out, plus a JSON sidecar.

The graph's inputs are the feature maps of one window ([batch, channels, bins, frames], named
after the feature kind: "logmel", "mfcc", or both for "dual"; batch and frames are dynamic, the
model was trained on the frames of clip_seconds); its output is "probabilities"
[batch, n_classes] (regression: "value" [batch, 1]). The sidecar ``<out>.json`` holds what a
front end needs to compute those inputs from audio (see docs/onnx.md) and the bundle's metadata.
"""

from __future__ import annotations

import copy
import json
import os
import tempfile
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from respira.bundle import SIDECAR_FORMAT, SIDECAR_VERSION
from respira.errors import ModelError
from respira.features import AMIN, DELTA_WIDTH, KIND_MAPS, FeatureExtractor, n_frames
from respira.inference import Model, feature_inputs, load_model
from respira.tasks import TASKS

OPSET = 17
TOLERANCE = 1e-4
"""Largest |onnxruntime - torch| allowed on the check clip; export fails above it."""


def export_onnx(model: Model | str | os.PathLike, out: str | os.PathLike, *, opset: int = OPSET) -> Path:
    """Write `model` (a Model on the torch backend, a bundle path or a built-in name) to the ONNX file `out`.

    One self-contained file with dynamic batch and frame axes, checked with onnx.checker and against
    PyTorch on a noise clip (|difference| <= 1e-4); the sidecar goes to out.with_suffix(".json").
    Returns `out` as a Path.
    """
    import onnx
    import torch

    if not isinstance(model, Model):
        model = load_model(model)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    ensemble = copy.deepcopy(model.ensemble).cpu().eval()
    cfg = model.feature_config
    noise = np.random.default_rng(0).standard_normal((2, model.clip_samples)).astype(np.float32) * 0.1
    with torch.no_grad():  # not inference_mode: the exporter traces these tensors
        inputs = feature_inputs(torch.from_numpy(noise), cfg)
        expected = ensemble(*inputs).numpy()
    input_names = list(KIND_MAPS[cfg.kind])
    output_name = TASKS[model.task].output
    try:
        with warnings.catch_warnings():  # the TorchScript exporter is deprecated but exports these models in one file
            warnings.simplefilter("ignore", DeprecationWarning)
            torch.onnx.export(
                ensemble, inputs, str(out), input_names=input_names, output_names=[output_name],
                dynamic_axes={**{name: {0: "batch", 3: "frames"} for name in input_names}, output_name: {0: "batch"}},
                opset_version=opset, dynamo=False,
            )
        onnx.checker.check_model(str(out), full_check=True)
    except Exception as e:  # the exporter and checker raise many untyped errors
        raise ModelError(f"cannot export {model.name!r} to ONNX: {e}") from e
    _check_against_torch(out, input_names, inputs, expected)
    out.with_suffix(".json").write_text(json.dumps(sidecar(model), indent=1) + "\n")
    return out


def load_exported(name_or_path: str | os.PathLike) -> Model:
    """A Model on onnxruntime: an .onnx file (with its sidecar) as it is, or a bundle (a path or a
    built-in name) exported to ONNX in a temporary folder first — what `respira predict --backend onnx` runs."""
    if Path(name_or_path).suffix == ".onnx":
        return Model.from_onnx(name_or_path)
    torch_model = load_model(name_or_path)
    with tempfile.TemporaryDirectory(prefix="respira-onnx-") as tmp:
        path = export_onnx(torch_model, Path(tmp) / f"{torch_model.name}.onnx")
        return Model.from_onnx(path, name=torch_model.name)


def _check_against_torch(path: Path, names: list[str], inputs: tuple, expected: np.ndarray) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(None, {name: x.numpy() for name, x in zip(names, inputs)})[0]
    diff = float(np.max(np.abs(got - expected)))
    if not diff <= TOLERANCE:
        raise ModelError(f"{path}: ONNX output differs from PyTorch by {diff:.2e} (> {TOLERANCE:g})")


def sidecar(model: Model) -> dict[str, Any]:
    """The JSON sidecar of `model`'s ONNX export: front-end recipe, input/output shapes, labels, bundle meta."""
    meta, cfg = model.meta, model.feature_config
    frames = n_frames(model.clip_samples, cfg)
    bins = {"logmel": cfg.n_mels, "mfcc": cfg.n_mfcc}
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
        "clip_seconds": model.clip_seconds,
        "clip_samples": model.clip_samples,
        "inputs": [{"name": name, "shape": ["batch", cfg.channels, bins[name], frames]} for name in KIND_MAPS[cfg.kind]],
        "output": {"name": TASKS[meta.task].output, "shape": ["batch", len(meta.classes)]},
        "features": front_end,
        "bundle": meta.to_dict(),
    }


def _rounded(a: np.ndarray) -> list:
    """float32 matrix -> nested lists of floats with 9 significant digits (exact in float32)."""
    return [[float(f"{v:.9g}") for v in row] for row in a.astype(np.float32).tolist()]
