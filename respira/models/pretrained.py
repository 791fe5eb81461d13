"""Load weights from a local checkpoint into a model, tensor by tensor where names and shapes match."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from respira.errors import ModelError


def load_pretrained(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Copy into `model` every tensor of the checkpoint at `path` whose name and shape match.

    path: a local file, nothing is downloaded: torch (read with weights_only=True) holding
    {"model": state_dict} (as PANNs ships), {"state_dict": state_dict} or a bare state dict;
    or .safetensors. Returns the names {"loaded", "skipped_shape" (in both, shapes differ),
    "missing" (model only), "unexpected" (checkpoint only)}. Raises ModelError for a missing or
    unreadable file, or one that shares no tensor with the model.
    """
    path = Path(path)
    state = _read_state_dict(path)
    report: dict[str, list[str]] = {"loaded": [], "skipped_shape": [], "missing": [], "unexpected": []}
    own = model.state_dict()
    with torch.no_grad():
        for name, tensor in own.items():
            if name not in state:
                report["missing"].append(name)
            elif state[name].shape != tensor.shape:
                report["skipped_shape"].append(name)
            else:
                tensor.copy_(state[name])
                report["loaded"].append(name)
    report["unexpected"] = [name for name in state if name not in own]
    if not report["loaded"]:
        sample = ", ".join(list(state)[:5])
        raise ModelError(f"{path}: no tensor matches the model by name and shape (checkpoint has {sample}, ...)")
    return report


def _read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint file not found")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            raw = load_file(str(path))
        else:
            raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # a corrupt file fails in the unpickler, zip reader or safetensors in many ways
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"{path}: not a readable checkpoint ({reason})") from e
    for key in ("model", "state_dict"):
        if isinstance(raw, Mapping) and isinstance(raw.get(key), Mapping):
            raw = raw[key]
            break
    tensors = {k: v for k, v in raw.items() if isinstance(v, torch.Tensor)} if isinstance(raw, Mapping) else {}
    if not tensors:
        raise ModelError(f"{path}: holds no state dict of tensors")
    return tensors
