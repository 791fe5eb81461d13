"""Small untrained model bundles for the bundle / inference / export / CLI tests (seeded, fast)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from respira import audio
from respira.bundle import BundleMeta, save_bundle
from respira.features import FeatureConfig, features
from respira.models import build_model

SR = 16000
CHANNELS = (8, 16)  # a narrow compact_cnn: fast on a shared CPU


def tiny_meta(*, task: str = "classification", classes=("other", "cough"), positive: str | None = "cough",
              n_outputs: int | None = None, kind: str = "logmel", clip_s: float = 1.0, pooling: str = "mean",
              thresholds: dict | None = None) -> BundleMeta:
    """BundleMeta of a compact_cnn (or dual, for kind "dual") on 32-mel features."""
    cfg = FeatureConfig(kind=kind, n_mels=32, n_mfcc=13)
    n_out = len(classes) if n_outputs is None else n_outputs
    if kind == "dual":
        model = {"name": "dual", "params": {"n_classes": n_out, "in_channels": [1, 1], "n_bins": [13, 32], "channels": list(CHANNELS)}}
    else:
        bins = cfg.n_mels if kind == "logmel" else cfg.n_mfcc
        model = {"name": "compact_cnn", "params": {"n_classes": n_out, "in_channels": 1, "n_bins": bins, "channels": list(CHANNELS)}}
    return BundleMeta(task=task, classes=tuple(classes), features=cfg.to_dict(), model=model, clip_s=clip_s,
                      positive=positive, pooling=pooling, thresholds=thresholds or {"decision": 0.5},
                      provenance={"metrics": {"balanced_accuracy": 0.75, "roc_auc": 0.8}})


def tiny_members(meta: BundleMeta, *, n: int = 1, seed: int = 0) -> list[torch.nn.Module]:
    """`n` untrained members of meta.model in eval mode: seeded weights, BatchNorm statistics taken
    from tones, so that different audio gives clearly different outputs."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    cfg = FeatureConfig.from_dict(meta.features)
    waves = np.stack([tone_clip(f, meta.clip_s, rng=rng) * g for f, g in zip((200, 500, 1500, 4000), (0.05, 0.3, 1.0, 0.1))])
    with torch.no_grad():
        inputs = features(waves, cfg)
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    members = []
    for _ in range(n):
        m = build_model(meta.model["name"], **meta.model["params"])
        for module in m.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.momentum = None  # cumulative average over the calibration batch
        with torch.no_grad():
            m.train()(*inputs)
        members.append(m.eval())
    return members


def tiny_bundle(path: Path, *, n: int = 1, seed: int = 0, **meta_kwargs) -> Path:
    """Write a tiny bundle to `path` and return the path."""
    meta = tiny_meta(**meta_kwargs)
    save_bundle(path, tiny_members(meta, n=n, seed=seed), meta)
    return path


def tone_clip(freq: float, seconds: float, *, rng: np.random.Generator, sr: int = SR) -> np.ndarray:
    """A tone plus a little noise, float32 [samples]."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.4 * np.sin(2 * np.pi * freq * t) + 0.02 * rng.standard_normal(len(t))).astype(np.float32)


def write_clip(path: Path, y: np.ndarray, *, sr: int = SR) -> Path:
    audio.write_wav(path, y, sample_rate=sr)
    return path
