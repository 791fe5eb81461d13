"""respira.models: the registry, shapes, PANNs checkpoint loading, ONNX export, trainability."""

from __future__ import annotations

import io
import pickle
import time

import numpy as np
import pytest
import torch

from respira.errors import ModelError
from respira.models import MODELS, build_model, load_pretrained, model_params

SINGLE_INPUT = ["compact_cnn", "resnet", "mobilenet", "cnn6", "cnn10", "cnn14"]


def features(batch: int, n_bins: int, frames: int, *, channels: int = 1, seed: int = 0) -> torch.Tensor:
    """Log-mel-like input in dB."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, channels, n_bins, frames, generator=g) * 15 - 40


def run(model: torch.nn.Module, *inputs: torch.Tensor) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(*inputs)


def test_registry_lists_the_models():
    assert set(MODELS) == {*SINGLE_INPUT, "dual"}
    assert model_params("compact_cnn") == {"channels": (32, 64, 128, 128), "dropout": 0.2}
    assert model_params("cnn14") == {}


@pytest.mark.parametrize("name", SINGLE_INPUT)
def test_output_shape_for_any_batch_and_frame_count(name):
    torch.manual_seed(0)
    model = build_model(name, n_classes=4)
    for batch, frames in [(1, 32), (3, 57), (2, 100)]:
        y = run(model, features(batch, 64, frames))
        assert y.shape == (batch, 4) and torch.isfinite(y).all()


@pytest.mark.parametrize("name", SINGLE_INPUT)
def test_mfcc_with_deltas_and_a_single_output(name):
    """13 coefficients x 3 channels (static, delta, delta-delta) into a 1-output head."""
    y = run(build_model(name, n_classes=1, in_channels=3, n_bins=13), features(2, 13, 40, channels=3))
    assert y.shape == (2, 1) and torch.isfinite(y).all()


def test_dual_takes_mfcc_and_logmel():
    model = build_model("dual", n_classes=3, in_channels=(3, 1), n_bins=(20, 64))
    for batch, frames in [(1, 32), (4, 101)]:
        y = run(model, features(batch, 20, frames, channels=3), features(batch, 64, frames))
        assert y.shape == (batch, 3)
    y2 = run(model, features(4, 20, 101, channels=3), features(4, 64, 101, seed=1))
    assert not torch.allclose(y, y2)  # the logmel branch counts
    assert build_model("dual", n_classes=2, n_bins=40).mfcc.bn0.num_features == 40
    with pytest.raises(ModelError, match="pair"):
        build_model("dual", n_classes=2, n_bins=(20, 40, 64))


def test_outputs_depend_on_the_input():
    torch.manual_seed(0)
    model = build_model("compact_cnn", n_classes=2)
    y = run(model, torch.cat([features(1, 64, 100, seed=1), features(1, 64, 100, seed=2)]))
    assert not torch.allclose(y[0], y[1])


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_parameter_counts():
    assert 100_000 < n_params(build_model("compact_cnn", n_classes=2)) < 1_000_000
    assert n_params(build_model("compact_cnn", n_classes=2, channels=(16, 32))) < 10_000
    assert 4_000_000 < n_params(build_model("cnn6", n_classes=2)) < 5_000_000
    assert 4_500_000 < n_params(build_model("cnn10", n_classes=2)) < 5_500_000
    # Cnn14 as published: 80.75M with its 527-class head
    assert n_params(build_model("cnn14", n_classes=527)) == pytest.approx(80.75e6, rel=0.005)
    assert n_params(build_model("mobilenet", n_classes=2, width_mult=0.5)) < n_params(build_model("mobilenet", n_classes=2))
    assert n_params(build_model("resnet", n_classes=2, widths=(16, 32), blocks=(1, 1))) < 50_000


def test_build_model_errors_name_the_problem():
    with pytest.raises(ModelError, match=r"unknown model 'vgg'.*compact_cnn.*resnet"):
        build_model("vgg", n_classes=2)
    with pytest.raises(ModelError, match=r"depth.*channels, dropout"):
        build_model("compact_cnn", n_classes=2, depth=3)
    with pytest.raises(ModelError, match="n_classes"):
        build_model("compact_cnn", n_classes=0)
    with pytest.raises(ModelError, match="channels"):
        build_model("compact_cnn", n_classes=2, channels=())
    with pytest.raises(ModelError, match="blocks"):
        build_model("resnet", n_classes=2, widths=(16, 32), blocks=(1,))


def test_compact_cnn_is_fast_on_cpu():
    """32 clips x 4 s of 64-bin log-mel in well under 0.3 s of one core's time (CPU time: robust to load)."""
    model, x = build_model("compact_cnn", n_classes=2).eval(), features(32, 64, 400)
    times = []
    with torch.inference_mode():
        model(x)
        for _ in range(3):
            start = time.process_time()
            model(x)
            times.append(time.process_time() - start)
    assert min(times) < 0.3


