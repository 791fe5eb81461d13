"""respira.audio: decoding every format, resampling, ranges, streaming and the bad-file corpus."""

from __future__ import annotations

import io
import json
import shutil
import tracemalloc
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf

from respira import audio
from respira.errors import AudioError
from respira.testing import encode


def tone(sr: int, seconds: float, *, freq: float = 440.0, amp: float = 0.5) -> np.ndarray:
    return (amp * np.sin(2 * np.pi * freq * np.arange(round(sr * seconds)) / sr)).astype(np.float32)


def dominant_hz(y: np.ndarray, sr: int) -> float:
    """Frequency of the strongest spectral peak (parabolic interpolation between FFT bins)."""
    spec = np.abs(np.fft.rfft(y * np.hanning(len(y))))
    k = int(np.argmax(spec[1:-1])) + 1
    a, b, c = np.log(spec[k - 1 : k + 2] + 1e-12)
    return (k + 0.5 * (a - c) / (a - 2 * b + c)) * sr / len(y)


def sine_amplitude(y: np.ndarray) -> float:
    return float(np.sqrt(2 * np.mean(y.astype(np.float64) ** 2)))


def needs_encoder(name: str) -> None:
    if name not in av.codecs_available:
        pytest.skip(f"PyAV has no {name} encoder here")


# ----------------------------------------------------------------------------- round trip, resampling


def test_wav_round_trip_is_exact_to_16_bits(tmp_path, rng):
    y = (0.3 * rng.standard_normal(16000)).clip(-1, 1).astype(np.float32)
    audio.write_wav(tmp_path / "x.wav", y, sample_rate=16000)
    z, sr = audio.load_native(tmp_path / "x.wav")
    assert sr == 16000 and z.dtype == np.float32 and z.shape == y.shape
    assert np.abs(z - y).max() <= 1 / 32768 + 1e-7
    np.testing.assert_array_equal(audio.load(tmp_path / "x.wav"), z)  # sr already 16 kHz: untouched


@pytest.mark.parametrize("orig_sr", [44100, 48000, 8000])
def test_resampled_tone_keeps_frequency_and_amplitude(tmp_path, orig_sr):
    sf.write(tmp_path / "t.wav", tone(orig_sr, 2.0), orig_sr, subtype="FLOAT")
    y = audio.load(tmp_path / "t.wav", sample_rate=16000)
    assert y.dtype == np.float32 and len(y) == 32000
    mid = y[4000:-4000]
    assert dominant_hz(mid, 16000) == pytest.approx(440.0, abs=0.5)
    assert sine_amplitude(mid) == pytest.approx(0.5, abs=0.005)


def test_resample_removes_content_above_the_new_nyquist():
    y = tone(44100, 1.0, freq=440) + tone(44100, 1.0, freq=12000)  # 12 kHz must vanish at 16 kHz
    z = audio.resample(y, orig_sample_rate=44100, sample_rate=16000)
    assert len(z) == 16000 and z.dtype == np.float32
    assert sine_amplitude(z[2000:-2000]) == pytest.approx(0.5, abs=0.005)
    with pytest.raises(ValueError):
        audio.resample(y, orig_sample_rate=0, sample_rate=16000)


def test_stereo_becomes_the_channel_mean(tmp_path, rng):
    left = (0.4 * rng.standard_normal(8000)).clip(-1, 1)
    right = tone(8000, 1.0, amp=0.3)
    sf.write(tmp_path / "s.wav", np.stack([left, right], axis=1), 8000, subtype="FLOAT")
    y, sr = audio.load_native(tmp_path / "s.wav")
    assert sr == 8000 and y.ndim == 1
    np.testing.assert_allclose(y, (left + right) / 2, atol=1e-6)
    assert audio.info(tmp_path / "s.wav").channels == 2


