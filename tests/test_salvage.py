"""Damaged recordings: unfinalised and cut WAV/RF64, compressed files cut mid-stream. Each is read
up to its damage with a warning; only a file with no decodable audio is an error."""

from __future__ import annotations

import json
import re
import struct
import tracemalloc
import zlib
from pathlib import Path

import av
import numpy as np
import pytest
import soundfile as sf
from detect_stub import PlantedScorer
from typer.testing import CliRunner

import respira.cli.info_cmd  # noqa: F401  (registers the command)
from respira import audio
from respira.audio import AudioWarning
from respira.cli.app import app
from respira.errors import AudioError
from respira.testing import encode, write_night

SECONDS = 6.0


def signal(sr: int) -> np.ndarray:
    """A tone gliding 300 -> 1200 Hz over noise: every stretch of it is different."""
    t = np.arange(round(SECONDS * sr)) / sr
    glide = np.sin(2 * np.pi * (300 * t + 75 * t**2))
    noise = np.random.default_rng(0).standard_normal(len(t))
    return (0.4 * glide + 0.05 * noise).astype(np.float32)


def _sizes(data: bytes, *, riff: int, size: int) -> bytes:
    """A 44-byte-header WAV with its RIFF and data sizes set."""
    return data[:4] + struct.pack("<I", riff) + data[8:40] + struct.pack("<I", size) + data[44:]


def _rf64_unset(data: bytes) -> bytes:
    """An RF64 file with its ds64 sizes and data size zeroed, as a recorder leaves it before finalising."""
    ds64, samples = data.index(b"ds64") + 8, data.index(b"data") + 8
    return data[:ds64] + bytes(24) + data[ds64 + 24 : samples - 4] + bytes(4) + data[samples:]


def _rf64_cut(data: bytes) -> bytes:
    samples = data.index(b"data") + 8
    return data[: samples + 2 * round(SECONDS / 2 * 16000) + 1]


def _write_sf(fmt: str, subtype: str):
    def write(path: Path, sr: int) -> None:
        sf.write(path, signal(sr), sr, format=fmt, subtype=subtype)

    return write


def _write_av(fmt: str, codec: str):
    def write(path: Path, sr: int) -> None:
        if codec not in av.codecs_available:
            pytest.skip(f"PyAV has no {codec} encoder here")
        encode(signal(sr), sample_rate=sr, fmt=fmt, codec=codec, path=path)

    return write


def _write_m4a(path: Path, sr: int) -> None:
    """AAC in MP4 with the index (moov) first, as a recorder that survives a cut writes it."""
    plain = path.with_suffix(".plain.m4a")
    _write_av("ipod", "aac")(plain, sr)
    with av.open(str(plain)) as src, av.open(str(path), "w", format="ipod", options={"movflags": "faststart"}) as dst:
        stream = dst.add_stream_from_template(src.streams.audio[0])
        for packet in src.demux(src.streams.audio[0]):
            if packet.dts is not None:
                packet.stream = stream
                dst.mux(packet)
    plain.unlink()


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


WAV_CUT = 44 + 2 * round(SECONDS / 2 * 16000) + 1  # half the samples and one byte of the next: odd

# name: (extension, rate, writer, damage, lossless, declares a length)
CORPUS = {
    "wav-unfinalised": (".wav", 16000, _write_sf("WAV", "PCM_16"), lambda d: _sizes(d, riff=0, size=0), True, False),
    "wav-streaming": (".wav", 16000, _write_sf("WAV", "PCM_16"),
                      lambda d: _sizes(d, riff=0xFFFFFFFF, size=0xFFFFFFFF), True, False),
    "wav-cut-mid-sample": (".wav", 16000, _write_sf("WAV", "PCM_16"), lambda d: d[:WAV_CUT], True, True),
    "rf64-cut-mid-sample": (".wav", 16000, _write_sf("RF64", "PCM_16"), _rf64_cut, True, True),
    "rf64-unfinalised": (".wav", 16000, _write_sf("RF64", "PCM_16"), _rf64_unset, True, False),
    "flac": (".flac", 44100, _write_sf("FLAC", "PCM_16"), _half, True, True),
    "ogg-vorbis": (".ogg", 44100, _write_sf("OGG", "VORBIS"), _half, False, False),
    "ogg-opus": (".opus", 48000, _write_av("ogg", "libopus"), _half, False, False),
    "mp3": (".mp3", 44100, _write_sf("MP3", "MPEG_LAYER_III"), _half, False, True),
    "m4a-aac": (".m4a", 48000, _write_m4a, _half, False, True),
    "webm-opus": (".webm", 48000, _write_av("webm", "libopus"), _half, False, True),
}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """{name: (the undamaged file, the damaged one)}."""
    root = tmp_path_factory.mktemp("salvage")
    files = {}
    for name, (ext, sr, write, damage, _, _) in CORPUS.items():
        good, bad = root / f"{name}.good{ext}", root / f"{name}{ext}"
        try:
            write(good, sr)
        except pytest.skip.Exception:
            continue
        bad.write_bytes(damage(good.read_bytes()))
        files[name] = good, bad
    return files


