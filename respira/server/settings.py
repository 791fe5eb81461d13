"""`ServerSettings`: every setting of the HTTP server, one frozen dataclass."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from respira.errors import ConfigError

TOKEN_ENV = "RESPIRA_API_TOKEN"
"""Environment variable read for the API token when `ServerSettings.token` is not given."""


@dataclass(frozen=True)
class ServerSettings:
    """How the server runs.

    models: built-in names or bundle paths, loaded at start-up; the first is the default.
    max_upload_mb: the largest request body accepted (MB = 10**6 bytes). max_predict_s /
    max_detect_s: the longest audio /predict and /detect analyse, seconds. token: when set,
    every /api request needs ``Authorization: Bearer <token>`` (the page, /health and the docs
    stay open); None reads RESPIRA_API_TOKEN (empty = no token). workers: requests analysed
    at once (threads); max_queue: requests allowed to wait for a worker before 503 (their
    uploads sit in memory). host/port: where `respira serve` binds. detect: the detector's
    settings for /detect (DetectConfig keys over each model's decision threshold; a request's
    `threshold` wins), as `respira.detect.config.detect_settings` reads them from --config/--set;
    the live page's sessions use them too. db: the SQLite database of the live page's sessions
    (`respira.store`, as `respira monitor --db`; created on the first session).
    """

    models: tuple[str, ...] = ("cough",)
    max_upload_mb: float = 50.0
    max_predict_s: float = 600.0
    max_detect_s: float = 12 * 3600.0
    token: str | None = field(default=None, repr=False)
    workers: int = 2
    max_queue: int = 32
    host: str = "127.0.0.1"
    port: int = 8000
    detect: Mapping[str, Any] = field(default_factory=dict)
    db: str = "respira.sqlite"

    def __post_init__(self) -> None:
        from respira.detect.config import DetectConfig
        from respira.settings import build

        build(DetectConfig, self.detect, prefix="detect")  # ConfigError now for a bad setting
        object.__setattr__(self, "models", tuple(str(m) for m in self.models))
        object.__setattr__(self, "db", str(self.db))
        token = os.environ.get(TOKEN_ENV) if self.token is None else self.token
        object.__setattr__(self, "token", token or None)
        rules = [
            (len(self.models) >= 1, "models: name at least one model"),
            (self.max_upload_mb > 0, f"max_upload_mb must be > 0, got {self.max_upload_mb}"),
            (self.max_predict_s > 0, f"max_predict_s must be > 0, got {self.max_predict_s}"),
            (self.max_detect_s > 0, f"max_detect_s must be > 0, got {self.max_detect_s}"),
            (self.workers >= 1, f"workers must be >= 1, got {self.workers}"),
            (self.max_queue >= 0, f"max_queue must be >= 0, got {self.max_queue}"),
            (0 <= self.port <= 65535, f"port must be in 0..65535, got {self.port}"),
        ]
        problems = [message for ok, message in rules if not ok]
        if problems:
            raise ConfigError(f"server settings: {'; '.join(problems)}")

    @property
    def max_upload_bytes(self) -> int:
        return int(self.max_upload_mb * 1_000_000)