@pytest.mark.parametrize("ext", ["flac", "mp3"])
def test_start_end_read_exactly_that_part(tmp_path, rng, ext):
    path = tmp_path / f"x.{ext}"
    sf.write(path, (0.3 * rng.standard_normal(48000)).clip(-1, 1), 16000)
    full, _ = audio.load_native(path)
    part, _ = audio.load_native(path, start_s=0.5, end_s=1.25)
    np.testing.assert_allclose(part, full[8000:20000], atol=1e-6)  # mp3 seeks land on the sample
    tail, _ = audio.load_native(path, start_s=2.5, end_s=99.0)  # end past the file: to the end
    np.testing.assert_allclose(tail, full[40000:], atol=1e-6)
    resampled = audio.load(path, sample_rate=8000, start_s=1.0, end_s=2.0)
    assert len(resampled) == 8000


@pytest.mark.parametrize(
    ("start", "end", "reason"),
    [(1.0, 1.0, "start < end"), (2.0, 1.0, "start < end"), (-1.0, None, "start < end"), (3.5, None, "beyond the end")],
)
def test_bad_ranges_are_audio_errors(tmp_path, start, end, reason):
    audio.write_wav(tmp_path / "x.wav", tone(16000, 3.0), sample_rate=16000)
    with pytest.raises(AudioError, match=reason) as e:
        audio.load(tmp_path / "x.wav", start_s=start, end_s=end)
    assert "x.wav" in str(e.value)


def test_bytes_and_file_objects(tmp_path):
    audio.write_wav(tmp_path / "x.wav", tone(22050, 1.0), sample_rate=22050)
    ref = audio.load(tmp_path / "x.wav")
    data = (tmp_path / "x.wav").read_bytes()
    np.testing.assert_array_equal(audio.load(data), ref)
    with open(tmp_path / "x.wav", "rb") as f:
        np.testing.assert_array_equal(audio.load(f), ref)

    class ReadOnly:  # no seek: an upload stream
        def __init__(self) -> None:
            self._f = io.BytesIO(data)

        def read(self, n: int = -1) -> bytes:
            return self._f.read(n)

    np.testing.assert_array_equal(audio.load(ReadOnly()), ref)
    assert audio.info(data).path == "<bytes>"
    with pytest.raises(AudioError, match="<bytes>: .*text"):
        audio.load(b"just some words, no audio\n")


# ----------------------------------------------------------------------------- every format


def _sf_writer(fmt: str, subtype: str):
    def write(path: Path, y: np.ndarray, sr: int) -> None:
        sf.write(path, y, sr, format=fmt, subtype=subtype)

    return write


def _av_writer(fmt: str, codec: str):
    def write(path: Path, y: np.ndarray, sr: int) -> None:
        needs_encoder(codec)
        encode(y, sample_rate=sr, fmt=fmt, codec=codec, path=path)

    return write


FORMATS = {
    "wav": (".wav", 16000, _sf_writer("WAV", "PCM_16"), "WAV/PCM_16"),
    "flac": (".flac", 44100, _sf_writer("FLAC", "PCM_16"), "FLAC/PCM_16"),
    "ogg-vorbis": (".ogg", 44100, _sf_writer("OGG", "VORBIS"), "OGG/VORBIS"),
    "mp3": (".mp3", 44100, _sf_writer("MP3", "MPEG_LAYER_III"), "MP3/MPEG_LAYER_III"),
    "ogg-opus": (".opus", 48000, _av_writer("ogg", "libopus"), "OGG/OPUS"),
    "webm-opus": (".webm", 48000, _av_writer("webm", "libopus"), "WEBM/OPUS"),
    "m4a-aac": (".m4a", 48000, _av_writer("ipod", "aac"), "MP4/AAC"),
}


@pytest.mark.parametrize("name", list(FORMATS))
def test_every_format_loads_with_its_duration_and_content(tmp_path, name):
    ext, sr, write, fmt = FORMATS[name]
    path = tmp_path / f"tone{ext}"
    write(path, tone(sr, 2.0), sr)
    meta = audio.info(path)
    assert meta.format == fmt and meta.sample_rate == sr and meta.channels == 1
    assert meta.duration_s == pytest.approx(2.0, abs=0.05)
    assert meta.warnings == ()
    y = audio.load(path, sample_rate=16000)
    assert abs(len(y) - 32000) <= 0.05 * 16000
    mid = y[4000:-4000]
    assert dominant_hz(mid, 16000) == pytest.approx(440.0, abs=1.0)
    assert sine_amplitude(mid) == pytest.approx(0.5, abs=0.03)


