"""The one inference path: every input form gives the same numbers, long clips are windowed and
pooled, short ones padded, ensembles averaged, bad files reported without stopping the batch."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
import torch
from tiny_models import SR, tiny_bundle, tiny_members, tiny_meta, tone_clip, write_clip

from respira import audio
from respira.bundle import BundleMeta
from respira.errors import AudioError, ModelError
from respira.features import FeatureConfig, features
from respira.inference import Model, clip_windows, load_model


@pytest.fixture(scope="module")
def model() -> Model:
    meta = tiny_meta()
    return Model(tiny_members(meta), meta, name="tiny")


@pytest.fixture(scope="module")
def clips(tmp_path_factory) -> list:
    """Three 1-s test clips written as WAV: (path, waveform as read back)."""
    folder = tmp_path_factory.mktemp("clips")
    rng = np.random.default_rng(0)
    out = []
    for i, (freq, seconds) in enumerate([(300, 1.0), (2500, 1.0), (900, 0.7)]):
        path = write_clip(folder / f"clip{i}.wav", tone_clip(freq, seconds, rng=rng))
        out.append((path, audio.load(path, sample_rate=SR)))
    return out


def test_every_input_form_gives_the_same_numbers(model, clips):
    paths = [p for p, _ in clips]
    waves = [y for _, y in clips]
    expected = model.predict_proba(waves)
    assert expected.shape == (3, 2)
    assert np.allclose(expected.sum(axis=1), 1.0, atol=1e-6)
    assert np.ptp(expected[:, 1]) > 0.01  # the clips really score differently

    def probs(records):
        return np.array([[r["probabilities"][c] for c in model.classes] for r in records])

    one_by_one = np.concatenate([probs(model.predict(p)) for p in paths])
    as_list = probs(model.predict(paths))
    as_str = probs(model.predict([str(p) for p in paths]))
    as_arrays = probs(model.predict(waves, sample_rate=SR))
    as_bytes = probs(model.predict([p.read_bytes() for p in paths]))
    as_files = probs(model.predict([io.BytesIO(p.read_bytes()) for p in paths]))
    for got in (one_by_one, as_list, as_str, as_arrays, as_bytes, as_files):
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)
    # batch size only changes how windows are grouped
    np.testing.assert_allclose(model.predict_proba(waves, batch_size=1), expected, atol=1e-5)


def test_array_at_another_rate_is_resampled(model, clips):
    y16 = clips[1][1]
    y8 = audio.resample(y16, orig_sample_rate=SR, sample_rate=8000)
    record = model.predict(y8, sample_rate=8000)[0]
    expected = model.predict_proba([audio.resample(y8, orig_sample_rate=8000, sample_rate=SR)])[0]
    assert record["duration_s"] == pytest.approx(1.0, abs=1e-3)
    np.testing.assert_allclose([record["probabilities"][c] for c in model.classes], expected, atol=1e-6)


def test_records_of_a_binary_model(model, clips):
    records = model.predict([p for p, _ in clips])
    for (path, y), r in zip(clips, records):
        assert set(r) == {"file", "label", "score", "probabilities", "duration_s"}
        assert r["file"] == str(path)
        assert r["score"] == r["probabilities"]["cough"]  # binary: always the positive-class probability
        assert r["label"] == ("cough" if r["score"] >= 0.5 else "other")
        assert r["duration_s"] == pytest.approx(len(y) / SR)
    always = Model(list(model.ensemble.members), BundleMeta(**{**model.meta.to_dict(), "thresholds": {"decision": 0.0}}))
    assert {r["label"] for r in always.predict([p for p, _ in clips])} == {"cough"}


def test_multiclass_score_is_the_top_probability(clips):
    meta = tiny_meta(classes=("cough", "laugh", "sneeze"), positive=None)
    m = Model(tiny_members(meta), meta)
    for r in m.predict([p for p, _ in clips]):
        best = max(r["probabilities"], key=r["probabilities"].get)
        assert r["label"] == best and r["score"] == r["probabilities"][best]
        assert sum(r["probabilities"].values()) == pytest.approx(1.0, abs=1e-6)


def test_multilabel_and_regression_records(clips):
    meta = tiny_meta(task="multilabel", classes=("crackle", "wheeze"), positive=None,
                     thresholds={"decision": 0.5, "wheeze": 0.0})
    ml = Model(tiny_members(meta), meta)
    for r in ml.predict([p for p, _ in clips]):
        assert "wheeze" in r["labels"]  # its own threshold 0.0
        assert ("crackle" in r["labels"]) == (r["probabilities"]["crackle"] >= 0.5)
    meta = tiny_meta(task="regression", classes=("cough_count",), positive=None)
    reg = Model(tiny_members(meta), meta)
    waves = [y for _, y in clips]
    values = reg.predict_proba(waves)
    assert values.shape == (3,)
    with torch.no_grad():
        raw = reg.ensemble.members[0](features(np.stack(waves[:2]), FeatureConfig.from_dict(meta.features)))[:, 0]
    np.testing.assert_allclose(values[:2], raw.numpy(), atol=1e-5)  # identity output
    assert [set(r) for r in reg.predict(waves, sample_rate=SR)] == [{"file", "value", "duration_s"}] * 3


def test_clip_windows():
    n = SR  # 1-s windows
    y = np.arange(10 * SR, dtype=np.float32)
    w = clip_windows(y, length=n)
    assert w.shape == (19, n)  # every 0.5 s from 0 to 9 s
    assert w[0, 0] == 0 and w[1, 0] == n // 2 and w[-1, -1] == y[-1]
    odd = clip_windows(np.arange(int(2.3 * SR), dtype=np.float32), length=n)
    assert odd[:, 0].tolist() == [0, 8000, 16000, int(1.3 * SR)]  # the last window ends at the end
    short = clip_windows(np.ones(SR // 2, np.float32), length=n)
    assert short.shape == (1, n)
    assert short[0, : SR // 4].sum() == 0 and short[0, -SR // 4 :].sum() == 0 and short[0].sum() == SR // 2


def test_long_clip_is_pooled_into_one_record(model):
    rng = np.random.default_rng(3)
    y = np.concatenate([tone_clip(f, 2.5, rng=rng) for f in (200, 3000, 800, 5000)])  # 10 s
    records = model.predict(y, sample_rate=SR)
    assert len(records) == 1 and records[0]["duration_s"] == pytest.approx(10.0)
    windows = model.score_windows(clip_windows(y, length=model.clip_samples))
    assert windows.shape == (19, 2) and np.ptp(windows[:, 1]) > 0.01
    np.testing.assert_allclose(model.predict_proba([y])[0], windows.mean(axis=0), atol=1e-6)
    maxed = Model(list(model.ensemble.members), BundleMeta(**{**model.meta.to_dict(), "pooling": "max"}))
    np.testing.assert_allclose(maxed.predict_proba([y])[0], windows[np.argmax(windows[:, 1])], atol=1e-6)


def test_short_clip_is_padded_centred(model):
    rng = np.random.default_rng(4)
    y = tone_clip(1000, 0.5, rng=rng)
    padded = np.zeros(model.clip_samples, np.float32)
    padded[SR // 4 : SR // 4 + len(y)] = y
    np.testing.assert_allclose(model.predict_proba([y])[0], model.score_windows(padded[None])[0], atol=1e-6)
    assert model.predict(y, sample_rate=SR)[0]["duration_s"] == pytest.approx(0.5)


def test_ensemble_averages_member_probabilities(clips):
    meta = tiny_meta()
    a, b = tiny_members(meta, n=2)
    waves = [y for _, y in clips]
    both = Model([a, b], meta).predict_proba(waves)
    single = [Model([m], meta).predict_proba(waves) for m in (a, b)]
    assert not np.allclose(single[0], single[1], atol=1e-3)
    np.testing.assert_allclose(both, (single[0] + single[1]) / 2, atol=1e-6)


def test_one_logit_binary_model_uses_a_sigmoid(clips):
    meta = tiny_meta(n_outputs=1)
    (member,) = tiny_members(meta)
    p = Model([member], meta).predict_proba([clips[0][1]])[0]
    with torch.no_grad():
        logit = member(features(clips[0][1], FeatureConfig.from_dict(meta.features)))[0, 0]
    assert p[1] == pytest.approx(float(torch.sigmoid(logit)), abs=1e-6)
    assert p.sum() == pytest.approx(1.0)


def test_a_bad_file_is_reported_and_the_rest_scored(model, clips, tmp_path):
    bad = tmp_path / "notes.wav"
    bad.write_text("not audio")
    paths = [clips[0][0], bad, tmp_path / "missing.wav", clips[1][0]]
    records = model.predict(paths, batch_size=2)
    assert [r["file"] for r in records] == [str(p) for p in paths]
    assert "error" in records[1] and "notes.wav" in records[1]["error"]
    assert "error" in records[2] and "missing.wav" in records[2]["error"]
    good = model.predict_proba([clips[0][1], clips[1][1]])
    np.testing.assert_allclose([records[0]["probabilities"]["cough"], records[3]["probabilities"]["cough"]], good[:, 1], atol=1e-6)


def test_bad_arguments(model):
    with pytest.raises(AudioError, match="sample_rate="):
        model.predict(np.zeros(SR, np.float32))
    assert "error" in model.predict(np.zeros((2, SR), np.float32), sample_rate=SR)[0]
    with pytest.raises(AudioError, match=r"\[n, 16000\]"):
        model.score_windows(np.zeros(100, np.float32))
    assert model.score_windows(np.zeros((2, 2 * SR), np.float32)).shape == (2, 2)  # a detector's longer windows
    with pytest.raises(ModelError, match="unknown backend"):
        load_model("x.respira", backend="tensorflow")


def test_load_model_by_path(tmp_path, clips):
    path = tiny_bundle(tmp_path / "tiny.respira", n=2)
    m = load_model(path)
    assert m.name == "tiny" and m.backend == "torch" and m.sample_rate == SR and m.clip_s == 1.0
    assert m.classes == ("other", "cough") and m.positive == "cough" and m.task == "classification"
    meta = tiny_meta()
    expected = Model(tiny_members(meta, n=2), meta).predict_proba([clips[0][1]])
    np.testing.assert_allclose(m.predict_proba([clips[0][1]]), expected, atol=1e-6)


def test_import_respira_stays_light():
    code = "import sys, respira; assert 'torch' not in sys.modules; print(callable(respira.load_model), 'torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True", "True"]
