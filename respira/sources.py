"""Where a monitoring session's audio comes from, as mono float32 blocks at the model's rate:
the microphone (`mic_blocks`, needs the optional `sounddevice` package), raw PCM or a WAV stream
on stdin or in a file still being written (`respira.audio.open_pcm` over a `GrowingFile`), or a
whole audio file (`respira.audio.stream`). `Source` picks one from what a user names;
`background` reads any of them ahead on a thread so that a stop is never held up by input.
"""

from __future__ import annotations

import os
import queue
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from respira import audio
from respira.audio import PcmFormat, open_pcm, resample_stream
from respira.errors import AudioError, ConfigError

NO_MIC = ("no sound input device found; use --input stdin with ffmpeg, e.g. "
          "ffmpeg -f pulse -i default -f s16le -ac 1 -ar 16000 - | respira monitor --input stdin "
          "(macOS: -f avfoundation -i :0, Windows: -f dshow -i audio=NAME)")
LIVE_BLOCK_S = 0.5
"""Seconds per block read from live input (events come out about 2-4 s after they end)."""
KINDS = ("mic", "stdin", "follow", "file")


@dataclass(frozen=True)
class Source:
    """A session's input. kind: "mic", "stdin" (raw PCM or WAV on a pipe), "follow" (a WAV or raw
    PCM file still being written, ended after `idle_s` seconds without growth) or "file" (a whole
    audio file, analysed as fast as it decodes); path: the file of follow and file; pcm: the format
    of raw PCM input (a WAV header overrides it), its rate also the microphone's."""

    kind: str
    path: str | None = None
    pcm: PcmFormat = PcmFormat()
    idle_s: float = 10.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ConfigError(f"unknown input kind {self.kind!r}; choose from {', '.join(KINDS)}")
        if self.idle_s <= 0:
            raise ConfigError(f"--idle must be > 0 seconds, got {self.idle_s}")
        if self.kind in ("follow", "file") and not (self.path and Path(self.path).is_file()):
            raise ConfigError(f"--input {self.path}: no such file (use mic, stdin or an audio file)")

    @classmethod
    def parse(cls, text: str, *, follow: bool = False, pcm: PcmFormat = PcmFormat(), idle_s: float = 10.0) -> Source:
        """The input a user names: "mic", "stdin" (or "-") or an audio file's path (`follow`: being written)."""
        kind = "stdin" if text in ("stdin", "-") else "mic" if text == "mic" else "follow" if follow else "file"
        if follow and kind != "follow":
            raise ConfigError("--follow needs --input FILE (a file being written)")
        return cls(kind, text if kind in ("follow", "file") else None, pcm, idle_s)

    @property
    def live(self) -> bool:
        """Real-time audio: read in short blocks, events get a wall-clock time."""
        return self.kind != "file"

    @property
    def name(self) -> str:
        """What the session records as its source: "mic", "stdin" or the file's path."""
        return self.path or self.kind

    @property
    def block_s(self) -> float:
        """The seconds per block a session reads unless its settings say otherwise."""
        from respira.detect.config import DetectConfig

        return LIVE_BLOCK_S if self.live else DetectConfig().block_s

    def open(self, *, sample_rate: int, block_s: float, stop: threading.Event | None = None) -> tuple[Iterator[np.ndarray], dict]:
        """(blocks at `sample_rate` of about block_s s, what the session records about its input). Fails now
        (AudioError) on a missing microphone, a bad WAV header or an unreadable file."""
        if self.kind == "mic":
            blocks = mic_blocks(sample_rate=sample_rate, block_s=block_s, input_sample_rate=self.pcm.sample_rate)
            return blocks, {"kind": "mic", "sample_rate": self.pcm.sample_rate}
        if self.kind == "file":
            audio.info(self.path, check=False)
            return audio.stream(self.path, sample_rate=sample_rate, block_s=block_s), {"kind": "file"}
        # stdin unbuffered: the reading thread then holds no lock that would block the interpreter's exit
        f = (open(sys.stdin.fileno(), "rb", buffering=0, closefd=False) if self.kind == "stdin"  # noqa: SIM115
             else GrowingFile(self.path, idle_s=self.idle_s, stop=stop))
        fmt, blocks = open_pcm(f, fmt=self.pcm, sample_rate=sample_rate, block_s=block_s)
        return blocks, {"kind": self.kind, "format": fmt.encoding, "sample_rate": fmt.sample_rate, "channels": fmt.channels}


class GrowingFile:
    """A file being written, read as a stream: `read(n)` waits for n more bytes, and returns fewer
    (the end) once the file has not grown for `idle_s` seconds or `stop` is set."""

    def __init__(self, path: str | os.PathLike, *, idle_s: float = 10.0, poll_s: float = 0.1,
                 stop: threading.Event | None = None) -> None:
        try:
            self._f = open(path, "rb")  # noqa: SIM115 - closed by close()
        except OSError as e:
            raise AudioError(f"{path}: cannot open: {e.strerror or e}") from None
        self.idle_s, self.poll_s, self.stop = idle_s, poll_s, stop

    def read(self, n: int) -> bytes:
        out = bytearray()
        last_growth = time.monotonic()
        while len(out) < n:
            chunk = self._f.read(n - len(out))
            if chunk:
                out += chunk
                last_growth = time.monotonic()
            elif time.monotonic() - last_growth >= self.idle_s or (self.stop is not None and self.stop.is_set()):
                break
            else:
                time.sleep(self.poll_s)
        return bytes(out)

    def close(self) -> None:
        self._f.close()


def mic_blocks(*, sample_rate: int, block_s: float, input_sample_rate: int | None = None) -> Iterator[np.ndarray]:
    """The default microphone through `sounddevice`, mono float32 blocks of block_s s at
    `sample_rate` (recorded at input_sample_rate, default sample_rate, and resampled). Raises AudioError now when sounddevice
    is missing or no input device can record."""
    rate = input_sample_rate or sample_rate
    try:
        import sounddevice as sd
    except (ImportError, OSError) as e:  # OSError: the PortAudio library is missing
        raise AudioError(f"{NO_MIC} [microphone input needs the sounddevice package: "
                         f"pip install 'respira[live]' ({e})]") from None
    try:
        sd.check_input_settings(samplerate=rate, channels=1, dtype="float32")
    except Exception as e:  # sounddevice raises PortAudioError or ValueError for a missing device
        raise AudioError(f"{NO_MIC} [{e}]") from None

    def record() -> Iterator[np.ndarray]:
        q: queue.Queue[np.ndarray] = queue.Queue()
        with sd.InputStream(samplerate=rate, channels=1, dtype="float32", blocksize=max(1, round(block_s * rate)),
                            callback=lambda data, frames, t, status: q.put(data[:, 0].copy())):
            while True:
                yield q.get()

    return record() if rate == sample_rate else resample_stream(record(), orig_sample_rate=rate, sample_rate=sample_rate)


def background(blocks: Iterable[np.ndarray], stop: threading.Event, *, buffered: int = 16) -> Iterator[np.ndarray]:
    """`blocks`, read ahead on a daemon thread so that waiting for input never delays a stop:
    iteration ends as soon as `stop` is set. Errors from the source are raised here."""
    q: queue.Queue = queue.Queue(maxsize=buffered)
    end = object()

    def pump() -> None:
        try:
            for b in blocks:
                q.put(b)
        except BaseException as e:  # handed to the consumer
            q.put(e)
        q.put(end)

    threading.Thread(target=pump, name="respira-monitor-input", daemon=True).start()
    while not stop.is_set():
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            continue
        if item is end:
            return
        if isinstance(item, BaseException):
            raise item
        yield item
