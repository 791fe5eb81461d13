"""Audio in: decode any common file or byte string to mono float32, resample, stream in blocks.

Decoders: soundfile (libsndfile: wav, flac, ogg/vorbis, ogg/opus, mp3, aiff) first, PyAV for
webm, mp4/m4a, aac and as the fallback for anything libsndfile rejects. The container is
sniffed from the first bytes, never trusted from the file name. Damaged files are read up to the
damage (see `AudioWarning`): a WAV/RF64 whose header sizes were never written or run past the end
of the file is read to its end (the sizes corrected over the header as libsndfile reads it), and a
file cut mid-stream is decoded up to the cut (PyAV takes over where libsndfile stops on bad data).
Resampling is soxr "HQ"
(what ``librosa.resample`` does by default), run as one stateful stream in `stream`, so the
blocks join up to exactly what `load` returns. Every failure is an `AudioError` whose message
starts with the file name (or ``<bytes>``) and says why. Also here: the one audio-file finder
(`find_audio_files`) and the one WAV/raw PCM stream reader (`open_pcm`, for pipes and files
still being written).
"""

from __future__ import annotations

import codecs
import dataclasses
import io
import os
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import numpy as np
import soundfile as sf
import soxr

from respira.errors import AudioError, ConfigError, RespiraError

DEFAULT_SAMPLE_RATE = 16000
AUDIO_EXTENSIONS: frozenset[str] = frozenset(
    {".wav", ".flac", ".ogg", ".opus", ".mp3", ".webm", ".m4a", ".aac", ".mp4", ".aiff", ".aif"}
)
MAX_DURATION_S = 48 * 3600.0  # longer is refused as absurd
SILENT_PEAK = 1e-4  # peak below this (-80 dBFS, a few 16-bit steps) -> "silent"
CLIP_LEVEL = 0.999  # |sample| at or above this counts as clipped
CLIP_FRACTION = 0.001  # more clipped samples than this -> "clipped (x% of samples)"
VERY_SHORT_S = 0.1  # shorter -> "very short"

AudioSource = str | os.PathLike | bytes | bytearray | memoryview | BinaryIO

_HEAD_BYTES = 1 << 16  # enough to sniff the format and find a WAV data chunk
_READ_BLOCK_S = 10.0  # native seconds per decoder read while streaming
_PYAV_ONLY = frozenset({"webm", "mp4", "aac"})  # containers libsndfile cannot read
_PYAV_DECLARES = frozenset({"webm", "mp4"})  # containers whose header states the length (others: a bitrate guess)
_OGG_MAX_PAGE = 27 + 255 + 255 * 255  # bytes: header, segment table, body


class AudioWarning(UserWarning):
    """A damaged file was read up to its damage; the message names the file, the declared and recovered lengths."""


@dataclass(frozen=True)
class AudioInfo:
    """Facts about one audio file; `warnings` are quality notes, not errors."""

    path: str
    duration_s: float
    sample_rate: int
    channels: int
    frames: int
    format: str
    warnings: tuple[str, ...]
    recovered: bool = False  # damaged: `duration_s` is what decodes, up to the damage (a warning says so)
    declared_duration_s: float | None = None  # a damaged file's length by its header; None: none given or not damaged


@dataclass(frozen=True)
class _Salvage:
    """A damaged file read up to its damage: why, the frames its header declares (None: it gives no
    length) and the frames recovered."""

    why: str
    declared: int | None
    recovered: int

    def message(self, *, sr: int) -> str:
        of = "" if self.declared is None else f" of the {self.declared / sr:.2f} s the header declares"
        return f"damaged: recovered {self.recovered / sr:.2f} s{of} ({self.why})"


@dataclass(frozen=True)
class Failure:
    """A file that could not be processed, and why (a message that names the file)."""

    file: str
    reason: str

    @classmethod
    def of(cls, file: str, error: Exception | str) -> Failure:
        text = str(error)
        return cls(file, text if file in text else f"{file}: {text}")


# ----------------------------------------------------------------------------- public API


def load(
    src: AudioSource, *, sample_rate: int | None = DEFAULT_SAMPLE_RATE, start_s: float | None = None,
    end_s: float | None = None,
) -> np.ndarray:
    """Decode `src` to mono float32 [samples] in [-1, 1] at `sample_rate` Hz (None: the file's own rate).

    `start_s`/`end_s` are seconds (end_s None: to the end). libsndfile formats seek to `start_s`;
    PyAV formats (webm, m4a, ...) decode from the top and skip to it.
    """
    y, native_sr = load_native(src, start_s=start_s, end_s=end_s)
    if sample_rate is None or sample_rate == native_sr:
        return y
    return np.clip(resample(y, orig_sample_rate=native_sr, sample_rate=sample_rate), -1.0, 1.0)


