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
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from respira.bundle import BundleMeta
from respira.errors import ModelError
from respira.features import AMIN, DELTA_WIDTH, KIND_MAPS, FeatureExtractor, n_frames

if TYPE_CHECKING:
    from respira.inference import Model

OPSET = 17
SIDECAR_FORMAT = "respira-onnx"
SIDECAR_VERSION = 1
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

    from respira.inference import Model, feature_inputs, load_model

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
    output_name = _output_name(model.task)
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


def _output_name(task: str) -> str:
    return "value" if task == "regression" else "probabilities"


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
        "output": {"name": _output_name(meta.task), "shape": ["batch", 1 if meta.task == "regression" else len(meta.classes)]},
        "features": front_end,
        "bundle": meta.to_dict(),
    }


def read_sidecar(onnx_path: str | os.PathLike) -> BundleMeta:
    """The bundle metadata from the sidecar of `onnx_path`; ModelError when it is missing or not ours."""
    path = Path(onnx_path).with_suffix(".json")
    if not Path(onnx_path).is_file():
        raise ModelError(f"ONNX model not found: {onnx_path}")
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise ModelError(f"{onnx_path}: its sidecar {path.name} is missing (export writes both)") from None
    except (OSError, ValueError) as e:
        raise ModelError(f"{path}: unreadable ONNX sidecar: {e}") from None
    if not isinstance(data, dict) or data.get("format") != SIDECAR_FORMAT or "bundle" not in data:
        raise ModelError(f"{path}: not a respira ONNX sidecar")
    if data.get("format_version", 0) > SIDECAR_VERSION:
        raise ModelError(f"{path}: made by a newer respira (sidecar format {data['format_version']}); upgrade respira")
    try:
        return BundleMeta.from_dict(data["bundle"])
    except ModelError as e:
        raise ModelError(f"{path}: {e}") from None


def _rounded(a: np.ndarray) -> list:
    """float32 matrix -> nested lists of floats with 9 significant digits (exact in float32)."""
    return [[float(f"{v:.9g}") for v in row] for row in a.astype(np.float32).tolist()]
