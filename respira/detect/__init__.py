"""Long recordings -> cough events, bouts, counts per hour and a night report.

gate (frame levels, adaptive noise floor) -> windows scored by a model -> energy bursts
scored from the windows -> events; see `pipeline` for the flow, `run` for a run over many files.
"""

from respira.detect.config import DetectConfig
from respira.detect.events import Bout, Event, group_bouts
from respira.detect.pipeline import StreamDetector, detect_array, detect_file
from respira.detect.state import FileResult

__all__ = ["Bout", "DetectConfig", "Event", "FileResult", "StreamDetector", "detect_array", "detect_file", "group_bouts"]
