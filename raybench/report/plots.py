"""Report plots (matplotlib, Agg canvas, no pyplot state): each function returns PNG bytes.

Distributions are drawn from the merged HDR histograms of ``histograms.json`` (relative error
<= 0.05 %), so a plot never needs the raw records. Percentile markers come from ``result.json``
(exact LoadGen percentiles over every record), so the numbers printed on a plot are the reported
ones, not re-estimates.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from raybench.core.histogram import Histogram

__all__ = [
    "PERCENTILE_KEYS",
    "cdf_overlay_png",
    "distribution_png",
    "pareto_png",
    "pareto_points",
    "shards_png",
    "telemetry_png",
    "timeline_png",
]

PERCENTILE_KEYS = ("p50", "p90", "p95", "p97", "p99", "p99.9")
"""The percentile grid marked on latency plots (LoadGen's summary grid)."""
_DPI = 80


def _figure(w: float, h: float, ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=_DPI)
    fig.subplots_adjust(left=0.08, right=0.98, bottom=0.15, top=0.9, wspace=0.25)
    FigureCanvasAgg(fig)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI)
    return buf.getvalue()


def hist_ms(h: Histogram) -> tuple[np.ndarray, np.ndarray]:
    """``(values_ms, counts)`` per non-empty bucket, from ``Histogram.cdf_points``.

    Bucket count = ``count * diff(cumulative fraction)``, rounded to integers.
    """
    vals, frac = h.cdf_points()
    counts = np.rint(np.diff(np.concatenate([[0.0], frac])) * h.count)
    return vals.astype(np.float64) / 1e6, counts


def distribution_png(h: Histogram, title: str, percentiles_ns: Mapping[str, Any] | None = None) -> bytes:
    """Histogram (log-spaced bins) and CDF of one metric, with the percentile grid marked.

    Args:
        h: the merged histogram (nanoseconds).
        title: metric name for the titles.
        percentiles_ns: ``{"p50": ns, ...}`` from result.json; each is a dashed line on both panels.
    """
    fig, ax = _figure(10, 3.6, ncols=2)
    vals, counts = hist_ms(h)
    lo, hi = max(float(vals.min()), 1e-6), max(float(vals.max()), 1e-6)
    log = hi / lo > 20
    if hi <= lo * 1.001:  # one value: a narrow window around it instead of a zero-width axis
        lo, hi = lo * 0.98, hi * 1.02
    bins = np.geomspace(lo, hi * 1.0001, 41) if log else np.linspace(lo, hi, 41)
    ax[0][0].hist(vals, bins=bins, weights=counts, color="#4878d0")
    ax[0][0].set(xlabel=f"{title} (ms)", ylabel="count", title=f"{title}: histogram (n={h.count})")
    _, frac = h.cdf_points()
    ax[0][1].step(vals, frac, where="post", color="#4878d0")
    ax[0][1].set(xlabel=f"{title} (ms)", ylabel="fraction <= x", title=f"{title}: CDF", ylim=(0, 1.02))
    if log:
        ax[0][0].set_xscale("log")
        ax[0][1].set_xscale("log")
    for i, (key, v) in enumerate((k, (percentiles_ns or {}).get(k)) for k in PERCENTILE_KEYS):
        if v is None:
            continue
        x = float(v) / 1e6
        color = f"C{i + 1}"
        for a in (ax[0][0], ax[0][1]):
            a.axvline(x, color=color, ls="--", lw=1, label=f"{key} {x:.3g} ms")
    if percentiles_ns:
        ax[0][1].legend(fontsize=7, loc="lower right")
    ax[0][1].grid(alpha=0.3)
    return _png(fig)


def timeline_png(timeline: Sequence[Mapping[str, Any]]) -> bytes:
    """Throughput and latency over time from the per-second snapshots.

    Throughput at second ``t`` is ``window_completed`` (samples completed during that second);
    latency lines are the window's p50/p99 and the harness lateness p99.
    """
    fig, ax = _figure(10, 3.4, ncols=2)
    t = np.array([float(s.get("t_s", i + 1)) for i, s in enumerate(timeline)])
    tput = np.array([float(s.get("window_completed", 0) or 0) for s in timeline])
    errs = np.array([float(s.get("errors", 0) or 0) for s in timeline])
    ax[0][0].plot(t, tput, marker=".", color="#4878d0", label="completed / s")
    if errs.any():
        ax[0][0].plot(t, np.diff(np.concatenate([[0.0], errs])), color="#d65f5f", label="errors / s")
    ax[0][0].set(xlabel="time (s)", ylabel="samples / s", title="throughput over time")
    ax[0][0].legend(fontsize=8)
    for key, label, color in (("p50_ns", "p50", "#4878d0"), ("p99_ns", "p99", "#ee854a"), ("lateness_p99_ns", "lateness p99", "#6acc64")):
        y = np.array([np.nan if s.get(key) is None else float(s[key]) / 1e6 for s in timeline])
        if np.isfinite(y).any():
            ax[0][1].plot(t, y, marker=".", label=label, color=color)
    ax[0][1].set(xlabel="time (s)", ylabel="ms", title="latency over time (per-second window)")
    ax[0][1].legend(fontsize=8)
    for a in (ax[0][0], ax[0][1]):
        a.grid(alpha=0.3)
    return _png(fig)


