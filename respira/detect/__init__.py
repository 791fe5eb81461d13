"""Long recordings -> cough events, bouts, counts per hour and a night report.

gate (frame levels, adaptive noise floor) -> windows scored by a model -> energy bursts
scored from the windows -> events; see `pipeline` for the flow, `run` for a run over many files
(`detect`, also `respira.detect(paths, out=...)`: this package is callable), `evaluate_run` for
`evaluate_events` on annotated recordings.
"""

from respira.callable_module import callable_module
from respira.detect.config import DetectConfig, detect_settings
from respira.detect.evaluate_run import evaluate_events
from respira.detect.events import Bout, Event, group_bouts
from respira.detect.pipeline import StreamDetector, detect_array, detect_file
from respira.detect.run import RunResult, detect
from respira.detect.state import FileResult

__all__ = ["Bout", "DetectConfig", "Event", "FileResult", "RunResult", "StreamDetector", "detect", "detect_array",
           "detect_file", "detect_settings", "evaluate_events", "group_bouts"]

callable_module(__name__, detect)