def load_native(
    src: AudioSource, *, start_s: float | None = None, end_s: float | None = None
) -> tuple[np.ndarray, int]:
    """Decode `src` to mono float32 [samples] in [-1, 1] at its own rate; returns (y, rate in Hz).

    A damaged file gives what decodes, with an AudioWarning."""
    with _open(src) as reader:
        first, stop = _frame_range(reader, start=start_s, end=end_s)
        whole = stop - first if stop is not None else 1 << 62
        blocks = list(_decode(reader, start=first, stop=stop, block=whole, on_salvage=_warner(reader)))
        return (blocks[0] if len(blocks) == 1 else np.concatenate(blocks)), reader.sr


def info(src: AudioSource, *, check: bool = True) -> AudioInfo:
    """Header facts of `src`; `check` decodes it (streaming) for exact length and quality warnings.

    A damaged file is described as recovered (`recovered`, `declared_duration_s`, a "damaged: ..."
    first warning) rather than warned of; without `check` only damage its header shows is found.
    """
    with _open(src) as reader:
        frames = reader.frames if reader.frames is not None else reader.estimated_frames
        found: list[_Salvage] = []
        notes: list[str] = []
        if check or frames is None:
            levels = _Levels()
            frames = 0
            block = round(_READ_BLOCK_S * reader.sr)
            for y in _decode(reader, start=0, stop=reader.frames, block=block, on_salvage=found.append):
                levels.update(y)
                frames += len(y)
            if check:
                notes = levels.warnings(sr=reader.sr)
        elif reader.damage:
            found.append(_Salvage(reader.damage, reader.declared, frames))
        salvage = found[0] if found else None
        declared = None if salvage is None or salvage.declared is None else salvage.declared / reader.sr
        return AudioInfo(
            path=reader.name,
            duration_s=frames / reader.sr,
            sample_rate=reader.sr,
            channels=reader.channels,
            frames=frames,
            format=reader.format,
            warnings=tuple([salvage.message(sr=reader.sr)] if salvage else []) + tuple(notes),
            recovered=salvage is not None,
            declared_duration_s=declared,
        )


def stream(src: AudioSource, *, sample_rate: int = DEFAULT_SAMPLE_RATE, block_s: float = 60.0) -> Iterator[np.ndarray]:
    """Mono float32 blocks of round(block_s * sample_rate) samples at `sample_rate` (the last may be shorter).

    Memory does not grow with the file's length; the blocks joined equal ``load(src, sample_rate=sample_rate)``.
    Errors are raised when iteration starts; a damaged file ends where its damage starts, with an
    AudioWarning.
    """
    size = round(block_s * sample_rate)
    if sample_rate <= 0 or size < 1:
        raise ValueError(f"stream needs sample_rate > 0 and block_s * sample_rate >= 1, got sample_rate={sample_rate}, "
                         f"block_s={block_s}")
    with _open(src) as reader:
        first, stop = _frame_range(reader, start=None, end=None)
        block = max(1, round(_READ_BLOCK_S * reader.sr))
        native = _decode(reader, start=first, stop=stop, block=block, on_salvage=_warner(reader))
        blocks = native if reader.sr == sample_rate else resample_stream(native, orig_sample_rate=reader.sr,
                                                                         sample_rate=sample_rate)
        for y in _rechunk(blocks, size=size):
            yield np.clip(y, -1.0, 1.0, out=y)


def resample(y: np.ndarray, *, orig_sample_rate: int, sample_rate: int) -> np.ndarray:
    """Resample mono `y` [samples] from `orig_sample_rate` to `sample_rate` Hz (soxr HQ, as librosa);
    float32 [round(n * sample_rate / orig_sample_rate)]."""
    if orig_sample_rate <= 0 or sample_rate <= 0:
        raise ValueError(f"sample rates must be positive, got orig_sample_rate={orig_sample_rate}, "
                         f"sample_rate={sample_rate}")
    y = np.asarray(y, dtype=np.float32)
    if orig_sample_rate == sample_rate:
        return y
    return soxr.resample(y, orig_sample_rate, sample_rate, quality="HQ").astype(np.float32, copy=False)


def quality_warnings(y: np.ndarray, *, sample_rate: int) -> list[str]:
    """Quality notes for mono `y` [samples] at `sample_rate` Hz: "silent", "clipped (x% of samples)", "very short"."""
    levels = _Levels()
    levels.update(np.asarray(y, dtype=np.float32))
    return levels.warnings(sr=sample_rate)