def telemetry_png(rows: Sequence[Mapping[str, Any]], timeline: Sequence[Mapping[str, Any]]) -> bytes:
    """The server's view beside the client's, on the run's time axis (seconds since T0).

    Panels: KV-cache use (%), running and waiting requests (with the client's requests in
    flight), prefix-cache hit rate (%), and server generation tokens/s (with the client's
    completed samples/s). Series come from :func:`raybench.telemetry.rates`, one line per URL.
    """
    from raybench.telemetry import rates

    series = rates(rows)
    fig, ax = _figure(10, 6.4, ncols=2, nrows=2)
    fig.subplots_adjust(bottom=0.09, top=0.94, hspace=0.45, right=0.93)
    multi = len(series) > 1
    ct = np.array([float(s.get("t_s", i + 1)) for i, s in enumerate(timeline)])
    for i, (url, s) in enumerate(series.items()):
        t = np.array(s["t_s"])
        tag = f" {url.split('//', 1)[-1].split('/', 1)[0]}" if multi else ""
        ax[0][0].plot(t, 100 * np.array(s["kv_cache_usage"]), marker=".", color=f"C{i}", label=f"KV cache{tag}")
        ax[0][1].plot(t, s["requests_running"], marker=".", color=f"C{i}", label=f"running{tag}")
        ax[0][1].plot(t, s["requests_waiting"], marker="x", ls="--", color=f"C{i}", label=f"waiting{tag}")
        ax[1][0].plot(t, 100 * np.array(s["prefix_hit_rate"]), marker=".", color=f"C{i}", label=f"hit rate{tag}")
        ax[1][1].plot(t, s["generation_tps"], marker=".", color=f"C{i}", label=f"server tokens/s{tag}")
    if len(timeline):
        ax[0][1].plot(ct, [float(s.get("in_flight", 0) or 0) for s in timeline], color="black", lw=1.5,
                      alpha=0.6, marker="s", ms=3, label="client in flight")
        tw = ax[1][1].twinx()
        tw.plot(ct, [float(s.get("window_completed", 0) or 0) for s in timeline], color="black", lw=1.5,
                alpha=0.6, marker="s", ms=3, label="client completed/s")
        tw.set_ylabel("client samples / s")
        tw.legend(fontsize=7, loc="lower right")
    ax[0][0].set(ylabel="% of KV cache", title="KV-cache use", ylim=(0, 102))
    ax[0][1].set(ylabel="requests", title="running / waiting requests (server) and in flight (client)")
    ax[1][0].set(ylabel="%", title="prefix-cache hit rate (per interval)", ylim=(-2, 102))
    ax[1][1].set(ylabel="tokens / s", title="generation throughput (server)")
    ts = [t for s in series.values() for t in s["t_s"]] + list(ct)
    for row in ax:
        for a in row:
            if ts:  # one time axis for the four panels (the run's, seconds since T0)
                a.set_xlim(min(ts) - 0.1, max(ts) + 0.1)
            a.set_xlabel("time since T0 (s)")
            a.grid(alpha=0.3)
            if a.get_legend_handles_labels()[0]:
                a.legend(fontsize=7, loc="upper left")
    return _png(fig)


