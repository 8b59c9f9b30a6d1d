"""``report.html``: one self-contained page per run directory (PNG plots embedded as base64).

The page reads only the run directory (``raybench.report.load``), so it can be rebuilt any time
with ``raybench report RUN_DIR``. Every number in the data tables carries an ``id`` and its exact
JSON value in ``data-value`` (e.g. ``<td id="m-latency_ns.p99" data-value="4042606">``), so tests
and scripts can read the report back and compare it with ``result.json``. The PNGs are also
written beside the page in ``plots/``. A section whose input is missing says so; a section that
fails to render shows the error; the page is always written.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from raybench.core.logs.atomic import atomic_write_bytes, atomic_write_text
from raybench.report.load import RunData, fmt_ms, load_run

__all__ = ["SECTIONS", "SUMMARY_KEYS", "iter_cells", "render_html", "write_report"]

SECTIONS = ("verdict", "summary", "accuracy", "latency", "timeline", "telemetry", "shards", "tokens", "pareto", "system", "config")
"""Section ids, in page order; every one is present on every page."""
SUMMARY_KEYS = (
    "samples_per_second", "scheduled_samples_per_second", "tokens_per_second", "queries_issued", "samples_issued",
    "samples_completed", "num_errors", "total_tokens", "duration_ns", "overlatency_count", "shards",
)
"""Scalar result.json fields shown in the metrics table (``id="m-<key>"``)."""
_DIST_KEYS = ("latency_ns", "query_latency_ns", "ttft_ns", "tpot_ns", "itl_ns", "lateness_ns")

_CSS = """
body{font-family:system-ui,sans-serif;margin:24px;color:#222;max-width:1100px}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ddd;padding-bottom:4px;margin-top:28px}
table{border-collapse:collapse;margin:8px 0;font-size:13px}td,th{border:1px solid #ddd;padding:3px 8px;text-align:left}
th{background:#f4f4f4}.VALID{background:#2e7d32;color:#fff}.INVALID{background:#c62828;color:#fff}
.badge{display:inline-block;padding:4px 12px;border-radius:4px;font-weight:bold;font-size:18px}
.na{color:#777;font-style:italic}.err{color:#c62828}img{max-width:100%;border:1px solid #eee}
.cols{display:flex;gap:32px;flex-wrap:wrap}pre{background:#f7f7f7;padding:8px;font-size:12px;overflow:auto}
"""


def _e(v: Any) -> str:
    return html.escape(str(v), quote=True)


def _cell(cell_id: str, value: Any, text: str | None = None) -> str:
    """A data cell: exact JSON value in ``data-value``, human text inside."""
    if text is None:
        text = "-" if value is None else (f"{value:.6g}" if isinstance(value, float) else str(value))
    return f'<td id="{_e(cell_id)}" data-value="{_e(json.dumps(value))}">{_e(text)}</td>'


def _img(name: str, png: bytes, pngs: dict[str, bytes]) -> str:
    pngs[name] = png
    b64 = base64.b64encode(png).decode("ascii")
    return f'<img id="img-{_e(name)}" alt="{_e(name)}" src="data:image/png;base64,{b64}">'


def _na(text: str) -> str:
    return f'<p class="na">{_e(text)}</p>'


# ---------------------------------------------------------------------------------- sections
def _verdict(run: RunData, pngs: dict[str, bytes]) -> str:
    r = run.result
    if r is None:
        return _na("no result.json: the run did not finish (see the missing files below).")
    v = str(r.get("validity", "UNKNOWN"))
    out = [f'<p><span id="validity" data-value="{_e(json.dumps(v))}" class="badge {_e(v)}">{_e(v)}</span></p>']
    reasons = r.get("invalid_reasons") or []
    if reasons:
        out.append('<ul id="invalid-reasons">' + "".join(f"<li>{_e(x)}</li>" for x in reasons) + "</ul>")
    else:
        out.append('<ul id="invalid-reasons"></ul><p>Every constraint holds.</p>')
    cons = r.get("constraints") or {}
    if cons:
        out.append("<table><tr><th>constraint</th><th>met</th></tr>"
                   + "".join(f"<tr><td>{_e(k)}</td>{_cell('c-' + k, val)}</tr>" for k, val in cons.items()) + "</table>")
    es = r.get("early_stopping") or {}
    lines = [ln for blk in es.values() if isinstance(blk, dict) for ln in blk.get("lines", [])]
    if lines:
        out.append("<p>Early stopping:</p><pre>" + _e("\n".join(lines)) + "</pre>")
    for w in r.get("warnings") or []:
        out.append(f'<p class="err">warning: {_e(w)}</p>')
    return "".join(out)


def _summary(run: RunData, pngs: dict[str, bytes]) -> str:
    r = run.result
    if r is None:
        return _na("no result.json")
    head = (f"<p>{_e(r.get('workload'))} / {_e(r.get('sut'))} / {_e(r.get('scenario'))} / {_e(r.get('mode'))}"
            f" &middot; started {_e(r.get('started_utc'))} &middot; raybench {_e(r.get('raybench_version'))}</p>")
    rows = "".join(f"<tr><td>{_e(k)}</td>{_cell('m-' + k, r.get(k))}</tr>" for k in SUMMARY_KEYS if k in r)
    dist = []
    for key in _DIST_KEYS:
        block = r.get(key) or {}
        if not block:
            continue
        cells = "".join(_cell(f"m-{key}.{p}", block.get(p), fmt_ms(block.get(p))) for p in ("mean", "min", "p50", "p90", "p95", "p97", "p99", "p99.9", "max"))
        dist.append(f"<tr><td>{_e(key[:-3])} (ms)</td>{cells}</tr>")
    dist_t = ""
    if dist:
        dist_t = ("<table id='distributions'><tr><th>metric</th>" + "".join(f"<th>{p}</th>" for p in ("mean", "min", "p50", "p90", "p95", "p97", "p99", "p99.9", "max"))
                  + "</tr>" + "".join(dist) + "</table>")
    return head + f"<div class='cols'><table id='metrics'><tr><th>metric</th><th>value</th></tr>{rows}</table>{dist_t}</div>"


def _headline(r: dict[str, Any]) -> tuple[str, Any]:
    """The scenario's performance metric (what MLPerf reports for it)."""
    sc = r.get("scenario")
    lat = r.get("latency_ns") or {}
    if sc == "SingleStream":
        return "90th percentile latency (ms)", fmt_ms(lat.get("p90"))
    if sc == "MultiStream":
        return "99th percentile query latency (ms)", fmt_ms((r.get("query_latency_ns") or lat).get("p99"))
    if r.get("tokens_per_second"):
        return "tokens per second", f"{r['tokens_per_second']:.6g}"
    sps = r.get("samples_per_second")
    return "samples per second", "-" if sps is None else f"{sps:.6g}"


def _accuracy(run: RunData, pngs: dict[str, bytes]) -> str:
    r = run.result or {}
    acc = r.get("accuracy")
    left = []
    if isinstance(acc, dict) and "metrics" in acc:
        targets = acc.get("targets") or {}
        rows = "".join(f"<tr><td>{_e(k)}</td>{_cell('acc-' + k, v)}<td>{_e(targets.get(k, '-'))}</td></tr>" for k, v in acc["metrics"].items())
        passed = acc.get("passed")
        left.append(f"<table id='accuracy-table'><tr><th>accuracy metric</th><th>value</th><th>target</th></tr>{rows}</table>"
                    f'<p>accuracy: <b id="accuracy-passed" data-value="{_e(json.dumps(passed))}">'
                    f"{'PASS' if passed else ('FAIL' if passed is False else 'no target')}</b></p>")
    elif isinstance(acc, dict) and acc.get("error"):
        left.append(f"<p class='err'>accuracy scoring failed: {_e(acc['error'])}</p>")
    if run.accuracy_txt:
        left.append(f"<pre id='accuracy-txt'>{_e(run.accuracy_txt.strip())}</pre>")
    if not left:
        left.append(_na("no accuracy result in this run (run with --mode AccuracyOnly, or `raybench accuracy`)."))
    name, value = _headline(r) if r else ("performance", "-")
    right = (f"<table id='performance-table'><tr><th>performance</th><th>value</th></tr>"
             f"<tr><td>{_e(name)}</td><td id='headline'>{_e(value)}</td></tr>"
             f"<tr><td>validity</td><td>{_e(r.get('validity', '-'))}</td></tr></table>")
    return f"<div class='cols'><div>{''.join(left)}</div><div>{right}</div></div>"


def _latency(run: RunData, pngs: dict[str, bytes]) -> str:
    from raybench.report.plots import distribution_png

    out = []
    for name, key, title in (("latency", "latency_ns", "sample latency"), ("query_latency", "query_latency_ns", "query latency")):
        h = run.hist(name)
        if h is not None:
            out.append(_img(name, distribution_png(h, title, run.metric(key) or None), pngs))
    return "".join(out) or _na("no latency histogram (histograms.json missing or empty)")


def _timeline(run: RunData, pngs: dict[str, bytes]) -> str:
    from raybench.report.plots import timeline_png

    if not run.timeline:
        return _na("no per-second snapshots (timeline.json missing or empty; runs shorter than a second have none)")
    return _img("timeline", timeline_png(run.timeline), pngs)


def _telemetry(run: RunData, pngs: dict[str, bytes]) -> str:
    from raybench.report.plots import telemetry_png

    summ = run.metric("telemetry") or {}
    if not run.telemetry and not summ:
        return _na("no server telemetry (telemetry.jsonl missing: not an HTTP endpoint SUT, or telemetry_interval_s: 0)")
    rows = "".join(f"<tr><td>{_e(k)}</td>{_cell('tel-' + k, summ.get(k))}</tr>"
                   for k in ("scrapes", "failures", "interval_s", "aligned") if k in summ)
    reasons = summ.get("failure_reasons") or {}
    fails = ("<table id='telemetry-failures'><tr><th>failed scrape</th><th>count</th></tr>"
             + "".join(f"<tr><td>{_e(k)}</td><td>{_e(v)}</td></tr>" for k, v in reasons.items()) + "</table>") if reasons else ""
    targets = "".join(f"<li><code>{_e(u)}</code></li>" for u in summ.get("targets") or [])
    head = (f"<table id='telemetry-table'><tr><th>telemetry</th><th>value</th></tr>{rows}</table>{fails}"
            + (f"<ul id='telemetry-targets'>{targets}</ul>" if targets else ""))
    if not any("values" in r for r in run.telemetry):
        return head + _na("no successful scrape: nothing to plot")
    return head + _img("telemetry", telemetry_png(run.telemetry, run.timeline), pngs)


def _shards(run: RunData, pngs: dict[str, bytes]) -> str:
    from raybench.report.plots import shards_png

    per = run.metric("per_shard") or []
    if not per:
        return _na("no per-shard data")
    cols = ("node", "status", "end_reason", "queries_issued", "samples_completed", "errors", "lateness_p99_ns", "latency_p99_ns", "failure")
    rows = []
    for s in per:
        k = s.get("shard")
        rows.append(f"<tr>{_cell(f'shard-{k}-shard', k)}" + "".join(_cell(f"shard-{k}-{c}", s.get(c)) for c in cols) + "</tr>")
    table = "<table id='shards-table'><tr><th>shard</th>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>" + "".join(rows) + "</table>"
    return table + _img("shards", shards_png(per, run.hist("lateness")), pngs)


def _tokens(run: RunData, pngs: dict[str, bytes]) -> str:
    from raybench.report.plots import distribution_png

    out = []
    for name, title in (("ttft", "TTFT"), ("tpot", "TPOT")):
        h = run.hist(name)
        if h is not None:
            out.append(_img(name, distribution_png(h, title, run.metric(f"{name}_ns") or None), pngs))
    if not out:
        return _na("not a token workload (no TTFT/TPOT recorded)")
    tps = run.metric("tokens_per_second")
    return (f"<p>tokens/s: {_e('-' if tps is None else f'{tps:.6g}')}, total tokens: {_e(run.metric('total_tokens', '-'))}</p>"
            + _token_table(run) + "".join(out))


def _token_table(run: RunData) -> str:
    """Sequence lengths, finish reasons, interactivity, goodput and conversations (when measured)."""
    rows = []
    for key, label in (("input_tokens", "input tokens"), ("output_tokens", "output tokens")):
        d = run.metric(key) or {}
        if d:
            rows.append((f"tok-{key}-mean", f"{label} mean (min / max)", d["mean"], f"{d['mean']:.6g} ({d['min']} / {d['max']})"))
    for reason, n in (run.metric("finish_reasons") or {}).items():
        rows.append((f"tok-finish-{reason}", f"finish reason {reason}", n, None))
    for key, label in (("interactivity_tps_per_user", "interactivity (tokens/s per user)"),
                       ("e2e_interactivity", "end-to-end interactivity (tokens/s)")):
        if run.metric(key) is not None:
            rows.append((f"tok-{key}", label, run.metric(key), None))
    g = run.metric("goodput") or {}
    if g:
        slo = ", ".join(f"{k} <= {v:g} ms" for k, v in g["slo_ms"].items())
        rows += [("tok-goodput-met", f"requests meeting every SLO ({slo})", g["requests_met"],
                  f"{g['requests_met']} of {g['requests_completed']}"),
                 ("tok-goodput-rps", "goodput (requests/s)", g["requests_per_second"], None),
                 ("tok-goodput-tps", "goodput (output tokens/s)", g["output_tokens_per_second"], None)]
    c = run.metric("conversations") or {}
    if c:
        rows += [("tok-conversations-completed", "conversations completed", c["completed"], None),
                 ("tok-conversations-failed", "conversations failed", c["failed"], None)]
    if not rows:
        return ""
    body = "".join(f"<tr><th>{_e(label)}</th>{_cell(cid, v, text)}</tr>" for cid, label, v, text in rows)
    return f"<table id='token-metrics'>{body}</table>"


def _pareto(run: RunData, pngs: dict[str, bytes]) -> str:
    from raybench.core.endpoints import pareto_frontier
    from raybench.report.plots import pareto_png, pareto_points

    if not run.sweep:
        return _na("not a sweep (no sweep_summary.json)")
    front = {(p.system_tps, p.tps_per_user) for p in pareto_frontier(pareto_points(run.sweep))}
    rows = "".join(
        f"<tr>{_cell(f'sweep-{i}-concurrency', p.get('concurrency'))}{_cell(f'sweep-{i}-qps', p.get('qps'))}"
        f"{_cell(f'sweep-{i}-system_tps', p.get('system_tps'))}{_cell(f'sweep-{i}-tps_per_user', p.get('tps_per_user'))}"
        f"{_cell(f'sweep-{i}-ttft_p90_ms', p.get('ttft_p90_ms'))}<td>{_e(p.get('validity', '-'))}</td>"
        f"<td>{'yes' if (p.get('system_tps'), p.get('tps_per_user')) in front else ''}</td></tr>"
        for i, p in enumerate(run.sweep)
    )
    table = ("<table id='sweep-table'><tr><th>concurrency</th><th>QPS</th><th>system tokens/s</th><th>tokens/s per user</th>"
             f"<th>TTFT p90 (ms)</th><th>validity</th><th>on frontier</th></tr>{rows}</table>")
    return _img("pareto", pareto_png(run.sweep), pngs) + table


def _system(run: RunData, pngs: dict[str, bytes]) -> str:
    s = run.system
    if not s:
        return _na("no system.json")
    keys = [k for k, v in s.items() if not isinstance(v, (dict, list))]
    rows = "".join(f"<tr><td>{_e(k)}</td>{_cell('sys-' + k, s[k])}</tr>" for k in keys)
    nodes = s.get("nodes") or []
    nt = ""
    if nodes:
        cols = ("hostname", "address", "cpus", "gpus", "accelerator_type", "memory_gb", "labels")
        nt = ("<table id='nodes-table'><tr>" + "".join(f"<th>{c}</th>" for c in cols) + "</tr>"
              + "".join("<tr>" + "".join(f"<td>{_e(n.get(c, '-'))}</td>" for c in cols) + "</tr>" for n in nodes) + "</table>")
    sut = s.get("sut") or {}
    return (f"<table id='system-table'>{rows}</table>{nt}<p>SUT <b>{_e(sut.get('name', '-'))}</b> parameters (secrets masked):</p>"
            f"<pre>{_e(json.dumps(sut.get('params', {}), indent=1))}</pre>")


def _config(run: RunData, pngs: dict[str, bytes]) -> str:
    if run.config is None:
        return _na("no config.yaml")
    import yaml

    return f"<pre id='config-yaml'>{_e(yaml.safe_dump(run.config, sort_keys=False))}</pre>"


_BUILDERS: dict[str, tuple[str, Callable[[RunData, dict[str, bytes]], str]]] = {
    "verdict": ("Verdict", _verdict),
    "summary": ("Summary", _summary),
    "accuracy": ("Accuracy and performance", _accuracy),
    "latency": ("Latency distribution", _latency),
    "timeline": ("Throughput and latency over time", _timeline),
    "telemetry": ("Server telemetry (Prometheus /metrics) beside the client", _telemetry),
    "shards": ("Load-generator shards and lateness", _shards),
    "tokens": ("Token latencies (TTFT, TPOT)", _tokens),
    "pareto": ("Concurrency sweep: Pareto step function", _pareto),
    "system": ("System", _system),
    "config": ("Configuration", _config),
}


def render_html(run: RunData, pngs: dict[str, bytes] | None = None) -> str:
    """The page for ``run``; plots are added to ``pngs`` (name -> PNG bytes) as they are drawn."""
    pngs = {} if pngs is None else pngs
    r = run.result or {}
    title = " / ".join(str(r[k]) for k in ("workload", "scenario") if r.get(k)) or run.label
    body = [f"<h1>raybench report: {_e(title)}</h1><p><code>{_e(run.run_dir)}</code></p>"]
    if run.problems:
        body.append("<ul id='problems'>" + "".join(f"<li class='err'>{_e(p)}</li>" for p in run.problems) + "</ul>")
    for sid in SECTIONS:
        name, fn = _BUILDERS[sid]
        try:
            content = fn(run, pngs)
        except Exception as exc:  # one broken input must not cost the rest of the page
            content = f"<p class='err'>section failed: {_e(type(exc).__name__)}: {_e(exc)}</p>"
        body.append(f"<section id='{sid}'><h2>{_e(name)}</h2>{content}</section>")
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>raybench: {_e(title)}</title>"
            f"<style>{_CSS}</style></head><body>{''.join(body)}</body></html>\n")


def write_report(run_dir: Path, plots_dir: str | None = "plots") -> Path:
    """Write ``run_dir/report.html`` (self-contained) and the PNGs into ``run_dir/plots``.

    Never raises for a partial run directory; raises ``FileNotFoundError`` only when
    ``run_dir`` is not a directory.

    Returns:
        The path of ``report.html``.
    """
    run = load_run(run_dir)
    pngs: dict[str, bytes] = {}
    page = render_html(run, pngs)
    out = Path(run_dir) / "report.html"
    atomic_write_text(out, page)
    if plots_dir:
        d = Path(run_dir) / plots_dir
        d.mkdir(exist_ok=True)
        for name, png in pngs.items():
            atomic_write_bytes(d / f"{name}.png", png)
    return out


def iter_cells(page: str) -> Iterable[tuple[str, Any]]:
    """``(id, value)`` of every data cell of a rendered page (for tests and scripts)."""
    import re

    for m in re.finditer(r'id="([^"]+)" data-value="([^"]*)"', page):
        yield m.group(1), json.loads(html.unescape(m.group(2)))