# --- PANNs checkpoints ------------------------------------------------------------------------

PANNS = {  # name -> (published file name, conv kernel, conv blocks, convs per block, fc1 width)
    "cnn6": ("Cnn6_mAP=0.343.pth", 5, 4, 1, 512),
    "cnn10": ("Cnn10_mAP=0.380.pth", 3, 4, 2, 512),
    "cnn14": ("Cnn14_mAP=0.431.pth", 3, 6, 2, 2048),
}


def panns_keys(name: str) -> dict[str, tuple[int, ...]]:
    """The published checkpoint's names and shapes after the front end (from PANNs' models.py)."""
    _, kernel, n_blocks, convs, fc = PANNS[name]
    bn = ("weight", "bias", "running_mean", "running_var")
    keys: dict[str, tuple[int, ...]] = {f"bn0.{k}": (64,) for k in bn} | {"bn0.num_batches_tracked": ()}
    widths = [64 * 2**i for i in range(n_blocks)]
    for i, (c_in, c_out) in enumerate(zip([1, *widths], widths), start=1):
        for j in range(1, convs + 1):
            keys[f"conv_block{i}.conv{j}.weight"] = (c_out, c_in if j == 1 else c_out, kernel, kernel)
            keys |= {f"conv_block{i}.bn{j}.{k}": (c_out,) for k in bn} | {f"conv_block{i}.bn{j}.num_batches_tracked": ()}
    return keys | {"fc1.weight": (fc, fc), "fc1.bias": (fc,), "fc_audioset.weight": (527, fc), "fc_audioset.bias": (527,)}


def write_panns_checkpoint(name: str, folder) -> tuple[str, dict[str, torch.Tensor]]:
    """A checkpoint in the published layout: our model with its head renamed, a front end, random values."""
    g = torch.Generator().manual_seed(1)
    state = {}
    for key, value in build_model(name, n_classes=527).state_dict().items():
        key = key.replace("head.", "fc_audioset.")
        state[key] = value + torch.rand(value.shape, generator=g) if value.is_floating_point() else value + 7
    state["spectrogram_extractor.stft.conv_real.weight"] = torch.randn(513, 1, 1024, generator=g)
    state["logmel_extractor.melW"] = torch.randn(513, 64, generator=g)
    path = folder / PANNS[name][0]
    torch.save({"model": state}, path)
    return path, state


@pytest.mark.parametrize("name", list(PANNS))
def test_layer_names_and_shapes_match_the_published_checkpoints(name):
    ours = {k: tuple(v.shape) for k, v in build_model(name, n_classes=527).state_dict().items()}
    ours = {k.replace("head.", "fc_audioset."): v for k, v in ours.items()}
    assert ours == panns_keys(name)


@pytest.mark.parametrize("name", list(PANNS))
def test_panns_checkpoint_loads_everything_but_the_head_and_front_end(name, tmp_path):
    path, state = write_panns_checkpoint(name, tmp_path)
    model = build_model(name, n_classes=5)
    report = load_pretrained(model, path)
    backbone = [k for k in panns_keys(name) if not k.startswith("fc_audioset.")]
    assert sorted(report["loaded"]) == sorted(backbone)
    assert report["missing"] == ["head.weight", "head.bias"] and report["skipped_shape"] == []
    assert sorted(report["unexpected"]) == sorted(
        ["fc_audioset.weight", "fc_audioset.bias", "spectrogram_extractor.stft.conv_real.weight", "logmel_extractor.melW"]
    )
    loaded = model.state_dict()
    for key in backbone:
        assert torch.equal(loaded[key], state[key]), key
    assert run(model, features(2, 64, 64)).shape == (2, 5)


def test_panns_checkpoint_into_other_mel_bins_skips_bn0(tmp_path):
    path, state = write_panns_checkpoint("cnn6", tmp_path)
    model = build_model("cnn6", n_classes=2, n_bins=128)
    report = load_pretrained(model, path)
    assert sorted(report["skipped_shape"]) == ["bn0.bias", "bn0.running_mean", "bn0.running_var", "bn0.weight"]
    assert "conv_block1.conv1.weight" in report["loaded"] and "fc1.weight" in report["loaded"]
    assert torch.equal(model.conv_block4.conv1.weight, state["conv_block4.conv1.weight"])