def test_content_is_sniffed_not_taken_from_the_extension(tmp_path):
    sf.write(tmp_path / "real.flac", tone(16000, 1.0), 16000)
    audio.write_wav(tmp_path / "real.wav", tone(16000, 1.0), sample_rate=16000)
    shutil.copy(tmp_path / "real.flac", tmp_path / "flac_named.wav")
    shutil.copy(tmp_path / "real.wav", tmp_path / "wav_named.mp3")
    assert audio.info(tmp_path / "flac_named.wav").format == "FLAC/PCM_16"
    assert audio.info(tmp_path / "wav_named.mp3").format == "WAV/PCM_16"
    np.testing.assert_array_equal(audio.load(tmp_path / "wav_named.mp3"), audio.load(tmp_path / "real.wav"))


def test_mediarecorder_webm_bytes_without_a_duration(rng):
    needs_encoder("libopus")
    data = encode(tone(48000, 3.0), sample_rate=48000, fmt="webm", codec="libopus")
    assert av.open(io.BytesIO(data)).duration is None  # really no duration in the header
    for check in (True, False):
        assert audio.info(data, check=check).duration_s == pytest.approx(3.0, abs=0.05)
    y = audio.load(data)
    assert dominant_hz(y[4000:-4000], 16000) == pytest.approx(440.0, abs=1.0)


# ----------------------------------------------------------------------------- bad files


SALVAGED = {"half.wav", "half.flac", "half.mp3"}  # cut files: read up to the cut (tests/test_salvage.py)


def test_bad_file_corpus_gives_audio_errors_naming_the_file(bad_audio):
    tmp_path, corpus = bad_audio
    for name in sorted(SALVAGED):
        with pytest.warns(audio.AudioWarning, match=f"{name}: damaged: recovered"):
            assert len(audio.load(tmp_path / name)) > 0
    for name, reason in corpus.items():
        for call in (audio.load, audio.info, lambda p: list(audio.stream(p))):
            with pytest.raises(AudioError) as e:
                call(tmp_path / name)
            assert str(tmp_path / name) in str(e.value) and reason in str(e.value), (name, str(e.value))


def test_silence_clipping_and_shortness_are_warnings_not_errors(tmp_path):
    audio.write_wav(tmp_path / "silent.wav", np.zeros(16000, np.float32), sample_rate=16000)
    audio.write_wav(tmp_path / "clipped.wav", tone(16000, 1.0, amp=2.0), sample_rate=16000)
    audio.write_wav(tmp_path / "short.wav", tone(16000, 0.05), sample_rate=16000)
    assert audio.info(tmp_path / "silent.wav").warnings == ("silent",)
    np.testing.assert_array_equal(audio.load(tmp_path / "silent.wav"), np.zeros(16000, np.float32))
    (clipped,) = audio.info(tmp_path / "clipped.wav").warnings
    share = float(clipped.removeprefix("clipped (").removesuffix("% of samples)"))
    assert share == pytest.approx(100 * np.mean(np.abs(tone(16000, 1.0, amp=2.0)) >= 1.0), abs=1.0)
    assert audio.info(tmp_path / "short.wav").warnings == ("very short",)
    assert audio.info(tmp_path / "clipped.wav", check=False).warnings == ()


def test_quality_warnings_on_arrays(rng):
    assert audio.quality_warnings(np.zeros(16000, np.float32), sample_rate=16000) == ["silent"]
    assert audio.quality_warnings((0.1 * rng.standard_normal(16000)).astype(np.float32), sample_rate=16000) == []
    assert audio.quality_warnings(np.full(800, 0.01, np.float32), sample_rate=16000) == ["very short"]


# ----------------------------------------------------------------------------- streaming


