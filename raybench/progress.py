"""Live progress while a run is going, and the summary table at the end (rich)."""

from __future__ import annotations

import threading
import time
from typing import Any

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

__all__ = ["LiveProgress", "print_summary"]


def _ms(ns: float | int | None) -> str:
    if ns is None:
        return "-"
    return f"{ns / 1e6:.3f}"


class LiveProgress:
    """Per-shard counters refreshed from the shards' one-second snapshots."""

    def __init__(self, console: Console, cfg: Any) -> None:
        self.console = console
        self.cfg = cfg
        self._rows: dict[int, dict[str, Any]] = {}
        self._prev: dict[int, tuple[float, int]] = {}
        self._lock = threading.Lock()
        self._live: Live | None = None
        self._t0 = time.monotonic()
        self._status = ""

    def start(self) -> None:
        self._live = Live(self._render(), console=self.console, refresh_per_second=2, transient=True)
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def status(self, msg: str) -> None:
        """The latest start-up news (what waits for which resources), shown until the run starts."""
        with self._lock:
            self._status = msg
        if self._live is not None:
            self._live.update(self._render())

    def update(self, shard: int, snap: dict[str, Any]) -> None:
        with self._lock:
            t = snap.get("t_ns", 0) / 1e9
            prev_t, prev_c = self._prev.get(shard, (0.0, 0))
            qps = (snap.get("completed", 0) - prev_c) / (t - prev_t) if t > prev_t else 0.0
            self._prev[shard] = (t, snap.get("completed", 0))
            row = dict(snap)
            row["qps"] = qps
            self._rows[shard] = row
        if self._live is not None:
            self._live.update(self._render())

    def _render(self) -> Group:
        t = Table(title=f"raybench {self.cfg.workload.name} / {self.cfg.scenario.name}", expand=False)
        for col in ("shard", "t (s)", "issued", "completed", "errors", "in flight", "QPS", "p50 ms", "p99 ms", "late p99 ms"):
            t.add_column(col, justify="right")
        with self._lock:
            rows = sorted(self._rows.items())
        tot = {"issued": 0, "completed": 0, "errors": 0, "in_flight": 0, "qps": 0.0}
        for shard, r in rows:
            t.add_row(
                str(shard),
                f"{r.get('t_ns', 0) / 1e9:.0f}",
                str(r.get("issued", 0)),
                str(r.get("completed", 0)),
                str(r.get("errors", 0)),
                str(r.get("in_flight", 0)),
                f"{r['qps']:.1f}",
                _ms(r.get("p50_ns")),
                _ms(r.get("p99_ns")),
                _ms(r.get("lateness_p99_ns")),
            )
            for k in tot:
                tot[k] += r.get(k, 0)
        if len(rows) > 1:
            t.add_row("all", "", str(tot["issued"]), str(tot["completed"]), str(tot["errors"]), str(tot["in_flight"]), f"{tot['qps']:.1f}", "", "", "")
        if not rows:
            starting = Text(f"starting ({time.monotonic() - self._t0:.0f}s)...")
            return Group(starting, Text(self._status)) if self._status else Group(starting)
        return Group(t)


def _token_rows(t: Table, m: Any) -> None:
    """Token-workload rows: sequence lengths, finish reasons, interactivity, goodput, conversations."""
    if getattr(m, "input_tokens", None):
        t.add_row("input tokens mean / max", f"{m.input_tokens['mean']:.1f} / {m.input_tokens['max']}")
    if getattr(m, "output_tokens", None):
        t.add_row("output tokens mean / max", f"{m.output_tokens['mean']:.1f} / {m.output_tokens['max']}")
    if getattr(m, "finish_reasons", None):
        t.add_row("finish reasons", ", ".join(f"{k}={v}" for k, v in m.finish_reasons.items()))
    if getattr(m, "interactivity", None):
        t.add_row("interactivity (tokens/s per user)", f"{m.interactivity:.2f}")
    if getattr(m, "e2e_interactivity", None):
        t.add_row("end-to-end interactivity (tokens/s)", f"{m.e2e_interactivity:.2f}")
    g = getattr(m, "goodput", None)
    if g:
        slo = ", ".join(f"{k}<={v:g}ms" for k, v in g["slo_ms"].items())
        t.add_row(f"goodput ({slo})", f"{g['requests_per_second']:.2f} req/s, {g['output_tokens_per_second']:.2f} tok/s "
                  f"({g['requests_met']}/{g['requests_completed']} met)")
    c = getattr(m, "conversations", None)
    if c:
        p99 = c["latency_ns"].get("p99")
        t.add_row("conversations completed / failed", f"{c['completed']} / {c['failed']}"
                  + (f", latency p99 {_ms(p99)} ms" if p99 is not None else ""))


def print_summary(console: Console, outcome: Any) -> None:
    """The end-of-run table: verdict, reasons, throughput, latency grid, files."""
    m = outcome.metrics
    color = "green" if m.validity == "VALID" else "red"
    t = Table(title=f"{outcome.result['workload']} / {outcome.result['sut']} / {m.scenario} / {m.mode}", show_header=False)
    t.add_column("metric")
    t.add_column("value", justify="right")
    t.add_row("result", f"[{color}]{m.validity}[/{color}]")
    t.add_row("queries / samples issued", f"{m.queries_issued} / {m.samples_issued}")
    t.add_row("samples completed / failed", f"{m.samples_completed} / {m.num_errors}")
    t.add_row("samples per second", f"{m.samples_per_second:.2f}")
    if m.tokens_per_second:
        t.add_row("tokens per second", f"{m.tokens_per_second:.2f}")
    for k in ("min", "p50", "p90", "p99", "p99.9", "max"):
        if k in m.latency:
            t.add_row(f"latency {k} (ms)", _ms(m.latency[k]))
    if m.ttft:
        t.add_row("TTFT p99 (ms)", _ms(m.ttft.get("p99")))
    if m.tpot:
        t.add_row("TPOT p99 (ms)", _ms(m.tpot.get("p99")))
    _token_rows(t, m)
    es = m.early_stopping
    if es.get("estimate_ns") is not None:
        t.add_row("early-stopping estimate (ms)", _ms(es["estimate_ns"]))
    t.add_row("send lateness p99 / max (ms)", f"{_ms(m.lateness['p99'])} / {_ms(m.lateness['max'])}")
    t.add_row("shards", str(len(m.shards)))
    if outcome.accuracy is not None:
        acc = outcome.accuracy
        t.add_row("accuracy", ", ".join(f"{k}={v:.4g}" for k, v in acc.metrics.items()) + (
            "" if acc.passed is None else (" [green]PASS[/green]" if acc.passed else " [red]FAIL[/red]")))
    elif outcome.accuracy_error:
        t.add_row("accuracy", f"[red]{outcome.accuracy_error}[/red]")
    console.print(t)
    for r in m.invalid_reasons:
        console.print(f"[red]INVALID:[/red] {r}")
    console.print(f"run directory: {outcome.run_dir}")
