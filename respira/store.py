"""Monitoring sessions and their events in SQLite (stdlib sqlite3); the schema is in docs/monitor.md.

Every write is its own transaction, committed before the call returns (autocommit). The
database runs in WAL mode (readers such as `respira report` never block the monitor) with
synchronous=FULL: each commit is fsynced, so an event once stored survives a killed process
and also a power cut or an OS crash (NORMAL would keep it through a kill but may lose the
last commits on power loss: a bedside recorder gets unplugged). The cost, one fsync per
commit, is a few per second at most (one per event and one per block of progress).

A session is `running` while its process lives, `finished` once it ended cleanly (end of
input, Ctrl-C, SIGTERM; ended_at set), and `interrupted` when its process died without
ending it (SIGKILL, power cut): `mark_interrupted` finds those, on the same host, by pid.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path

from respira.detect.events import Event
from respira.errors import DataError

SCHEMA_VERSION = 1  # PRAGMA user_version
STATUSES: tuple[str, ...] = ("running", "finished", "interrupted")

_SCHEMA = (
    """CREATE TABLE sessions (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        started_at TEXT NOT NULL,
        ended_at TEXT,
        status TEXT NOT NULL CHECK (status IN ('running', 'finished', 'interrupted')),
        source TEXT NOT NULL,
        model TEXT NOT NULL,
        threshold REAL NOT NULL,
        sample_rate INTEGER NOT NULL,
        seconds_analysed REAL NOT NULL DEFAULT 0,
        seconds_active REAL NOT NULL DEFAULT 0,
        updated_at TEXT NOT NULL,
        host TEXT NOT NULL,
        pid INTEGER NOT NULL,
        params TEXT NOT NULL
    )""",
    """CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        session_id INTEGER NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
        start_s REAL NOT NULL,
        end_s REAL NOT NULL,
        wall_time TEXT,
        label TEXT NOT NULL,
        score REAL NOT NULL,
        snippet BLOB
    )""",
    "CREATE INDEX events_by_session ON events (session_id, start_s)",
)
_SESSION_COLUMNS = ("id, name, started_at, ended_at, status, source, model, threshold, sample_rate, seconds_analysed, "
                    "seconds_active, updated_at, host, pid, params, "
                    "(SELECT count(*) FROM events e WHERE e.session_id = s.id) AS events")


@dataclass(frozen=True)
class Session:
    """One row of `sessions` plus its number of events. Times are ISO 8601 local time with offset."""

    id: int
    name: str
    started_at: str
    ended_at: str | None
    status: str
    source: str
    model: str
    threshold: float
    sample_rate: int
    seconds_analysed: float
    seconds_active: float
    updated_at: str
    host: str
    pid: int
    params: dict
    events: int

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class StoredEvent:
    """One row of `events`: seconds from the start of the session's audio; snippet: WAV bytes or None."""

    id: int
    session_id: int
    start_s: float
    end_s: float
    wall_time: str | None
    label: str
    score: float
    snippet: bytes | None

    def to_event(self, file: str) -> Event:
        return Event(file, self.start_s, self.end_s, self.label, self.score)


def connect(path: str | os.PathLike, *, create: bool = True) -> sqlite3.Connection:
    """Open (and with `create`, make) the monitor database at `path`: WAL, synchronous=FULL,
    foreign keys on, autocommit. Raises DataError for a missing file (create=False), a file
    that is not a monitor database, or one written by a newer respira."""
    path = Path(path)
    if not create and not path.is_file():
        raise DataError(f"no monitor database at {path}")
    try:
        con = sqlite3.connect(path, timeout=10.0, isolation_level=None, check_same_thread=False)
    except sqlite3.Error as e:
        raise DataError(f"{path}: cannot open the database: {e}") from None
    try:
        con.row_factory = sqlite3.Row
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=FULL")
        con.execute("PRAGMA foreign_keys=ON")
        _check_schema(con, path, create=create)
    except sqlite3.DatabaseError as e:
        con.close()
        raise DataError(f"{path}: not a respira monitor database ({e})") from None
    except DataError:
        con.close()
        raise
    return con


def start_session(con: sqlite3.Connection, *, name: str, source: str, model: str, threshold: float, sample_rate: int,
                  params: dict) -> Session:
    """Insert a `running` session owned by this process (host, pid) and return it."""
    now = now_iso()
    cur = con.execute(
        "INSERT INTO sessions (name, started_at, status, source, model, threshold, sample_rate, updated_at, host, pid, params)"
        " VALUES (?, ?, 'running', ?, ?, ?, ?, ?, ?, ?, ?)",
        (name, now, source, model, float(threshold), int(sample_rate), now, socket.gethostname(), os.getpid(),
         json.dumps(params)))
    return session_by_id(con, int(cur.lastrowid))