@pytest.mark.parametrize(("orig_sr", "sr"), [(44100, 16000), (8000, 16000), (16000, 16000)])
def test_stream_blocks_join_up_to_load(tmp_path, rng, orig_sr, sr):
    y = (0.3 * rng.standard_normal(orig_sr * 25 + 123)).clip(-1, 1).astype(np.float32)  # > 2 decoder reads
    sf.write(tmp_path / "x.wav", y, orig_sr, subtype="FLOAT")
    blocks = list(audio.stream(tmp_path / "x.wav", sample_rate=sr, block_s=1.5))
    assert {len(b) for b in blocks[:-1]} == {sr * 3 // 2} and 0 < len(blocks[-1]) <= sr * 3 // 2
    assert all(b.dtype == np.float32 for b in blocks)
    joined, ref = np.concatenate(blocks), audio.load(tmp_path / "x.wav", sample_rate=sr)
    assert joined.shape == ref.shape
    assert np.abs(joined - ref).max() < 1e-5


def test_stream_of_a_pyav_format_joins_up_to_load(tmp_path):
    needs_encoder("libopus")
    y = tone(48000, 5.0, freq=300) + tone(48000, 5.0, freq=1234, amp=0.2)
    encode(y, sample_rate=48000, fmt="webm", codec="libopus", path=tmp_path / "x.webm")
    joined = np.concatenate(list(audio.stream(tmp_path / "x.webm", block_s=0.7)))
    ref = audio.load(tmp_path / "x.webm")
    assert joined.shape == ref.shape and np.abs(joined - ref).max() < 1e-5
    # decoding from the top and skipping gives exactly the samples of a full decode
    part, _ = audio.load_native(tmp_path / "x.webm", start_s=2.0, end_s=3.5)
    full, _ = audio.load_native(tmp_path / "x.webm")
    np.testing.assert_array_equal(part, full[96000:168000])


def test_stream_memory_does_not_grow_with_length(tmp_path, rng):
    minutes, native_sr, sr = 30, 8000, 16000
    with sf.SoundFile(tmp_path / "long.wav", "w", samplerate=native_sr, channels=1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write((0.1 * rng.standard_normal(native_sr * 60)).astype(np.float32))
    decoded_bytes = minutes * 60 * sr * 4
    tracemalloc.start()
    try:
        total = 0
        for block in audio.stream(tmp_path / "long.wav", sample_rate=sr, block_s=60.0):
            assert len(block) == 60 * sr
            total += len(block)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert total == minutes * 60 * sr
    assert peak < decoded_bytes / 5, f"peak {peak / 1e6:.1f} MB for {decoded_bytes / 1e6:.0f} MB of audio"


def test_stream_rejects_bad_block_sizes(tmp_path):
    audio.write_wav(tmp_path / "x.wav", tone(16000, 1.0), sample_rate=16000)
    with pytest.raises(ValueError):
        next(audio.stream(tmp_path / "x.wav", block_s=0.0))


# ----------------------------------------------------------------------------- real data


@pytest.mark.shared
def test_real_files(shared_data):
    covid = shared_data / "covid19-cough"
    records = json.loads((covid / "metadata.json").read_text())
    by_source = {r["source"]: covid / "raw" / r["filename"] for r in records if (covid / "raw" / r["filename"]).stat().st_size > 2048}
    for source, (rate, channels) in {"call-center": (8000, 2), "telegram": (48000, 1)}.items():
        meta = audio.info(by_source[source])
        assert (meta.sample_rate, meta.channels, meta.format) == (rate, channels, "MP3/MPEG_LAYER_III")
        y = audio.load(by_source[source])
        assert abs(len(y) - meta.duration_s * 16000) <= 1 and 0.01 < np.abs(y).max() <= 1.0
    wav = sorted((shared_data / "nonverbal-vocalization" / "coughing").glob("*.wav"))[0]
    meta = audio.info(wav)
    assert (meta.sample_rate, meta.channels) == (16000, 1) and 1.0 < meta.duration_s < 10.0
    broken = [p for p in (covid / "raw").glob("*.mp3") if p.stat().st_size < 2048]
    assert broken, "the data set's broken files are expected here"
    for path in broken:
        with pytest.raises(AudioError, match=path.name):
            audio.load(path)
