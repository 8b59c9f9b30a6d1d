"""The peak search's report: probe value against the bounded latency percentile, by verdict.

``raybench search-peak`` writes ``peak_summary.json`` into its directory; this module turns it
into ``report.html`` (self-contained, the same ``id``/``data-value`` cells as a run's report) and
``plots/peak.png``: each probe's target QPS (or concurrency) on x, its
``target_latency_percentile`` latency (TTFT for token workloads) on y, the bound as a line,
probes that met the bounds in green and those that missed them in red, numbered in run order,
and the peak marked.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from raybench.core.logs.atomic import atomic_write_bytes, atomic_write_text
from raybench.report.html import _CSS, _cell, _e, _img
from raybench.report.plots import _figure, _png

__all__ = ["peak_png", "render_peak_html", "write_peak_report"]


def peak_png(summary: Mapping[str, Any]) -> bytes:
    """The probe scatter (see the module docstring) as PNG bytes."""
    probes = list(summary.get("probes") or [])
    fig, ax = _figure(8, 4.2)
    a = ax[0][0]
    for ok, color, label in ((True, "#2e7d32", "meets the bounds"), (False, "#c62828", "misses the bounds")):
        pts = [p for p in probes if bool(p["ok"]) is ok]
        if pts:
            a.scatter([p["value"] for p in pts], [p["p_latency_ms"] for p in pts], color=color, zorder=3, label=label)
    for p in probes:
        a.annotate(str(p["index"]), (p["value"], p["p_latency_ms"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
    if probes:
        a.axhline(float(probes[0]["bound_ms"]), color="#555", ls="--", lw=1, label=f"bound {float(probes[0]['bound_ms']):g} ms")
        pct = float(probes[0]["percentile"]) * 100
    else:
        pct = 99.0
    if summary.get("peak") is not None:
        a.axvline(float(summary["peak"]), color="#4878d0", lw=1.5, label=f"peak {float(summary['peak']):g}")
    field = str(summary.get("field", "target_qps"))
    a.set(xlabel=field, ylabel=f"p{pct:g} latency (ms)", title=f"Peak search ({summary.get('scenario', '')})")
    a.grid(alpha=0.3)
    if probes:  # a search stopped before its first probe has nothing to label
        a.legend(fontsize=8)
    return _png(fig)


def render_peak_html(summary: Mapping[str, Any], search_dir: Path, pngs: dict[str, bytes]) -> str:
    """The page for a search directory; the plot is added to ``pngs``."""
    rows = []
    for p in summary.get("probes") or []:
        i = p["index"]
        rows.append(
            f"<tr>{_cell(f'probe-{i}-value', p['value'])}<td>{_e(p['phase'])}</td>"
            f"{_cell(f'probe-{i}-p_latency_ms', p['p_latency_ms'])}{_cell(f'probe-{i}-ok', p['ok'])}"
            f"<td class='{_e(p['validity'])}'>{_e(p['validity'])}</td><td>{_e(Path(p['run_dir']).name)}</td></tr>"
        )
    field = _e(summary.get("field", ""))
    head = (f"<table><tr><th>peak {field}</th>{_cell('peak', summary.get('peak'))}</tr>"
            f"<tr><th>bracket</th><td>[{_e(summary.get('lower'))}, {_e(summary.get('upper'))})</td></tr>"
            f"<tr><th>criterion</th><td>{_e(summary.get('criterion'))}</td></tr>"
            f"<tr><th>result</th><td>{_e(summary.get('message'))}</td></tr></table>")
    table = (f"<table id='probe-table'><tr><th>{field}</th><th>phase</th><th>bounded percentile (ms)</th>"
             f"<th>meets the bounds</th><th>verdict</th><th>run</th></tr>{''.join(rows)}</table>")
    body = (f"<h1>raybench peak search: {_e(summary.get('scenario', ''))}</h1><p><code>{_e(search_dir)}</code></p>"
            f"<section id='peak'><h2>Peak</h2>{head}{_img('peak', peak_png(summary), pngs)}</section>"
            f"<section id='probes'><h2>Probes (in run order)</h2>{table}</section>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>raybench peak search</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


def write_peak_report(search_dir: str | Path) -> list[Path]:
    """Write ``report.html`` and ``plots/peak.png`` for a search directory; returns the paths.

    Raises:
        FileNotFoundError: no ``peak_summary.json`` in ``search_dir``.
    """
    d = Path(search_dir)
    src = d / "peak_summary.json"
    if not src.is_file():
        raise FileNotFoundError(f"{src}: not found (not a peak-search directory)")
    summary = json.loads(src.read_text())
    pngs: dict[str, bytes] = {}
    out = [atomic_write_text(d / "report.html", render_peak_html(summary, d, pngs))]
    (d / "plots").mkdir(exist_ok=True)
    out += [atomic_write_bytes(d / "plots" / f"{name}.png", png) for name, png in pngs.items()]
    return out