def _files(corpus, name: str) -> tuple[Path, Path]:
    if name not in corpus:
        pytest.skip(f"no encoder here for {name}")
    return corpus[name]


def _intact_until(good: Path, cut: int) -> float:
    """Seconds of audio in the packets of `good` that lie wholly in its first `cut` bytes: those
    followed by a packet that starts (Ogg: on a later page) before the cut."""
    with av.open(str(good)) as container:
        stream = container.streams.audio[0]
        packets = [(p.pos, float((p.pts + p.duration) * p.time_base)) for p in container.demux(stream)
                   if p.pts is not None and p.pos is not None and p.pos >= 0]
    starts = sorted({pos for pos, _ in packets})
    after = dict(zip(starts, starts[1:]))
    return max((end for pos, end in packets if after.get(pos, cut + 1) <= cut), default=0.0)


def _expected_s(name: str, good: Path, bad: Path) -> float:
    if name.startswith(("wav", "rf64")):
        return sf.info(good).frames / 16000 if "unfinalised" in name or "streaming" in name else SECONDS / 2
    return _intact_until(good, bad.stat().st_size)


# ----------------------------------------------------------------------------- load, stream, info


@pytest.mark.parametrize("name", list(CORPUS))
def test_a_damaged_file_loads_up_to_its_damage_with_a_warning(corpus, name):
    good, bad = _files(corpus, name)
    _, sr, _, _, lossless, declares = CORPUS[name]
    with pytest.warns(AudioWarning) as caught:
        y, rate = audio.load_native(bad)
    (message,) = [str(w.message) for w in caught if issubclass(w.category, AudioWarning)]
    recovered = len(y) / rate
    assert rate == sr and message.startswith(f"{bad}: damaged: recovered {recovered:.2f} s")
    declared = re.search(r"of the ([\d.]+) s the header declares", message)
    assert (declared is not None) == declares, message
    if declared:
        assert float(declared[1]) == pytest.approx(SECONDS, abs=0.02)
    assert recovered == pytest.approx(_expected_s(name, good, bad), abs=0.1)
    assert 0.2 * SECONDS < recovered < 1.01 * SECONDS
    ref, _ = audio.load_native(good)
    if lossless:
        np.testing.assert_array_equal(y, ref[: len(y)])
    else:  # the same decoder up to the packet before the damage
        n = len(y) - round(0.1 * sr)
        assert np.corrcoef(y[:n], ref[:n])[0, 1] > 0.99


@pytest.mark.parametrize("name", list(CORPUS))
def test_info_and_stream_see_the_same_recovered_audio(corpus, name):
    good, bad = _files(corpus, name)
    declares = CORPUS[name][5]
    with pytest.warns(AudioWarning):
        y = audio.load(bad, sample_rate=16000)
    meta = audio.info(bad)  # describes the damage rather than warning of it
    assert meta.recovered and meta.warnings[0].startswith(f"damaged: recovered {meta.duration_s:.2f} s")
    assert meta.duration_s == pytest.approx(len(y) / 16000, abs=1e-3)
    if declares:
        assert meta.declared_duration_s == pytest.approx(audio.info(good).duration_s, abs=0.02)
    else:
        assert meta.declared_duration_s is None
    with pytest.warns(AudioWarning, match="damaged: recovered"):
        blocks = list(audio.stream(bad, sample_rate=16000, block_s=0.7))
    joined = np.concatenate(blocks)
    assert joined.shape == y.shape and np.abs(joined - y).max() < 1e-5
    intact = audio.info(good)
    assert not intact.recovered and intact.declared_duration_s is None and intact.warnings == ()


def test_a_header_only_damage_is_seen_without_decoding(corpus):
    _, bad = _files(corpus, "wav-unfinalised")
    meta = audio.info(bad, check=False)
    assert meta.recovered and meta.duration_s == SECONDS and meta.declared_duration_s is None
    assert meta.warnings[0].startswith("damaged: recovered 6.00 s (no length in the header")