def add_event(con: sqlite3.Connection, session_id: int, event: Event, *, wall_time: str | None = None,
              snippet: bytes | None = None) -> int:
    """Insert and commit one event of the session; returns its id."""
    cur = con.execute(
        "INSERT INTO events (session_id, start_s, end_s, wall_time, label, score, snippet) VALUES (?, ?, ?, ?, ?, ?, ?)",
        (session_id, event.start, event.end, wall_time, event.label, event.score, snippet))
    return int(cur.lastrowid)


def update_progress(con: sqlite3.Connection, session_id: int, *, seconds_analysed: float, seconds_active: float) -> None:
    """Record how much audio the session has analysed so far (and when)."""
    con.execute("UPDATE sessions SET seconds_analysed = ?, seconds_active = ?, updated_at = ? WHERE id = ?",
                (seconds_analysed, seconds_active, now_iso(), session_id))


def end_session(con: sqlite3.Connection, session_id: int, *, seconds_analysed: float, seconds_active: float,
                status: str = "finished") -> Session:
    """Close the session now (ended_at) with its final totals; status `finished`, or
    `interrupted` when it stopped on an error."""
    if status not in ("finished", "interrupted"):
        raise ValueError(f"a session ends as finished or interrupted, not {status!r}")
    now = now_iso()
    con.execute("UPDATE sessions SET ended_at = ?, status = ?, seconds_analysed = ?, seconds_active = ?, updated_at = ?"
                " WHERE id = ?", (now, status, seconds_analysed, seconds_active, now, session_id))
    return session_by_id(con, session_id)


def mark_interrupted(con: sqlite3.Connection) -> list[Session]:
    """Set `interrupted` on the running sessions of this host whose process is gone; returns them."""
    gone = [s for s in _sessions(con, "WHERE status = 'running'") if not _owner_alive(s.host, s.pid)]
    for s in gone:
        con.execute("UPDATE sessions SET status = 'interrupted' WHERE id = ? AND status = 'running'", (s.id,))
    return [session_by_id(con, s.id) for s in gone]


def sessions(con: sqlite3.Connection) -> list[Session]:
    """Every session, oldest first."""
    return _sessions(con, "ORDER BY id")


def session_by_id(con: sqlite3.Connection, session_id: int) -> Session:
    found = _sessions(con, "WHERE id = ?", (session_id,))
    if not found:
        raise DataError(f"no session with id {session_id}")
    return found[0]


def find_session(con: sqlite3.Connection, ref: str) -> Session:
    """The session `ref` names: `latest`, an id, or a name (the newest session of that name)."""
    ref = ref.strip()
    if ref == "latest":
        found = _sessions(con, "ORDER BY id DESC LIMIT 1")
    elif ref.isdigit():
        found = _sessions(con, "WHERE id = ?", (int(ref),))
    else:
        found = _sessions(con, "WHERE name = ? ORDER BY id DESC LIMIT 1", (ref,))
    if not found:
        what = "no sessions yet" if ref == "latest" else f"no session {ref!r}"
        raise DataError(f"{what} in this database (`respira report --list` lists them)")
    return found[0]


def events(con: sqlite3.Connection, session_id: int) -> list[StoredEvent]:
    """The session's events in time order (with their snippets)."""
    rows = con.execute("SELECT id, session_id, start_s, end_s, wall_time, label, score, snippet FROM events"
                       " WHERE session_id = ? ORDER BY start_s, id", (session_id,))
    return [StoredEvent(**dict(r)) for r in rows]


def now_iso() -> str:
    """The current local time, ISO 8601 with milliseconds and UTC offset."""
    return datetime.now().astimezone().isoformat(timespec="milliseconds")


def _sessions(con: sqlite3.Connection, where: str, args: tuple = ()) -> list[Session]:
    rows = con.execute(f"SELECT {_SESSION_COLUMNS} FROM sessions s {where}", args).fetchall()
    return [Session(**{**dict(r), "params": json.loads(r["params"])}) for r in rows]


def _check_schema(con: sqlite3.Connection, path: Path, *, create: bool) -> None:
    version = con.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise DataError(f"{path}: schema version {version} is newer than this respira's ({SCHEMA_VERSION}); upgrade respira")
    if version == SCHEMA_VERSION:
        return
    con.execute("BEGIN IMMEDIATE")  # another monitor may be creating it right now
    try:
        version = con.execute("PRAGMA user_version").fetchone()[0]
        if version == 0:
            if con.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                raise DataError(f"{path}: an SQLite database, but not a respira monitor database")
            if not create:
                raise DataError(f"{path}: an empty database, no sessions yet")
            for statement in _SCHEMA:
                con.execute(statement)
            con.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise


def _owner_alive(host: str, pid: int) -> bool:
    """Whether the process that runs a session may still live (another host's: assumed so;
    off POSIX only this process counts as alive)."""
    if host != socket.gethostname() or pid == os.getpid():
        return True
    if os.name != "posix":
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
