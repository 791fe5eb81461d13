"""The one inference path: a bundle's ensemble scoring audio.

The CLI, the Python API, the HTTP server, the long-recording detector, evaluation and the
ONNX check all go through `Model`, so the same audio gives the same numbers everywhere.

A clip is scored in windows of ``clip_s``: a shorter clip is zero-padded on both sides
to one window; a longer one is cut into windows with a hop of half a window (the last window
ends at the end of the clip) and the window outputs are pooled (``meta.pooling``). Windows of
many clips are batched together; ensemble members' probabilities are averaged.
"""

from __future__ import annotations

import copy
import dataclasses
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn

from respira import display
from respira.bundle import BundleMeta, load_bundle, read_sidecar, resolve
from respira.errors import AudioError, ModelError, RespiraError
from respira.features import FeatureConfig, crop_or_pad, features, log_mel, n_frames
from respira.tasks import TASKS, positive_index
from respira.windowing import WindowGrid

if TYPE_CHECKING:
    import pandas as pd

Runner = Callable[[tuple[torch.Tensor, ...]], np.ndarray]
"""Model inputs (feature maps [n, channels, bins, frames], in KIND_MAPS order) -> outputs [n, outputs]."""


# --- the ensemble as one module: features -> probabilities ---------------------------------


class Ensemble(nn.Module):
    """Ensemble members + task -> probabilities, averaged over members; exported to ONNX as is.

    forward(*inputs) with inputs [batch, channels, bins, frames] (two of them, (mfcc, logmel),
    for "dual" features) -> [batch, n_classes]: the task's activation of each member's logits
    (softmax, sigmoid, none; see respira.tasks); a member with one logit for a 2-class task
    gives sigmoid for the positive class.
    """

    def __init__(self, members: Sequence[nn.Module], meta: BundleMeta) -> None:
        super().__init__()
        if not members:
            raise ModelError("an ensemble needs at least one model")
        self.members = nn.ModuleList(members)
        self.activate = TASKS[meta.task].activate
        self.positive_index = positive_index(meta.classes, meta.positive)
        self.one_logit = self.positive_index is not None and meta.model.get("params", {}).get("n_classes") == 1

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        outputs = [self._probabilities(member(*inputs)) for member in self.members]
        return outputs[0] if len(outputs) == 1 else torch.stack(outputs).mean(dim=0)

    def _probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        if self.one_logit:  # binary with one logit: sigmoid = the positive class
            p = torch.sigmoid(logits)
            return torch.cat([p, 1 - p] if self.positive_index == 0 else [1 - p, p], dim=-1)
        return self.activate(logits)


def feature_inputs(windows: torch.Tensor, cfg: FeatureConfig) -> tuple[torch.Tensor, ...]:
    """Waveforms [n, samples] -> the model inputs, a tuple of [n, channels, bins, frames] (in KIND_MAPS order)."""
    maps = features(windows, cfg)
    return maps if isinstance(maps, tuple) else (maps,)


