"""respira.settings: the one config machinery (YAML + overrides -> checked frozen dataclasses), free of torch."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Union

import pytest

from respira.errors import ConfigError
from respira.settings import Bounded, bounded, build, path_field, read_settings


def _upper(raw, key):
    if not isinstance(raw, str):
        raise ConfigError(f"{key}: expected a word")
    return raw.upper()


@dataclass(frozen=True)
class Inner(Bounded, key="outer.inner"):
    rate: float = bounded(0.5, ge=0.0, le=1.0)
    file: Union[str, None] = path_field(None)


@dataclass(frozen=True)
class Outer(Bounded, key="outer"):
    name: Annotated[str, _upper] = "x"
    count: int = bounded(1, ge=1)
    sizes: tuple[int, ...] = ()
    inner: Inner = Inner()


def test_build_converts_checks_and_resolves(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    built = build(Outer, {"name": "cough", "sizes": [1, 2], "inner": {"rate": "1e-1", "file": "a.csv"}}, prefix="outer")
    assert built == Outer(name="COUGH", sizes=(1, 2), inner=Inner(rate=0.1, file=str(tmp_path / "a.csv")))
    for raw, message in [
        ({"count": 0}, "outer.count: must be >= 1, got 0"),
        ({"inner": {"rate": 2}}, "outer.inner.rate: must be <= 1, got 2"),
        ({"inner": {"rat": 2}}, "unknown key 'outer.inner.rat' (did you mean 'outer.inner.rate'?)"),
        ({"sizes": [1, "b"]}, "outer.sizes[1]: expected an integer, got 'b'"),
        ({"name": 3}, "outer.name: expected a word"),
    ]:
        with pytest.raises(ConfigError) as e:
            build(Outer, raw, prefix="outer")
        assert str(e.value) == message
    with pytest.raises(ConfigError, match=r"^outer.inner.rate: must be >= 0, got -1$"):
        Inner(rate=-1)  # on construction too


def test_read_settings(tmp_path: Path) -> None:
    path = tmp_path / "s.yaml"
    path.write_text("detect:\n  threshold: 0.9\n")
    assert read_settings(path, ["monitor.history_s=10"], sections=("detect", "monitor")) == {
        "detect": {"threshold": 0.9}, "monitor": {"history_s": 10}}
    assert read_settings(None, sections=("detect",)) == {"detect": {}}
    path.write_text("- 1\n")
    with pytest.raises(ConfigError, match=r"expected a mapping of sections \(detect\) at the top"):
        read_settings(path, sections=("detect",))
    with pytest.raises(ConfigError, match="detect: expected a mapping of keys, got 3"):
        read_settings(None, ["detect=3"], sections=("detect",))


def test_settings_import_no_torch() -> None:
    code = "import sys, respira.settings, respira.detect.config; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
