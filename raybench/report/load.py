"""Read a run directory for reports, tolerating missing or half-written files.

A run killed half way leaves only some files (DESIGN.md: every file is written atomically, so a
file is either whole or absent). Reports show what exists and list what is missing instead of
failing; only a path that is not a directory at all is an error.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raybench.core.histogram import Histogram

__all__ = ["RunData", "fmt_ms", "load_run", "load_sweep_points", "ns_to_ms"]


@dataclass
class RunData:
    """Everything a report reads from one run directory (``None``/empty when absent).

    Attributes:
        run_dir: the directory.
        result: ``result.json``.
        histograms: ``histograms.json`` rebuilt as :class:`Histogram` objects, by metric name.
        timeline: ``timeline.json`` (per-second snapshots).
        system: ``system.json``.
        config: ``config.yaml``.
        accuracy_txt: ``accuracy.txt``.
        sweep: points of ``sweep_summary.json`` (concurrency, system_tps, tps_per_user, ttft_p90_ms).
        telemetry: rows of ``telemetry.jsonl`` (server metrics scraped during the run; optional).
        problems: one line per file that is missing or unreadable.
    """

    run_dir: Path
    result: dict[str, Any] | None = None
    histograms: dict[str, Histogram] = field(default_factory=dict)
    timeline: list[dict[str, Any]] = field(default_factory=list)
    system: dict[str, Any] | None = None
    config: dict[str, Any] | None = None
    accuracy_txt: str | None = None
    sweep: list[dict[str, Any]] | None = None
    telemetry: list[dict[str, Any]] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def label(self) -> str:
        """A short name for legends: the run directory's name."""
        return self.run_dir.name

    def metric(self, key: str, default: Any = None) -> Any:
        """``result[key]`` or ``default``."""
        return (self.result or {}).get(key, default)

    def hist(self, name: str) -> Histogram | None:
        """The merged histogram ``name`` if it holds at least one value."""
        h = self.histograms.get(name)
        return h if h is not None and h.count else None


def _read_json(path: Path, problems: list[str]) -> Any:
    if not path.exists():
        problems.append(f"{path.name}: missing")
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        problems.append(f"{path.name}: unreadable ({type(exc).__name__})")
        return None


def _read_jsonl(path: Path, problems: list[str]) -> list[dict[str, Any]]:
    rows = []
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        problems.append(f"{path.name}: unreadable ({type(exc).__name__})")
        return rows
    for i, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError:
            problems.append(f"{path.name}: line {i}: not JSON")
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def load_sweep_points(path: Path) -> list[dict[str, Any]]:
    """Points of a ``sweep_summary.json``: a list of dicts, or ``{"points": [...]}``.

    Raises:
        ValueError: one line naming the file when a point lacks ``system_tps``/``tps_per_user``.
    """
    data = json.loads(path.read_text())
    points = data.get("points", []) if isinstance(data, dict) else data
    if not isinstance(points, list):
        raise ValueError(f"{path}: expected a list of points or {{'points': [...]}}")
    for i, p in enumerate(points):
        if not isinstance(p, dict) or "system_tps" not in p:
            raise ValueError(f"{path}: point {i} needs system_tps")
    return points


def load_run(run_dir: str | Path) -> RunData:
    """Load whatever exists in ``run_dir``.

    Raises:
        FileNotFoundError: when ``run_dir`` is not a directory.
    """
    d = Path(run_dir)
    if not d.is_dir():
        raise FileNotFoundError(f"{d}: not a run directory")
    data = RunData(run_dir=d)
    sweep_file = d / "sweep_summary.json"
    if sweep_file.exists():
        try:
            data.sweep = load_sweep_points(sweep_file)
        except (OSError, ValueError) as exc:
            data.problems.append(str(exc).splitlines()[0])
    quiet: list[str] = []  # a sweep directory has no result.json of its own: not a problem there
    probs = quiet if data.sweep is not None else data.problems
    data.result = _read_json(d / "result.json", probs)
    hists = _read_json(d / "histograms.json", probs) or {}
    for name, entry in hists.items():
        try:
            data.histograms[name] = Histogram.from_dict(entry["histogram"])
        except (KeyError, TypeError, ValueError) as exc:
            probs.append(f"histograms.json: {name}: unreadable ({type(exc).__name__})")
    tl = _read_json(d / "timeline.json", probs)
    data.timeline = [s for s in tl if isinstance(s, dict)] if isinstance(tl, list) else []
    data.system = _read_json(d / "system.json", probs)
    cfg = d / "config.yaml"
    if cfg.exists():
        try:
            data.config = yaml.safe_load(cfg.read_text())
        except (OSError, yaml.YAMLError):
            probs.append("config.yaml: unreadable")
    tel = d / "telemetry.jsonl"
    if tel.exists():  # optional: only endpoint runs with telemetry have it
        data.telemetry = _read_jsonl(tel, probs)
    acc = d / "accuracy.txt"
    if acc.exists():
        data.accuracy_txt = acc.read_text(errors="replace")
    return data


def ns_to_ms(v: Any) -> float | None:
    """Nanoseconds to milliseconds (``None`` stays ``None``)."""
    return None if v is None else float(v) / 1e6


def fmt_ms(v_ns: Any, digits: int = 3) -> str:
    """A nanosecond value as milliseconds text, ``-`` when absent."""
    return "-" if v_ns is None else f"{float(v_ns) / 1e6:.{digits}f}"