def test_state_dict_and_safetensors_checkpoints(tmp_path):
    from safetensors.torch import save_file

    source = build_model("compact_cnn", n_classes=3)
    with torch.no_grad():
        for p in source.parameters():
            p.add_(1.0)
    state = source.state_dict()
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pt")
    torch.save(state, tmp_path / "bare.pt")
    save_file({k: v.contiguous() for k, v in state.items()}, tmp_path / "weights.safetensors")
    x = features(2, 64, 80)
    for name in ("wrapped.pt", "bare.pt", "weights.safetensors"):
        model = build_model("compact_cnn", n_classes=3)
        report = load_pretrained(model, tmp_path / name)
        assert sorted(report["loaded"]) == sorted(state) and not report["missing"] and not report["unexpected"]
        assert torch.equal(run(model, x), run(source, x)), name


def test_bad_checkpoints_raise_model_error(tmp_path):
    model = build_model("compact_cnn", n_classes=2)
    with pytest.raises(ModelError, match="not found"):
        load_pretrained(model, tmp_path / "Cnn14_mAP=0.431.pth")
    garbage = tmp_path / "garbage.pth"
    garbage.write_bytes(b"\x00not a checkpoint" * 100)
    with pytest.raises(ModelError, match="garbage.pth"):
        load_pretrained(model, garbage)
    bad_safetensors = tmp_path / "bad.safetensors"
    bad_safetensors.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelError, match="bad.safetensors"):
        load_pretrained(model, bad_safetensors)
    unsafe = tmp_path / "unsafe.pth"  # arbitrary objects are refused (weights_only)
    unsafe.write_bytes(pickle.dumps({"model": {"x": object()}}))
    with pytest.raises(ModelError, match="unsafe.pth"):
        load_pretrained(model, unsafe)
    unrelated = tmp_path / "other.pth"
    torch.save({"model": {"encoder.weight": torch.zeros(3)}}, unrelated)
    with pytest.raises(ModelError, match="no tensor matches"):
        load_pretrained(model, unrelated)


# --- ONNX -----------------------------------------------------------------------------------


def export(model: torch.nn.Module, inputs: dict[str, torch.Tensor]) -> bytes:
    f = io.BytesIO()
    torch.onnx.export(
        model.eval(),
        tuple(inputs.values()),
        f,
        input_names=list(inputs),
        output_names=["logits"],
        dynamic_axes={**{k: {0: "batch", 3: "frames"} for k in inputs}, "logits": {0: "batch"}},
        dynamo=False,
    )
    return f.getvalue()


def train_briefly(model: torch.nn.Module, *inputs: torch.Tensor, steps: int = 3) -> None:
    """A few optimiser steps, so BatchNorm statistics and weights are not at their initial values."""
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(steps):
        optimiser.zero_grad()
        model(*inputs).square().mean().backward()
        optimiser.step()


@pytest.mark.parametrize("name", ["compact_cnn", "dual"])
def test_onnx_export_matches_torch_for_any_batch_and_frames(name):
    ort = pytest.importorskip("onnxruntime")
    torch.manual_seed(0)
    model = build_model(name, n_classes=3, n_bins=(20, 64) if name == "dual" else 64)
    bins = {"mfcc": 20, "logmel": 64} if name == "dual" else {"features": 64}
    train_briefly(model, *(features(4, b, 60) for b in bins.values()))
    session = ort.InferenceSession(export(model, {k: features(2, b, 50) for k, b in bins.items()}))
    for batch, frames in [(1, 32), (5, 173)]:
        inputs = {k: features(batch, b, frames, seed=batch) for k, b in bins.items()}
        expected = run(model, *inputs.values()).numpy()
        (got,) = session.run(None, {k: v.numpy() for k, v in inputs.items()})
        assert got.shape == (batch, 3) and expected.std() > 1e-3
        np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


# --- training sanity ------------------------------------------------------------------------


def test_compact_cnn_fits_a_small_random_set():
    torch.manual_seed(0)
    x = features(32, 64, 48, seed=3)
    y = torch.arange(32) % 2
    model = build_model("compact_cnn", n_classes=2)
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(50):
        model.train()
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
        if step % 5 == 4 and (run(model, x).argmax(dim=1) == y).all():
            break
    assert (run(model, x).argmax(dim=1) == y).float().mean() == 1.0
