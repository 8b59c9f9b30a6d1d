"""``raybench compare``: runs side by side (a table) and their distributions overlaid (PNGs).

Rows are the same for every run so columns line up; a value a run does not have (no tokens, no
accuracy) is ``-``. The overlaid CDFs use the merged HDR histograms of each run.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raybench.core.logs.atomic import atomic_write_bytes
from raybench.report.load import RunData, fmt_ms, load_run

__all__ = ["COMPARE_ROWS", "compare_rows", "compare_runs", "write_compare_plots"]


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.6g}" if isinstance(v, float) else str(v)


def _pct(key: str, p: str) -> Any:
    return lambda r: fmt_ms(((r.result or {}).get(key) or {}).get(p))


def _accuracy(r: RunData) -> str:
    acc = (r.result or {}).get("accuracy") or {}
    m = acc.get("metrics") or {}
    if not m:
        return "-"
    return ", ".join(f"{k}={_num(v)}" for k, v in m.items())


COMPARE_ROWS: tuple[tuple[str, Any], ...] = (
    ("workload", lambda r: _num(r.metric("workload"))),
    ("sut", lambda r: _num(r.metric("sut"))),
    ("scenario", lambda r: _num(r.metric("scenario"))),
    ("mode", lambda r: _num(r.metric("mode"))),
    ("validity", lambda r: _num(r.metric("validity"))),
    ("invalid reasons", lambda r: str(len(r.metric("invalid_reasons") or [])) if r.result else "-"),
    ("samples/s", lambda r: _num(r.metric("samples_per_second"))),
    ("tokens/s", lambda r: _num(r.metric("tokens_per_second"))),
    ("samples completed", lambda r: _num(r.metric("samples_completed"))),
    ("errors", lambda r: _num(r.metric("num_errors"))),
    ("latency p50 (ms)", _pct("latency_ns", "p50")),
    ("latency p90 (ms)", _pct("latency_ns", "p90")),
    ("latency p99 (ms)", _pct("latency_ns", "p99")),
    ("TTFT p90 (ms)", _pct("ttft_ns", "p90")),
    ("TPOT p90 (ms)", _pct("tpot_ns", "p90")),
    ("lateness p99 (ms)", _pct("lateness_ns", "p99")),
    ("shards", lambda r: _num(r.metric("shards"))),
    ("accuracy", _accuracy),
    ("nodes", lambda r: _num((r.system or {}).get("number_of_nodes"))),
    ("accelerator", lambda r: _num((r.system or {}).get("accelerator_model_name"))),
)
"""(row label, function RunData -> text) of the comparison table."""


def compare_rows(runs: Sequence[RunData]) -> list[list[str]]:
    """The table as text: one row per :data:`COMPARE_ROWS` entry, one column per run."""
    return [[label, *(fn(r) for r in runs)] for label, fn in COMPARE_ROWS]


def write_compare_plots(runs: Sequence[RunData], out_dir: Path) -> list[Path]:
    """Overlaid CDFs (latency; TTFT and TPOT when any run has them) as PNGs in ``out_dir``.

    Legends are the run directory names, prefixed with the run's position when two share a name.
    """
    from raybench.report.plots import cdf_overlay_png

    out_dir.mkdir(parents=True, exist_ok=True)
    names = [r.label for r in runs]
    labels = [f"{i}: {n}" if names.count(n) > 1 else n for i, n in enumerate(names)]
    written = []
    for hist, title in (("latency", "latency"), ("ttft", "TTFT"), ("tpot", "TPOT"), ("lateness", "lateness")):
        series = [(lab, h) for lab, r in zip(labels, runs, strict=True) if (h := r.hist(hist)) is not None]
        if not series:
            continue
        path = out_dir / f"{hist}_cdf.png"
        atomic_write_bytes(path, cdf_overlay_png(series, title))
        written.append(path)
    return written


def compare_runs(run_dirs: Sequence[str | Path], out_dir: str | Path | None = None) -> tuple[list[RunData], list[list[str]], list[Path]]:
    """Load runs, build the table and (with ``out_dir``) write the overlaid plots.

    Raises:
        FileNotFoundError: when a path is not a run directory.
    """
    runs = [load_run(d) for d in run_dirs]
    rows = compare_rows(runs)
    pngs = write_compare_plots(runs, Path(out_dir)) if out_dir is not None else []
    return runs, rows, pngs
