"""Long recordings -> cough events, bouts, counts per hour and a night report.

gate (frame levels, adaptive noise floor) -> windows scored by a model -> energy bursts
scored from the windows -> events; see `pipeline` for the flow, `job` for a run over many files
(`detect`, also `respira.detect(paths, out=...)`: this package is callable), `night_report` for
the night in numbers and pictures, `event_metrics` for matching detections to annotated events
and their metrics, and `event_job` for the job over both (`evaluate_events`, also
`respira.evaluate_events`).
"""

from respira.callable_module import callable_module
from respira.detect.config import DetectConfig, detect_settings
from respira.detect.event_job import evaluate_events
from respira.detect.events import Bout, Event, group_bouts
from respira.detect.pipeline import StreamDetector, detect_array, detect_file
from respira.detect.job import RunResult, detect
from respira.detect.state import FileResult

__all__ = ["Bout", "DetectConfig", "Event", "FileResult", "RunResult", "StreamDetector", "detect", "detect_array",
           "detect_file", "detect_settings", "evaluate_events", "group_bouts"]

callable_module(__name__, detect)