def write_wav(path: str | os.PathLike, y: np.ndarray, *, sample_rate: int) -> None:
    """Write mono `y` [samples] (floats in [-1, 1], clipped) as a 16-bit PCM WAV at `sample_rate` Hz."""
    y = np.asarray(y, dtype=np.float32)
    if y.ndim != 1:
        raise ValueError(f"write_wav takes mono audio [samples], got shape {y.shape}")
    sf.write(os.fspath(path), np.clip(y, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")


# ----------------------------------------------------------------------------- finding files


def audio_files(folder: str | os.PathLike) -> list[Path]:
    """Sorted audio files under `folder`, recursively, by AUDIO_EXTENSIONS; hidden files and folders skipped."""
    found: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found.extend(Path(root) / f for f in files if not f.startswith(".") and os.path.splitext(f)[1].lower() in AUDIO_EXTENSIONS)
    return sorted(found)


def find_audio_files(paths: Sequence[str | os.PathLike]) -> tuple[list[str], list[Failure]]:
    """The files given (whatever their extension) and the `audio_files` under the folders given,
    in order, each once; a path that does not exist is a Failure."""
    found: list[str] = []
    failures: list[Failure] = []
    for p in map(Path, paths):
        if p.is_dir():
            found += map(str, audio_files(p))
        elif p.is_file():
            found.append(str(p))
        else:
            failures.append(Failure.of(str(p), "no such file or folder"))
    return list(dict.fromkeys(found)), failures


def read_infos(files: Sequence[str | os.PathLike], *, check: bool = True) -> tuple[list[AudioInfo], list[Failure]]:
    """`info` of each file (in order); a file that cannot be read is a Failure."""
    infos, failures = [], []
    for f in files:
        try:
            infos.append(info(f, check=check))
        except RespiraError as e:
            failures.append(Failure.of(str(f), e))
    return infos, failures


# ----------------------------------------------------------------------------- quality


@dataclass
class _Levels:
    """Running peak and clipped-sample count over blocks of mono audio."""

    samples: int = 0
    clipped: int = 0
    peak: float = 0.0

    def update(self, y: np.ndarray) -> None:
        if y.size:
            a = np.abs(y)
            self.samples += a.size
            self.clipped += int(np.count_nonzero(a >= CLIP_LEVEL))
            self.peak = max(self.peak, float(a.max()))

    def warnings(self, *, sr: int) -> list[str]:
        out = []
        if self.peak < SILENT_PEAK:
            out.append("silent")
        if self.samples and self.clipped > CLIP_FRACTION * self.samples:
            out.append(f"clipped ({100 * self.clipped / self.samples:.1f}% of samples)")
        if self.samples < VERY_SHORT_S * sr:
            out.append("very short")
        return out


# ----------------------------------------------------------------------------- sources


@dataclass(frozen=True)
class _Source:
    """A checked input: a file path, or a seekable in-memory/caller-owned binary file.

    A file known to be damaged before decoding has `damage` (why) and `declared` (the frames its
    header declares, None: no length); `patch` are corrected first bytes that decoders read instead.
    """

    name: str
    path: str | None
    data: BinaryIO | None
    size: int
    head: bytes
    patch: bytes = b""
    damage: str | None = None
    declared: int | None = None

    def binary(self) -> BinaryIO:
        """A binary file positioned at the start; the caller closes it only when `path` is set."""
        if self.path is not None:
            f: BinaryIO = open(self.path, "rb")
        else:
            assert self.data is not None
            f = self.data
            f.seek(0)
        return _Patched(f, self.patch) if self.patch else f


class _Patched(io.RawIOBase):
    """A read-only binary file whose first bytes read as `patch` (a corrected header)."""

    def __init__(self, f: BinaryIO, patch: bytes) -> None:
        super().__init__()
        self._f, self._patch = f, patch

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._f.seek(offset, whence)

    def tell(self) -> int:
        return self._f.tell()

    def readinto(self, buffer) -> int:
        at = self._f.tell()
        data = self._f.read(len(buffer))
        if at < len(self._patch):
            data = self._patch[at : at + len(data)] + data[len(self._patch) - at :]
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._f.close()
        super().close()


def _resolve(src: AudioSource) -> _Source:
    if isinstance(src, (bytes, bytearray, memoryview)):
        data = bytes(src)
        if not data:
            raise AudioError("<bytes>: empty input (0 bytes)")
        return _Source("<bytes>", None, io.BytesIO(data), len(data), data[:_HEAD_BYTES])
    if isinstance(src, (str, os.PathLike)):
        return _resolve_path(os.fspath(src))
    if hasattr(src, "read"):
        return _resolve_file(src)
    raise TypeError(f"audio source must be a path, bytes or a binary file, not {type(src).__name__}")


def _resolve_path(path: str) -> _Source:
    try:
        st = os.stat(path)
        if Path(path).is_dir():
            raise AudioError(f"{path}: is a directory, not an audio file")
        if st.st_size == 0:
            raise AudioError(f"{path}: empty file (0 bytes)")
        with open(path, "rb") as f:
            head = f.read(_HEAD_BYTES)
    except FileNotFoundError:
        raise AudioError(f"{path}: file not found") from None
    except OSError as e:
        raise AudioError(f"{path}: cannot read ({e.strerror or e})") from None
    return _Source(path, path, None, st.st_size, head)


def _resolve_file(f: BinaryIO) -> _Source:
    raw_name = getattr(f, "name", None)
    name = raw_name if isinstance(raw_name, str) else "<file>"
    try:
        if not (getattr(f, "seekable", lambda: False)() and f.tell() == 0):
            f = io.BytesIO(f.read())
        size = f.seek(0, io.SEEK_END)
        f.seek(0)
        head = f.read(_HEAD_BYTES)
    except (OSError, ValueError) as e:
        raise AudioError(f"{name}: cannot read ({e})") from None
    except TypeError:
        head = None
    if not isinstance(head, bytes):
        raise TypeError(f"{name}: audio file objects must be opened in binary mode")
    if size == 0:
        raise AudioError(f"{name}: empty input (0 bytes)")
    return _Source(name, None, f, size, head)


def _sniff(head: bytes) -> str | None:
    """The container the first bytes name ("wav", "mp3", "webm", ...), "text", or None."""
    tag = head[:4]
    if tag in (b"RIFF", b"RIFX") and head[8:12] == b"WAVE":
        return "wav"
    if tag in (b"RF64", b"BW64"):
        return "rf64"
    if tag == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if tag == b"fLaC":
        return "flac"
    if tag == b"OggS":
        return "ogg"
    if tag == b"\x1aE\xdf\xa3":
        return "webm"
    if head[4:8] == b"ftyp":
        return "mp4"
    if head[:3] == b"ID3":
        return "mp3"
    if len(head) > 1 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0:
        return "aac" if head[1] & 0x06 == 0 else "mp3"  # ADTS has layer bits 00
    if _is_text(head):
        return "text"
    return None


def _is_text(head: bytes) -> bool:
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return False
    return all(c.isprintable() or c in "\t\n\r\f\v" for c in text)


def _header_damage(source: _Source, kind: str | None) -> _Source:
    """`source` with what its header shows of damage: a WAV/RF64 with sizes unset or past the end
    of the file (`_repair_wav`), an Ogg stream without its last page."""
    if kind in ("wav", "rf64") and source.head[:4] != b"RIFX":
        return _repair_wav(source)
    if kind == "ogg" and not _ogg_ends(source):
        return dataclasses.replace(source, damage="cut short: the Ogg stream has no end page")
    return source


def _repair_wav(source: _Source) -> _Source:
    """A WAV/RF64 whose data size is unset (0, all ones) or larger than the file holds: sizes
    corrected to the whole frames present as `patch`. AudioError when no whole frame is there."""
    try:
        header = _wav_header(io.BytesIO(source.head[4:]))
    except AudioError:  # no data chunk within the head: libsndfile decides
        return source
    fmt, rf64 = header.fmt, source.head[:4] != b"RIFF"
    byte_rate = int.from_bytes(fmt[8:12], "little") if fmt and len(fmt) >= 14 else 0
    align = int.from_bytes(fmt[12:14], "little") if byte_rate else 0
    present = source.size - header.offset
    unset = header.data_size in (0, 0xFFFFFFFF, (1 << 64) - 1)
    if not align or (rf64 and header.ds64 is None) or (not unset and header.data_size <= present):
        return source
    room = present if rf64 else min(present, 0xFFFFFFFF - header.offset + 8)  # a RIFF size is 32 bits
    whole = room - room % align
    if whole <= 0:
        if unset:
            raise AudioError(f"{source.name}: no audio samples (0 frames)")
        raise AudioError(f"{source.name}: truncated: the header declares {header.data_size / byte_rate:.2f} s "
                         f"of audio but the file holds none")
    patch = bytearray(source.head[: header.offset])
    if rf64:
        patch[header.ds64 : header.ds64 + 24] = b"".join(
            n.to_bytes(8, "little") for n in (header.offset - 8 + whole, whole, whole // align))
        patch[header.offset - 4 : header.offset] = b"\xff" * 4
    else:
        patch[4:8] = (header.offset - 8 + whole).to_bytes(4, "little")
        patch[header.offset - 4 : header.offset] = whole.to_bytes(4, "little")
    why = "no length in the header: unfinalised or streamed; read to the end of the file" if unset else "cut short"
    return dataclasses.replace(source, patch=bytes(patch), damage=why,
                               declared=None if unset else header.data_size // align)


def _ogg_ends(source: _Source) -> bool:
    """Whether the file ends with a whole Ogg page flagged end-of-stream (a cut one does not)."""
    f = source.binary()
    try:
        f.seek(max(0, source.size - _OGG_MAX_PAGE))
        tail = f.read()
    finally:
        if source.path is not None:
            f.close()
    at = tail.rfind(b"OggS")
    while at >= 0:
        page = tail[at:]
        segments = page[26] if len(page) > 26 else 0
        if len(page) >= 27 + segments and 27 + segments + sum(page[27 : 27 + segments]) == len(page):
            return bool(page[5] & 0x04)
        at = tail.rfind(b"OggS", 0, at)
    return False


# ----------------------------------------------------------------------------- raw PCM and WAV streams


def _s24(b: bytes) -> np.ndarray:
    u = np.frombuffer(b, np.uint8).reshape(-1, 3).astype(np.int32)
    return (((u[:, 0] | (u[:, 1] << 8) | (u[:, 2] << 16)) ^ 0x800000) - 0x800000).astype(np.float32) / 2**23


ENCODINGS: dict[str, tuple[int, Callable[[bytes], np.ndarray]]] = {
    "s16le": (2, lambda b: np.frombuffer(b, "<i2").astype(np.float32) / 2**15),
    "s24le": (3, _s24),
    "s32le": (4, lambda b: (np.frombuffer(b, "<i4") / 2**31).astype(np.float32)),
    "f32le": (4, lambda b: np.frombuffer(b, "<f4").astype(np.float32)),
}
"""Raw PCM sample encoding -> (bytes per sample, bytes -> float32 samples in [-1, 1])."""

_WAV_ENCODINGS = {(1, 16): "s16le", (1, 24): "s24le", (1, 32): "s32le", (3, 32): "f32le"}  # (format tag, bits)


@dataclass(frozen=True)
class PcmFormat:
    """Raw PCM: `encoding` (a key of ENCODINGS), `sample_rate` Hz, interleaved `channels` (averaged to mono)."""

    encoding: str = "s16le"
    sample_rate: int = 16000
    channels: int = 1

    def __post_init__(self) -> None:
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"unknown PCM format {self.encoding!r}; choose from {', '.join(ENCODINGS)}")
        if self.sample_rate <= 0 or self.channels <= 0:
            raise ConfigError(f"PCM needs a sample rate > 0 and channels > 0, got {self.sample_rate} Hz, "
                              f"{self.channels} channels")


def open_pcm(f: BinaryIO, *, fmt: PcmFormat, sample_rate: int, block_s: float) -> tuple[PcmFormat, Iterator[np.ndarray]]:
    """A PCM byte stream -> (its format, mono float32 blocks of about block_s s at `sample_rate`).

    A stream that starts with a WAV header (RIFF/WAVE, PCM 16/24/32-bit or float 32-bit) is read
    with the header's format, to the end of the stream whatever sizes the header declares (a
    recorder may not have written them yet); anything else is raw PCM in `fmt`. Reads the
    header now (blocking until it arrives). Raises AudioError for an unusable WAV header.
    """
    head = _read_exactly(f, 4)
    if head == b"RIFF":
        body = _wav_header(f).fmt
        if body is None:
            raise AudioError("WAV stream: the data chunk comes before the fmt chunk")
        fmt, head = _wav_format(body), b""
    blocks = _pcm_blocks(f, head, fmt=fmt, block_s=block_s)
    if fmt.sample_rate == sample_rate:
        return fmt, blocks
    return fmt, resample_stream(blocks, orig_sample_rate=fmt.sample_rate, sample_rate=sample_rate)


def _read_exactly(f: BinaryIO, n: int) -> bytes:
    """n bytes from f (fewer only at the end of the stream)."""
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


@dataclass(frozen=True)
class _WavHeader:
    """A WAV/RF64 header up to the samples: the fmt chunk's body, the data size it declares (RF64:
    the ds64 chunk's), where the samples start and (RF64) where the ds64 chunk's body is."""

    fmt: bytes | None
    data_size: int
    offset: int
    ds64: int | None


def _wav_header(f: BinaryIO) -> _WavHeader:
    """Read a WAV or RF64 header from f (just after its "RIFF"/"RF64" tag) up to the start of the samples."""
    riff = _read_exactly(f, 8)
    if len(riff) < 8 or riff[4:] != b"WAVE":
        raise AudioError("the input starts with RIFF but is not a WAV stream")
    fmt, ds64, ds64_size, offset = None, None, None, 12
    while True:
        head = _read_exactly(f, 8)
        if len(head) < 8:
            raise AudioError("WAV stream: no data chunk before the end of the input")
        tag, size = head[:4], int.from_bytes(head[4:], "little")
        offset += 8
        if tag == b"data":
            return _WavHeader(fmt, size if ds64_size is None else ds64_size, offset, ds64)
        body = _read_exactly(f, size + size % 2)
        if tag == b"fmt ":
            fmt = body
        elif tag == b"ds64" and size >= 24:
            ds64, ds64_size = offset, int.from_bytes(body[8:16], "little")
        offset += size + size % 2


def _wav_format(body: bytes) -> PcmFormat:
    """The PcmFormat of a WAV fmt chunk; AudioError for anything but 16/24/32-bit PCM or 32-bit float."""
    if len(body) < 16:
        raise AudioError("WAV stream: fmt chunk too short")

    def field(a: int, b: int) -> int:
        return int.from_bytes(body[a:b], "little")

    code, channels, rate, bits = field(0, 2), field(2, 4), field(4, 8), field(14, 16)
    if code == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's first two bytes
        code = field(24, 26)
    encoding = _WAV_ENCODINGS.get((code, bits))
    if encoding is None:
        raise AudioError(f"WAV stream: unsupported sample format (format tag {code}, {bits} bits); "
                         f"use 16/24/32-bit PCM or 32-bit float")
    try:
        return PcmFormat(encoding, rate, channels)
    except ConfigError as e:
        raise AudioError(f"WAV stream: {e}") from None


def _pcm_blocks(f: BinaryIO, head: bytes, *, fmt: PcmFormat, block_s: float) -> Iterator[np.ndarray]:
    """Mono float32 blocks of round(block_s * fmt.sample_rate) samples (the last may be shorter) from f,
    after the bytes `head` already read; a trailing partial frame is dropped."""
    width, decode = ENCODINGS[fmt.encoding]
    frame = width * fmt.channels
    want = max(1, round(block_s * fmt.sample_rate)) * frame
    pending = head
    while True:
        data = pending + _read_exactly(f, want - len(pending)) if len(pending) < want else pending
        whole = len(data) - len(data) % frame
        if whole:
            y = decode(data[:whole])
            if fmt.channels > 1:
                y = y.reshape(-1, fmt.channels).mean(axis=1, dtype=np.float32)
            yield np.clip(y, -1.0, 1.0)
        pending = data[whole:]
        if len(data) < want:
            return


# ----------------------------------------------------------------------------- readers


class _Reader(Protocol):
    """An open decoder; `blocks` yields mono float32 at the native rate, raising only AudioError,
    and ends early at damaged data (setting `damage`)."""

    name: str
    sr: int
    channels: int
    format: str
    frames: int | None  # exact length from the header, None when only decoding tells
    estimated_frames: int | None  # the header's guess, for `info(check=False)`
    declared: int | None  # the length the header states (not a guess), to tell a file cut short
    damage: str | None  # why the file is damaged: known on opening, or set where decoding met bad data

    def blocks(self, *, start: int, stop: int | None, block: int) -> Iterator[np.ndarray]: ...

    def close(self) -> None: ...


def _to_mono(y: np.ndarray) -> np.ndarray:
    """[samples, channels] -> float32 [samples], the mean over channels."""
    return y[:, 0].copy() if y.shape[1] == 1 else y.mean(axis=1, dtype=np.float32)


class _SoundFileReader:
    """libsndfile through soundfile: exact lengths and sample-accurate seeking. Where it stops on
    bad data, PyAV decodes on from there up to the damage."""

    def __init__(self, source: _Source, kind: str | None) -> None:
        self.name, self._source, self._kind = source.name, source, kind
        self._file = source.binary() if source.path is None or source.patch else None
        try:
            self._f = sf.SoundFile(source.path if self._file is None else self._file)
        except (sf.SoundFileError, RuntimeError, ValueError) as e:
            self._close_file()
            reason = getattr(e, "error_string", None) or str(e)
            # libsndfile says this of any MP3 it cannot parse, even one that exists
            raise AudioError("unparsable" if "does not exist" in reason else reason) from None
        self.sr, self.channels = self._f.samplerate, self._f.channels
        self.format = f"{self._f.format}/{self._f.subtype}"
        self.frames = self.estimated_frames = self._f.frames
        self.declared = source.declared if source.damage else self.frames
        self.damage = source.damage

    def blocks(self, *, start: int, stop: int | None, block: int) -> Iterator[np.ndarray]:
        pos, stop = start, self._f.frames if stop is None else stop
        try:
            if start:
                self._f.seek(start)
            while pos < stop:
                y = self._f.read(min(block, stop - pos), dtype="float32", always_2d=True)
                if not len(y):
                    return
                pos += len(y)
                yield _to_mono(y)
            return
        except (sf.SoundFileError, RuntimeError, ValueError) as e:
            reason = str(getattr(e, "error_string", None) or e).removeprefix("Error : ")
            self.damage = f"undecodable data: {reason}"
        yield from self._decode_on(start=pos, stop=stop, block=block)

    def _decode_on(self, *, start: int, stop: int, block: int) -> Iterator[np.ndarray]:
        """PyAV's decode of frames [start, stop), up to the damage; nothing when PyAV cannot open the file."""
        try:
            other = _PyAVReader(self._source, self._kind)
        except AudioError:
            return
        try:
            yield from other.blocks(start=start, stop=stop, block=block)
        finally:
            other.close()

    def close(self) -> None:
        self._f.close()
        self._close_file()

    def _close_file(self) -> None:
        if self._file is not None and self._source.path is not None:
            self._file.close()


_PCM_SCALE = {"u8": 1 / 128, "s16": 1 / 32768, "s32": 1 / 2**31, "s64": 1 / 2**63, "flt": 1.0, "dbl": 1.0}


def _frame_to_mono(frame) -> np.ndarray:
    """A PyAV AudioFrame (any sample format, planar or packed) -> float32 [samples], mean over channels."""
    fmt = frame.format.name.removesuffix("p")
    channels = frame.layout.nb_channels
    a = frame.to_ndarray()
    if not frame.format.is_planar:
        a = a.reshape(-1, channels).T
    y = a.astype(np.float32)
    if fmt == "u8":
        y -= 128.0
    y *= _PCM_SCALE[fmt]
    return y[0] if channels == 1 else y.mean(axis=0)


class _PyAVReader:
    """FFmpeg through PyAV: containers libsndfile lacks, and files without a length in the header.

    A start is reached by decoding from the top and skipping: container timestamps (Matroska's
    are milliseconds) cannot place a seek on the exact sample. Decoding ends at damaged data.
    """

    def __init__(self, source: _Source, kind: str | None) -> None:
        import av

        self._av = av
        self.name = source.name
        self._file = source.binary()
        self._owns_file = source.path is not None
        try:
            self._container = av.open(self._file, mode="r")
        except av.FFmpegError as e:
            self.close()
            raise AudioError(e.strerror or str(e)) from None
        if not self._container.streams.audio:
            self.close()
            raise AudioError("no audio stream")
        self._stream = stream = self._container.streams.audio[0]
        self.sr = stream.codec_context.sample_rate
        self.channels = stream.codec_context.channels
        container = (kind if kind in _PYAV_ONLY else self._container.format.name.split(",")[0]).upper()
        self.format = f"{container}/{stream.codec_context.name.upper()}"
        self.frames = None
        if stream.duration and stream.time_base:
            seconds = float(stream.duration * stream.time_base)
        elif self._container.duration:
            seconds = self._container.duration / av.time_base
        else:
            seconds = None
        self.estimated_frames = None if seconds is None else round(seconds * self.sr)
        header_states = source.damage is None and kind in _PYAV_DECLARES
        self.declared = self.estimated_frames if header_states else source.declared
        self.damage = source.damage

    def blocks(self, *, start: int, stop: int | None, block: int) -> Iterator[np.ndarray]:
        def trimmed() -> Iterator[np.ndarray]:
            pos = 0
            for frame in self._container.decode(self._stream):
                y = _frame_to_mono(frame)
                lo, hi = max(start - pos, 0), len(y) if stop is None else min(len(y), stop - pos)
                if lo < hi:
                    yield y[lo:hi]
                pos += len(y)
                if stop is not None and pos >= stop:
                    return

        def to_the_damage() -> Iterator[np.ndarray]:
            try:
                yield from trimmed()
            except self._av.FFmpegError as e:
                self.damage = f"undecodable data: {e.strerror or e}"

        yield from _rechunk(to_the_damage(), size=block)

    def close(self) -> None:
        if getattr(self, "_container", None) is not None:
            self._container.close()
            self._container = None
        if self._owns_file:
            self._file.close()


_READERS = {"soundfile": _SoundFileReader, "pyav": _PyAVReader}


# ----------------------------------------------------------------------------- decoding


@contextmanager
def _open(src: AudioSource) -> Iterator[_Reader]:
    """Check `src`, sniff its content and open the first decoder that accepts it."""
    source = _resolve(src)
    kind = _sniff(source.head)
    if kind == "text":
        raise AudioError(f"{source.name}: not audio (a text file)")
    source = _header_damage(source, kind)
    reasons = []
    for backend in ("pyav",) if kind in _PYAV_ONLY else ("soundfile", "pyav"):
        try:
            reader = _READERS[backend](source, kind)
            break
        except AudioError as e:
            reasons.append(f"{backend}: {e}")
    else:
        what = "not a recognised audio format" if kind is None else f"cannot decode {kind} data, corrupt or truncated"
        raise AudioError(f"{source.name}: {what} ({'; '.join(reasons)})")
    try:
        _check_header(reader)
        yield reader
    finally:
        reader.close()


def _check_header(reader: _Reader) -> None:
    if not 1 <= reader.sr <= 1_000_000 or reader.channels < 1:
        raise AudioError(f"{reader.name}: impossible header ({reader.sr} Hz, {reader.channels} channels)")
    if reader.frames == 0:
        raise AudioError(f"{reader.name}: no audio samples (0 frames)")
    if reader.estimated_frames and reader.estimated_frames > MAX_DURATION_S * reader.sr:
        raise AudioError(
            f"{reader.name}: the header claims {reader.estimated_frames / reader.sr / 3600:.1f} h of audio, "
            f"over the {MAX_DURATION_S / 3600:.0f} h limit"
        )


def _frame_range(reader: _Reader, *, start: float | None, end: float | None) -> tuple[int, int | None]:
    """`start`/`end` seconds -> (first frame, stop frame or None for "to the end"), checked."""
    start = 0.0 if start is None else float(start)
    if start < 0 or (end is not None and end <= start):
        raise AudioError(f"{reader.name}: bad range start={start} s, end={end} s (need 0 <= start < end)")
    first = round(start * reader.sr)
    stop = None if end is None else round(float(end) * reader.sr)
    if reader.frames is not None:
        if first >= reader.frames:
            raise AudioError(
                f"{reader.name}: start {start} s is beyond the end of the audio ({reader.frames / reader.sr:.3f} s)"
            )
        stop = reader.frames if stop is None else min(stop, reader.frames)
    return first, stop


def _decode(
    reader: _Reader, *, start: int, stop: int | None, block: int, on_salvage: Callable[[_Salvage], None]
) -> Iterator[np.ndarray]:
    """Mono float32 blocks in [-1, 1] of frames [start, stop), checked for absurd lengths; a damaged
    file's blocks end at its damage and then `on_salvage` is told. AudioError when nothing decodes."""
    limit = MAX_DURATION_S * reader.sr
    count = 0
    for y in reader.blocks(start=start, stop=stop, block=block):
        count += len(y)
        if start + count > limit:
            raise AudioError(f"{reader.name}: longer than the {MAX_DURATION_S / 3600:.0f} h limit")
        yield np.clip(y, -1.0, 1.0, out=y)
    if count == 0:
        if start:
            raise AudioError(f"{reader.name}: start {start / reader.sr} s is beyond the end of the audio")
        if reader.damage:
            raise AudioError(f"{reader.name}: corrupt or truncated: no decodable audio ({reader.damage})")
        raise AudioError(f"{reader.name}: no audio samples (0 frames)")
    if salvage := _salvage(reader, start=start, stop=stop, end=start + count):
        on_salvage(salvage)


def _salvage(reader: _Reader, *, start: int, stop: int | None, end: int) -> _Salvage | None:
    """What a decode of frames [start, stop) that ended at `end` shows of damage: bad data met, or
    the data ending well before the length the header states; None for an intact file."""
    expected = reader.declared if stop is None or reader.declared is None else min(stop, reader.declared)
    short = expected is not None and expected - end > max(0.1 * reader.sr, 0.01 * (expected - start))
    if not (short or reader.damage):
        return None
    ran_out = short or stop is None or end < stop
    recovered = end if ran_out or reader.frames is None else reader.frames
    return _Salvage(reader.damage or "cut short", reader.declared, recovered)


def _warner(reader: _Reader) -> Callable[[_Salvage], None]:
    """An `on_salvage` that issues the AudioWarning."""
    return lambda s: warnings.warn(f"{reader.name}: {s.message(sr=reader.sr)}", AudioWarning, stacklevel=4)


def stream_resampler(*, orig_sample_rate: int, sample_rate: int) -> soxr.ResampleStream:
    """The resampler of streamed mono float32 audio (soxr HQ): feed it with resample_chunk(y, last=...)."""
    return soxr.ResampleStream(orig_sample_rate, sample_rate, 1, dtype="float32", quality="HQ")


def resample_stream(blocks: Iterable[np.ndarray], *, orig_sample_rate: int, sample_rate: int) -> Iterator[np.ndarray]:
    """One continuous soxr HQ resampling over consecutive blocks; the same output as `resample` on their join."""
    resampler = stream_resampler(orig_sample_rate=orig_sample_rate, sample_rate=sample_rate)
    for y in blocks:
        out = resampler.resample_chunk(y, last=False)
        if len(out):
            yield out
    tail = resampler.resample_chunk(np.zeros(0, dtype=np.float32), last=True)
    if len(tail):
        yield tail


def _rechunk(blocks: Iterable[np.ndarray], *, size: int) -> Iterator[np.ndarray]:
    """Regroup 1-D blocks into blocks of exactly `size` samples (the last may be shorter)."""
    pending: list[np.ndarray] = []
    have = 0
    for y in blocks:
        pending.append(y)
        have += len(y)
        if have >= size:
            joined = pending[0] if len(pending) == 1 else np.concatenate(pending)
            whole = have - have % size
            for i in range(0, whole, size):
                yield joined[i : i + size]
            pending = [joined[whole:]] if whole < have else []
            have -= whole
    if have:
        yield pending[0] if len(pending) == 1 else np.concatenate(pending)