def test_bytes_and_ranges_of_a_damaged_file(corpus):
    good, bad = _files(corpus, "wav-cut-mid-sample")
    with pytest.warns(AudioWarning):
        part = audio.load(bad.read_bytes(), sample_rate=16000, start_s=1.0, end_s=2.5)
    np.testing.assert_array_equal(part, audio.load(good, sample_rate=16000, start_s=1.0, end_s=2.5))
    with pytest.raises(AudioError, match="beyond the end"):
        audio.load(bad, start_s=4.0)


def test_a_cut_flac_is_read_through_to_the_damage_from_any_start(corpus):
    good, bad = _files(corpus, "flac")
    with pytest.warns(AudioWarning, match="undecodable data"):
        part, sr = audio.load_native(bad, start_s=1.0)
    full, _ = audio.load_native(good)
    np.testing.assert_array_equal(part, full[sr : sr + len(part)])


# ----------------------------------------------------------------------------- no audio at all


def _png() -> bytes:
    def chunk(tag: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    pixels = zlib.compress(b"\x00\xff\x00\x00" * 4)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 4, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", pixels) + chunk(b"IEND", b""))


@pytest.fixture()
def no_audio(tmp_path, corpus) -> dict[str, tuple[Path, str]]:
    """{name: (a file without decodable audio, a reason its error gives)}."""
    wav = _files(corpus, "wav-cut-mid-sample")[0].read_bytes()
    plain_m4a = tmp_path / "plain.m4a"
    _write_av("ipod", "aac")(plain_m4a, 48000)
    files = {
        "empty.wav": (b"", "empty file"),
        "notes.wav": (b"a text file, not audio\n" * 10, "not audio"),
        "image.png": (_png(), "not a recognised audio format"),
        "header-only.wav": (wav[:44], "truncated: the header declares 6.00 s of audio but the file holds none"),
        "unfinalised-empty.wav": (_sizes(wav[:44], riff=0, size=0), "no audio samples"),
        "half-a-sample.wav": (_sizes(wav[:45], riff=0, size=0), "no audio samples"),
        "index-last.m4a": (_half(plain_m4a.read_bytes()), "corrupt or truncated"),  # the moov was never written
    }
    for name, (data, _) in files.items():
        (tmp_path / name).write_bytes(data)
    return {name: (tmp_path / name, reason) for name, (_, reason) in files.items()}


def test_files_without_decodable_audio_are_still_errors(no_audio):
    for name, (path, reason) in no_audio.items():
        for call in (audio.load, audio.info, lambda p: list(audio.stream(p))):
            with pytest.raises(AudioError) as e:
                call(path)
            assert str(e.value).startswith(f"{path}: ") and reason in str(e.value), (name, str(e.value))


# ----------------------------------------------------------------------------- memory


def _stream_peak(path: Path, *, sr: int) -> tuple[int, int]:
    """(samples streamed, peak bytes traced while streaming)."""
    tracemalloc.start()
    try:
        total = sum(len(block) for block in audio.stream(path, sample_rate=sr, block_s=10.0))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    return total, peak


@pytest.mark.parametrize("ext", ["wav", "flac"])
def test_streaming_a_long_damaged_file_takes_the_memory_of_an_intact_one(tmp_path, ext):
    """A WAV whose sizes were never written is read by seeking; a cut FLAC decoded by PyAV past libsndfile's stop."""
    minutes, native_sr, sr = 10, 8000, 16000
    good, bad = tmp_path / f"good.{ext}", tmp_path / f"bad.{ext}"
    rng = np.random.default_rng(1)
    with sf.SoundFile(good, "w", samplerate=native_sr, channels=1, subtype="PCM_16") as f:
        for _ in range(minutes):
            f.write((0.1 * rng.standard_normal(native_sr * 60)).astype(np.float32))
    data = good.read_bytes()
    bad.write_bytes(_sizes(data, riff=0, size=0) if ext == "wav" else data[: len(data) * 3 // 4])
    intact, intact_peak = _stream_peak(good, sr=sr)
    with pytest.warns(AudioWarning):
        total, peak = _stream_peak(bad, sr=sr)
    assert total == pytest.approx(intact * (1 if ext == "wav" else 3 / 4), rel=0.01)
    assert peak < 1.5 * intact_peak and peak < total * 4 / 5, f"peak {peak / 1e6:.1f} MB, intact {intact_peak / 1e6:.1f}"


# ----------------------------------------------------------------------------- the commands


def test_respira_info_shows_the_recovered_duration_and_exits_zero(corpus, monkeypatch):
    names = [n for n in CORPUS if n in corpus]
    monkeypatch.chdir(corpus[names[0]][1].parent)
    files = [corpus[n][1].name for n in names]
    result = CliRunner().invoke(app, ["info", *files, "--json"])
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout.strip().splitlines()[-1])
    assert out["errors"] == [] and [f["path"] for f in out["files"]] == files
    for row in out["files"]:
        assert row["recovered"] and row["warnings"][0].startswith(f"damaged: recovered {row['duration_s']:.2f} s")
    result = CliRunner().invoke(app, ["info", files[0]], env={"COLUMNS": "250"})
    assert result.exit_code == 0 and not result.stderr
    assert re.search(r"6\.00 s .*damaged: recovered 6\.00 s \(no length in the header", result.stdout)


def test_respira_info_still_fails_on_files_without_audio(no_audio, corpus):
    good = corpus["wav-cut-mid-sample"][1]
    result = CliRunner().invoke(app, ["info", str(good), *(str(p) for p, _ in no_audio.values())])
    assert result.exit_code == 1 and "damaged:" in result.stdout
    lines = result.stderr.strip().splitlines()
    assert len(lines) == len(no_audio) and all(line.startswith("error: ") for line in lines)


def test_data_summary_counts_the_recovered_duration(corpus, tmp_path, capsys):
    from respira.cli import main

    names = [n for n in CORPUS if n in corpus]
    paths = [str(corpus[n][1]) for n in names]
    rows = "\n".join(f"{p},cough,,,s{i},," for i, p in enumerate(paths))
    (tmp_path / "m.csv").write_text("path,label,start,end,subject,split,source_label\n" + rows + "\n")
    with pytest.raises(SystemExit) as e:
        main(["data", "summary", str(tmp_path / "m.csv"), "--json"])
    out, err = capsys.readouterr()
    assert e.value.code in (0, None), err
    summary = json.loads(out.strip().splitlines()[-1])
    assert summary["unreadable"] == []
    assert all(summary["warnings"][p][0].startswith("damaged: recovered") for p in paths)
    assert summary["duration_s"] == pytest.approx(sum(audio.info(p).duration_s for p in paths), abs=0.01)


# ----------------------------------------------------------------------------- detection on a cut night


def _cut_night(path: Path, *, written_h: float, present_h: float, sr: int = 8000) -> tuple[list, float]:
    """A night WAV whose header claims 2 h, cut (mid-sample) after `present_h` hours of the
    `written_h` written; returns the planted coughs and the seconds left."""
    planted = write_night(path, hours=written_h, sample_rate=sr, coughs_per_hour=60, seed=11)
    claim = 2 * 3600 * sr * 2
    with open(path, "r+b") as f:
        header = _sizes(f.read(44), riff=36 + claim, size=claim)
        f.seek(0)
        f.write(header)
        f.truncate(44 + round(present_h * 3600 * sr) * 2 + 1)
    return planted, present_h * 3600


def _detect_cut_night(tmp_path, monkeypatch, capsys, *, written_h: float, present_h: float) -> None:
    import respira.inference
    from respira.cli import main

    path = tmp_path / "night.wav"
    planted, left_s = _cut_night(path, written_h=written_h, present_h=present_h)
    with pytest.warns(AudioWarning, match=f"recovered {left_s:.2f} s of the 7200.00 s the header declares"):
        y = audio.load(path, sample_rate=8000)
    scorer = PlantedScorer(y, planted, sr=8000)
    del y
    monkeypatch.setattr(respira.inference, "load_model", lambda model, device="cpu": scorer)
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as e:
        main(["detect", str(path), "--model", "planted", "-o", str(out)])
    _, err = capsys.readouterr()
    assert e.value.code in (0, None), err
    assert f"warning: {path}: damaged: recovered {left_s:.2f} s" in err  # one line, not a Python warning
    events = json.loads((out / "events.json").read_text())
    survivors = [p for p in planted if p.end < left_s]
    assert 5 <= len(survivors) < len(planted)  # some coughs were lost with the cut
    cut_through = sum(p.start < left_s <= p.end for p in planted)  # may be found, in part
    assert len(survivors) <= len(events) <= len(survivors) + cut_through
    for found, p in zip(events, survivors):
        assert abs(found["start"] - p.start) <= 0.15 and found["end"] <= left_s
    s = json.loads((out / "summary.json").read_text())
    assert s["hours_analysed"] == pytest.approx(present_h, abs=1e-3) and s["coughs"] == len(events)


def test_detect_finds_the_coughs_left_in_a_cut_night(tmp_path, monkeypatch, capsys):
    _detect_cut_night(tmp_path, monkeypatch, capsys, written_h=20 / 60, present_h=10 / 60)


@pytest.mark.slow
def test_detect_finds_the_coughs_left_in_a_cut_two_hour_night(tmp_path, monkeypatch, capsys):
    _detect_cut_night(tmp_path, monkeypatch, capsys, written_h=2.0, present_h=1.0)