def window_log_mels(y: torch.Tensor, *, hop: int, n: int, length: int, cfg: FeatureConfig) -> torch.Tensor:
    """Log-mel [n, n_mels, frames] of the windows y[k * hop : k * hop + length], k < n, each equal to
    `log_mel` of that window alone, from one STFT over y [samples >= (n - 1) * hop + length].

    Only a window's first and last frames, which reach into its own zero padding, are computed
    per window; top_db clamps each window below its own maximum. Needs `_strip_ready`.
    """
    raw = dataclasses.replace(cfg, top_db=None)
    left, right = _edge_frames(cfg, length)
    frames, hl = n_frames(length, cfg), cfg.hop_length
    strip = log_mel(y[: (n - 1) * hop + length], raw)  # [n_mels, strip frames], centred like each window's
    index = torch.arange(n, device=y.device)[:, None] * (hop // hl) + torch.arange(frames, device=y.device)
    out = strip[:, index].permute(1, 0, 2).contiguous()
    # Each window's last length - offset samples: their frames from `left` on are the window's from
    # `right` on; its first as many samples hold its frames before `left` too. One call for both.
    offset = (right - left) * hl
    parts = [y[offset:], y] if left else [y[offset:]]
    edges = log_mel(torch.cat([part.unfold(0, length - offset, hop)[:n] for part in parts]), raw)
    out[:, :, right:] = edges[:n, :, left:]
    out[:, :, :left] = edges[n:, :, :left]
    if cfg.top_db is not None:
        out = torch.maximum(out, out.amax(dim=(-2, -1), keepdim=True) - cfg.top_db)
    return out


def _edge_frames(cfg: FeatureConfig, length: int) -> tuple[int, int]:
    """(left, right) for windows `length` long: frames [0, left) and [right, frames) reach into the
    window's zero padding (frame f covers samples [f * hop_length - n_fft // 2, ... + n_fft))."""
    pad = cfg.n_fft // 2
    return -(-pad // cfg.hop_length), max(0, (length + pad - cfg.n_fft) // cfg.hop_length + 1)


def _strip_ready(cfg: FeatureConfig, *, hop: int, length: int) -> bool:
    """Whether `window_log_mels` gives the model inputs of windows `length` long every `hop` samples:
    log-mel features without deltas, hop on the frame grid, and frames between the edges."""
    left, right = _edge_frames(cfg, length)
    return cfg.kind == "logmel" and cfg.deltas == 0 and hop % cfg.hop_length == 0 and left < right


def clip_windows(y: np.ndarray, *, length: int) -> np.ndarray:
    """y [samples] -> windows [n, length] (views where possible).

    Not longer than `length`: one window, y zero-padded on both sides (centred). Longer: the
    windows of a `WindowGrid` with a hop of length // 2, the last moved back to end at the last sample.
    """
    if y.ndim != 1:
        raise AudioError(f"expected a mono clip [samples], got shape {y.shape}")
    if len(y) <= length:
        return crop_or_pad(y, length=length, mode="center")[None]
    starts = WindowGrid(hop=max(1, length // 2), length=length).starts(len(y))
    return np.lib.stride_tricks.sliding_window_view(y, length)[np.minimum(starts, len(y) - length)]


def pooled_outputs(waves: Sequence[np.ndarray], *, score: Callable[[np.ndarray], np.ndarray], length: int,
                   pooling: str, task: str, positive_index: int | None, batch_size: int = 32) -> np.ndarray:
    """Clips -> [clips, outputs] (no clips: [0, 0]): each clip cut by `clip_windows`, its windows scored
    `batch_size` at a time across clips by score (windows [n, length] -> outputs [n, outputs]) and
    pooled by the task's `Task.pool` (positive_index: of a two-class task, see `tasks.positive_index`).

    The one windowing + pooling path: `Model.predict_proba` and validation during training use it.
    """
    if batch_size < 1:
        raise ModelError(f"batch_size must be >= 1, got {batch_size}")
    views = [clip_windows(np.asarray(w, dtype=np.float32), length=length) for w in waves]
    windows = (w for v in views for w in v)
    outputs = [score(np.stack(batch)) for batch in _batched(windows, batch_size)]
    if not outputs:
        return np.zeros((0, 0), np.float32)
    flat = np.concatenate(outputs)
    bounds = np.cumsum([0] + [len(v) for v in views])
    pool = TASKS[task].pool
    return np.array([pool(flat[a:b], pooling=pooling, positive_index=positive_index)
                     for a, b in zip(bounds[:-1], bounds[1:])], dtype=np.float32)


# --- backends: windows -> outputs ----------------------------------------------------------


class _TorchRunner:
    """Runs a fast copy of the ensemble's members: each Conv2d + BatchNorm2d pair fused into one
    convolution (torch.fx), in channels-last memory: 2-3x faster on CPU, outputs equal within ~1e-6."""

    def __init__(self, members: Sequence[nn.Module], meta: BundleMeta, device: torch.device) -> None:
        self.module = Ensemble([_fused(m) for m in members], meta).to(device, memory_format=torch.channels_last).eval()
        self.device = device

    def __call__(self, maps: tuple[torch.Tensor, ...]) -> np.ndarray:
        with torch.inference_mode():
            inputs = [m.to(self.device).contiguous(memory_format=torch.channels_last) for m in maps]
            return self.module(*inputs).float().cpu().numpy()


def _fused(member: nn.Module) -> nn.Module:
    """A copy of `member` (left as it is) with each BatchNorm2d that follows a Conv2d folded into
    it (torch.fx); a plain copy when fx cannot trace the member."""
    from torch import fx
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    try:
        traced = fx.symbolic_trace(copy.deepcopy(member))
    except Exception:  # tracing fails on data-dependent control flow, in many error types
        return copy.deepcopy(member)
    modules = dict(traced.named_modules())
    for node in list(traced.graph.nodes):
        conv = node.args[0] if node.op == "call_module" and node.args else None
        if (isinstance(conv, fx.Node) and conv.op == "call_module" and len(conv.users) == 1
                and type(modules[conv.target]) is nn.Conv2d and type(modules[node.target]) is nn.BatchNorm2d):
            parent, _, name = conv.target.rpartition(".")
            setattr(traced.get_submodule(parent), name, fuse_conv_bn_eval(modules[conv.target], modules[node.target]))
            node.replace_all_uses_with(conv)
            traced.graph.erase_node(node)
    traced.delete_all_unused_submodules()
    traced.recompile()
    return traced


class _OnnxRunner:
    def __init__(self, session: Any) -> None:
        self.session = session
        self.input_names = [i.name for i in session.get_inputs()]

    def __call__(self, maps: tuple[torch.Tensor, ...]) -> np.ndarray:
        feeds = {name: m.cpu().numpy() for name, m in zip(self.input_names, maps)}
        return np.asarray(self.session.run(None, feeds)[0], dtype=np.float32)


# --- sources: what predict() accepts, each loaded on demand -------------------------------


@dataclass(frozen=True)
class _Source:
    """One input clip: its name in the records and how to load it at a sample rate."""

    name: str
    load: Callable[[int], np.ndarray]


def _sources(x: Any, *, sr: int | None) -> list[_Source]:
    items = list(x) if isinstance(x, (list, tuple)) else [x]
    return [_source(item, i, sr=sr) for i, item in enumerate(items)]


def _source(item: Any, index: int, *, sr: int | None) -> _Source:
    from respira import audio

    if isinstance(item, (str, os.PathLike)):
        return _Source(os.fspath(item), lambda rate: audio.load(item, sample_rate=rate))
    if isinstance(item, (bytes, bytearray)) or hasattr(item, "read"):
        return _Source(getattr(item, "name", None) or f"<bytes {index}>", lambda rate: audio.load(item, sample_rate=rate))
    if isinstance(item, (np.ndarray, torch.Tensor)):
        if sr is None:
            raise AudioError("predict: a waveform array needs its sample rate, sample_rate=")
        y = item.detach().cpu().numpy() if isinstance(item, torch.Tensor) else item
        return _Source(f"<array {index}>", lambda rate: _array_at(y, sr=sr, rate=rate))
    raise AudioError(f"predict: cannot read input {index} of type {type(item).__name__} "
                     "(expected a path, bytes, a file object or a 1-D array)")


def _array_at(y: np.ndarray, *, sr: int, rate: int) -> np.ndarray:
    from respira import audio

    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise AudioError(f"a waveform array must be mono [samples], got shape {y.shape}; "
                         "pass a list of arrays for several clips")
    if len(y) == 0:
        raise AudioError("a waveform array is empty")
    return y if sr == rate else audio.resample(y, orig_sample_rate=sr, sample_rate=rate)


# --- the model ------------------------------------------------------------------------------


class Model:
    """A loaded bundle ready to score audio; `load_model` makes one, or `Model(models, meta)` in memory.

    Records from `predict` (one per input, in input order):

    - classification: {"file", "label", "score", "probabilities": {class: p}, "duration_s"}.
      "score" is the probability of "label", except for a binary model (meta.positive set),
      where it is always the positive-class probability, so that one column ranks clips;
      "label" is the positive class when that score >= thresholds["decision"].
    - multilabel: {"file", "labels": [classes with p >= their threshold], "probabilities", "duration_s"};
      a class's threshold is thresholds[class] when present, else thresholds["decision"].
    - regression: {"file", "value", "duration_s"}.
    - an input that fails to load: {"file", "error"}; the others are still scored.
    """

    def __init__(self, models: Sequence[nn.Module], meta: BundleMeta, *, name: str = "",
                 device: str | torch.device = "cpu") -> None:
        device = torch.device(device)
        ensemble = Ensemble(models, meta).to(device).eval()
        self._setup(meta, name, _TorchRunner(ensemble.members, meta, device), device)
        self._ensemble: Ensemble | None = ensemble
        self._screener: Model | None = None

    @classmethod
    def from_onnx(cls, path: str | os.PathLike, *, name: str | None = None) -> Model:
        """An exported ONNX file (with its JSON sidecar, see respira.export) run by onnxruntime."""
        import onnxruntime as ort

        path = Path(path)
        meta = read_sidecar(path)
        try:
            options = ort.SessionOptions()
            options.intra_op_num_threads = torch.get_num_threads()  # one thread setting for both backends
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own untyped errors
            raise ModelError(f"{path}: not a loadable ONNX model: {e}") from None
        if [i.name for i in session.get_inputs()] == ["audio"]:
            raise ModelError(f"{path} takes raw audio (the default of respira export): run it with onnxruntime as "
                             "docs/onnx.md shows; respira runs feature-input exports (respira export MODEL --input features)")
        model = cls.__new__(cls)
        model._setup(meta, name or path.stem, _OnnxRunner(session), torch.device("cpu"))
        model._ensemble = None
        return model

    def _setup(self, meta: BundleMeta, name: str, runner: Runner, device: torch.device) -> None:
        self.meta, self.name, self._run, self._device = meta, name, runner, device
        self.feature_config = FeatureConfig.from_dict(meta.features)
        self.clip_samples = int(round(meta.clip_s * self.sample_rate))
        self._task = TASKS[meta.task]
        self._positive_index = positive_index(meta.classes, meta.positive)

    def __repr__(self) -> str:
        return f"Model({self.name!r}, task={self.task!r}, classes={list(self.classes)}, backend={self.backend!r})"

    @property
    def classes(self) -> tuple[str, ...]:
        return self.meta.classes

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def positive(self) -> str | None:
        return self.meta.positive

    @property
    def sample_rate(self) -> int:
        return self.feature_config.sample_rate

    @property
    def clip_s(self) -> float:
        return float(self.meta.clip_s)

    @property
    def backend(self) -> str:
        return "torch" if self._ensemble is not None else "onnx"

    @property
    def screener(self) -> Model | None:
        """For an ensemble on the torch backend, a Model of its first member alone: the long-recording
        detector scores every window with it and gives the whole ensemble only the windows it finds
        worth a look. None for a single model or the onnx backend."""
        if self._ensemble is None or len(self._ensemble.members) < 2:
            return None
        if self._screener is None:
            self._screener = Model([self._ensemble.members[0]], self.meta, name=f"{self.name}[0]", device=self._device)
        return self._screener

    @property
    def ensemble(self) -> Ensemble:
        """The torch module (features -> probabilities); ModelError for the onnx backend."""
        if self._ensemble is None:
            raise ModelError(f"model {self.name!r} runs on onnxruntime; load it with backend='torch'")
        return self._ensemble

    # scoring

    def score_windows(self, windows: np.ndarray) -> np.ndarray:
        """windows [n, samples] at sample_rate -> [n, n_classes] probabilities (regression: [n]), no pooling.

        Windows are normally clip_samples long; other lengths are scored as they are (every
        model pools over time), which is what a detector with its own window length gets.
        """
        windows = np.asarray(windows, dtype=np.float32)
        if windows.ndim != 2 or windows.shape[1] < 1:
            raise AudioError(f"score_windows expects windows [n, samples] (normally [n, {self.clip_samples}]: "
                             f"{self.clip_s:g} s at {self.sample_rate} Hz), got shape {windows.shape}")
        out = self._outputs(windows) if len(windows) else np.zeros((0, len(self.classes)), np.float32)
        return out[:, 0] if self._task.values else out

    def score_strip(self, y: np.ndarray, *, hop: int, n: int, length: int | None = None, batch_size: int = 64
                    ) -> np.ndarray:
        """Windows k = 0 .. n-1 of y [samples]: y[k * hop : k * hop + length] (length None: clip_samples),
        zero-padded past the end of y -> [n, n_classes] probabilities (regression: [n]), as score_windows.

        Log-mel features with `hop` a multiple of the feature hop are computed once for the whole
        strip (`window_log_mels`: the same numbers, ~5x less work for overlapping windows).
        """
        length = self.clip_samples if length is None else length
        if n < 1 or hop < 1 or length < 1:
            raise AudioError(f"score_strip needs n, hop and length >= 1, got n={n}, hop={hop}, length={length}")
        grid = WindowGrid(hop=hop, length=length)
        y = grid.fit(np.asarray(y, dtype=np.float32), n)
        shared = _strip_ready(self.feature_config, hop=hop, length=length)
        outputs = []
        for k0 in range(0, n, batch_size):
            ks = np.arange(k0, min(n, k0 + batch_size))
            if shared:
                outputs.append(self._strip_outputs(y[k0 * hop: k0 * hop + grid.reach(len(ks))], grid=grid, n=len(ks)))
            else:
                outputs.append(self._outputs(grid.windows(y, ks)))
        out = np.concatenate(outputs)
        return out[:, 0] if self._task.values else out

    def _strip_outputs(self, y: np.ndarray, *, grid: WindowGrid, n: int) -> np.ndarray:
        """Model outputs [n, outputs] of windows 0 .. n-1 of `grid` over y [grid.reach(n) samples], their
        log-mels from one STFT (`window_log_mels`)."""
        with torch.no_grad():  # not inference mode: features may be computed in worker threads
            x = torch.from_numpy(y).to(self._device)
            maps = (window_log_mels(x, hop=grid.hop, n=n, length=grid.length, cfg=self.feature_config)[:, None],)
        return self._run(maps)

    def _outputs(self, windows: np.ndarray) -> np.ndarray:
        """Waveform windows [n, samples] -> model outputs [n, outputs]."""
        with torch.no_grad():  # not inference mode: features may be computed in worker threads
            x = torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)).to(self._device)
            maps = feature_inputs(x, self.feature_config)
        return self._run(maps)

    def predict_proba(self, waves: Sequence[np.ndarray], *, batch_size: int = 32) -> np.ndarray:
        """Mono waveforms at sample_rate -> [n, n_classes] probabilities (regression: [n] values), one row per clip."""
        pooled = pooled_outputs(waves, score=self._outputs, length=self.clip_samples, pooling=self.meta.pooling,
                                task=self.task, positive_index=self._positive_index, batch_size=batch_size)
        pooled = pooled.reshape(-1, len(self.classes))  # no clips: [0, n_classes]
        return pooled[:, 0] if self._task.values else pooled

    def predict(self, x: Any, *, sample_rate: int | None = None, batch_size: int = 32, progress: bool = False) -> list[dict]:
        """Score clips: `x` is a path, bytes, a file object, a 1-D array (with `sample_rate`; resampled), or a list of these.

        Returns one record per input in input order (see the class docstring). Inputs are loaded
        `batch_size` at a time; `progress` shows a bar on stderr (when it is a terminal).
        """
        return [
            {"file": name, "error": error} if error else self._record(name, output, duration_s)
            for name, output, duration_s, error in self._scored(_sources(x, sr=sample_rate), batch_size=batch_size,
                                                                progress=progress)
        ]

    def score_rows(self, manifest: pd.DataFrame, *, batch_size: int = 32, progress: bool = False
                   ) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """Manifest rows (path, start, end in s; both NaN = whole file) -> (outputs, kept, failures).

        outputs: like predict_proba, for the rows that loaded; kept: their positions in `manifest`;
        failures: "row N: reason" for the others (N = the manifest index + 1).
        """
        from respira import audio

        def source(index: Any, path: str, start: float, end: float) -> _Source:
            span = {"start_s": None if np.isnan(start) else float(start), "end_s": None if np.isnan(end) else float(end)}
            return _Source(f"row {index + 1}", lambda rate: audio.load(path, sample_rate=rate, **span))

        starts = np.asarray(manifest["start"], dtype=float)
        ends = np.asarray(manifest["end"], dtype=float)
        sources = [source(i, p, a, b) for i, p, a, b in zip(manifest.index, manifest["path"], starts, ends)]
        outputs, kept, failures = [], [], []
        for position, (name, output, _, error) in enumerate(self._scored(sources, batch_size=batch_size, progress=progress)):
            if error:
                failures.append(f"{name}: {error}")
            else:
                outputs.append(output)
                kept.append(position)
        shape = (len(outputs),) if self._task.values else (len(outputs), len(self.classes))
        return np.array(outputs, dtype=np.float32).reshape(shape), np.asarray(kept, dtype=int), failures

    def _scored(self, sources: Sequence[_Source], *, batch_size: int, progress: bool) -> Iterator[tuple]:
        """(name, output or None, duration_s, error or None) per source, in order, loading `batch_size` at a time."""
        with display.progress(len(sources), description="scoring", enabled=progress) as advance:
            for chunk in _batched(sources, batch_size):
                waves: dict[int, np.ndarray] = {}
                errors: dict[int, str] = {}
                for i, source in enumerate(chunk):
                    try:
                        waves[i] = source.load(self.sample_rate)
                    except Exception as e:  # a decoder failure is reported per input, never aborts the batch
                        errors[i] = _reason(e)
                outputs = dict(zip(waves, self.predict_proba(list(waves.values()), batch_size=batch_size)))
                for i, source in enumerate(chunk):
                    if i in errors:
                        yield source.name, None, 0.0, errors[i]
                    else:
                        yield source.name, outputs[i], len(waves[i]) / self.sample_rate, None
                advance(len(chunk))

    def _record(self, name: str, output: np.ndarray | float, duration_s: float) -> dict:
        fields = self._task.record(output, classes=self.classes, positive=self.positive, thresholds=self.meta.thresholds)
        return {"file": name, **fields, "duration_s": round(float(duration_s), 6)}


def _reason(e: Exception) -> str:
    return str(e) if isinstance(e, RespiraError) else f"{type(e).__name__}: {e}"


def _batched(items: Iterable, n: int) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == n:
            yield batch
            batch = []
    if batch:
        yield batch


# --- loading -------------------------------------------------------------------------------


def load_model(name_or_path: str | os.PathLike, *, backend: str = "torch", device: str = "cpu") -> Model:
    """A built-in name ("cough", "vocal") or a bundle path -> Model.

    backend "torch" runs the bundle with PyTorch on `device`; "onnx" runs an exported ONNX
    file (a path to .onnx with its .json sidecar) with onnxruntime on CPU (to export a bundle and
    run it: `respira.export.load_exported`). Both compute features with the same torch front end.
    """
    if backend not in _BACKENDS:
        raise ModelError(f"unknown backend {backend!r} (choose from {', '.join(_BACKENDS)})")
    return _BACKENDS[backend](name_or_path, device)


def _load_torch(name_or_path: str | os.PathLike, device: str) -> Model:
    if Path(name_or_path).suffix == ".onnx":
        raise ModelError(f"{name_or_path}: an ONNX file runs with backend='onnx'")
    models, meta = load_bundle(name_or_path)
    return Model(models, meta, name=resolve(name_or_path).stem, device=device)


def _load_onnx(name_or_path: str | os.PathLike, device: str) -> Model:
    if Path(name_or_path).suffix != ".onnx":
        raise ModelError(f"{name_or_path}: backend 'onnx' runs an exported .onnx file; export the bundle first "
                         "(`respira export`, or respira.export.load_exported to export and load it)")
    return Model.from_onnx(name_or_path)


_BACKENDS: dict[str, Callable[[str | os.PathLike, str], Model]] = {"torch": _load_torch, "onnx": _load_onnx}