def shards_png(per_shard: Sequence[Mapping[str, Any]], lateness: Histogram | None) -> bytes:
    """Lateness p99 and latency p99 per shard (bars), and the merged lateness CDF."""
    fig, ax = _figure(10, 3.4, ncols=2)
    ks = [int(s.get("shard", i)) for i, s in enumerate(per_shard)]
    x = np.arange(len(ks))
    late = [float(s.get("lateness_p99_ns") or 0) / 1e6 for s in per_shard]
    lat = [float(s.get("latency_p99_ns") or 0) / 1e6 for s in per_shard]
    ax[0][0].bar(x - 0.2, late, 0.4, label="lateness p99", color="#6acc64")
    ax[0][0].bar(x + 0.2, lat, 0.4, label="latency p99", color="#ee854a")
    ax[0][0].set_xticks(x, [str(k) for k in ks])
    ax[0][0].set(xlabel="shard", ylabel="ms", title="per shard")
    ax[0][0].legend(fontsize=8)
    if lateness is not None and lateness.count:
        vals, frac = lateness.cdf_points()
        ax[0][1].step(vals / 1e6, frac, where="post", color="#6acc64")
        ax[0][1].set(ylim=(0, 1.02))
    ax[0][1].set(xlabel="lateness = actual - intended send (ms)", ylabel="fraction <= x", title="lateness CDF (all shards)")
    for a in (ax[0][0], ax[0][1]):
        a.grid(alpha=0.3)
    return _png(fig)


def pareto_points(points: Sequence[Mapping[str, Any]]) -> list[Any]:
    """``ParetoPoint`` objects of the sweep points that have both axes (a point whose TPOT is
    unknown has ``tps_per_user: null`` and is left off the chart); concurrency ``None`` (a QPS
    sweep) becomes 0."""
    from raybench.core.endpoints import ParetoPoint

    out = []
    for p in points:
        if p.get("system_tps") is None or p.get("tps_per_user") is None:
            continue
        ttft = p.get("ttft_p90_ms")
        out.append(ParetoPoint(int(p.get("concurrency") or 0), float(p["system_tps"]), float(p["tps_per_user"]),
                               float(ttft) if ttft is not None else float("nan")))
    return out


def pareto_png(points: Sequence[Mapping[str, Any]]) -> bytes:
    """The Endpoints Pareto chart: measured points and the step function through the frontier.

    Left: system TPS vs TPS/user with ``raybench.core.endpoints.step_function`` (no
    interpolation). Right: TTFT p90 vs concurrency when the points carry it.
    """
    from raybench.core.endpoints import pareto_frontier, step_function

    pts = pareto_points(points)
    fig, ax = _figure(10, 3.8, ncols=2)
    xs, ys = step_function(pts)
    ax[0][0].plot(xs, ys, color="#4878d0", lw=2, label="step function (frontier)")
    ax[0][0].scatter([p.tps_per_user for p in pts], [p.system_tps for p in pts], color="#ee854a", zorder=3, label="measured")
    for p in pareto_frontier(pts):
        ax[0][0].annotate(f"c={p.concurrency}", (p.tps_per_user, p.system_tps), fontsize=7, xytext=(3, 3), textcoords="offset points")
    ax[0][0].set(xlabel="tokens/s per user (1000 / TPOT p90 ms)", ylabel="system tokens/s", title="Pareto step function")
    ax[0][0].legend(fontsize=8)
    with_ttft = sorted((p for p in pts if np.isfinite(p.ttft_p90_ms)), key=lambda p: p.concurrency)
    if with_ttft:
        ax[0][1].plot([p.concurrency for p in with_ttft], [p.ttft_p90_ms for p in with_ttft], marker="o", color="#d65f5f")
        ax[0][1].set_xscale("log", base=2)
    ax[0][1].set(xlabel="concurrency", ylabel="TTFT p90 (ms)", title="TTFT p90 vs concurrency")
    for a in (ax[0][0], ax[0][1]):
        a.grid(alpha=0.3)
    return _png(fig)


def cdf_overlay_png(series: Sequence[tuple[str, Histogram]], title: str) -> bytes:
    """Overlaid CDFs of one metric over several runs (``compare``), log x when the range is wide."""
    fig, ax = _figure(8, 4)
    a = ax[0][0]
    hi_lo = []
    for i, (label, h) in enumerate(series):
        vals, frac = h.cdf_points()
        if vals.size == 0:
            continue
        a.step(vals / 1e6, frac, where="post", label=label, color=f"C{i}")
        hi_lo.append((float(vals.max()), max(float(vals.min()), 1.0)))
    if hi_lo and max(h for h, _ in hi_lo) / min(lo for _, lo in hi_lo) > 20:
        a.set_xscale("log")
    a.set(xlabel=f"{title} (ms)", ylabel="fraction <= x", title=f"{title} CDF", ylim=(0, 1.02))
    a.axhline(0.99, color="grey", ls=":", lw=1)
    a.axhline(0.9, color="grey", ls=":", lw=1)
    a.legend(fontsize=8)
    a.grid(alpha=0.3)
    return _png(fig)
