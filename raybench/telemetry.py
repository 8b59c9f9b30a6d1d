"""Server telemetry: the endpoint's Prometheus ``/metrics``, scraped during a run on the driver.

A :class:`Scraper` runs in its own daemon thread in the driver (never in a load-generator shard,
so it cannot delay a send). Every ``interval_s`` it fetches each metrics URL (bounded by a
timeout that never exceeds the interval), parses the text exposition with
``prometheus_client``'s parser and keeps the handful of serving metrics a report needs, under
server-neutral names (:data:`METRICS`). A failed scrape is counted by reason and the run goes
on. The thread stops when the run ends, and at the latest at the run's deadline.

At the end :func:`write_telemetry` puts the series in ``telemetry.jsonl`` (one JSON object per
scrape and URL, ``t_s`` = seconds since the run's T0, so it lines up with ``timeline.json``) and
returns the summary that goes into ``result.json`` under ``telemetry``.

Which SUTs are scraped: those whose parameters carry ``telemetry_interval_s`` > 0 and either
``telemetry_urls`` or ``urls`` (``<url>/metrics`` each), i.e. ``openai_endpoint`` and ``vllm``
(``mode: server`` with explicit ``telemetry_urls``). See :func:`targets`.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = ["METRICS", "Scraper", "extract", "rates", "targets", "write_telemetry"]

METRICS: dict[str, tuple[tuple[str, ...], str]] = {
    # canonical name: (Prometheus sample names, first present wins; how label sets combine)
    "kv_cache_usage": (("vllm:kv_cache_usage_perc", "vllm:gpu_cache_usage_perc", "sglang:token_usage"), "mean"),
    "requests_running": (("vllm:num_requests_running", "sglang:num_running_reqs", "tgi_batch_current_size"), "sum"),
    "requests_waiting": (("vllm:num_requests_waiting", "sglang:num_queue_reqs", "tgi_queue_size"), "sum"),
    "prefix_cache_queries": (("vllm:prefix_cache_queries_total", "vllm:gpu_prefix_cache_queries_total"), "sum"),
    "prefix_cache_hits": (("vllm:prefix_cache_hits_total", "vllm:gpu_prefix_cache_hits_total"), "sum"),
    "prefix_cache_hit_rate": (("vllm:gpu_prefix_cache_hit_rate", "sglang:cache_hit_rate"), "mean"),
    "generation_tokens": (("vllm:generation_tokens_total", "sglang:generation_tokens_total",
                           "tgi_request_generated_tokens_sum"), "sum"),
}
"""What is kept of a scrape. ``kv_cache_usage`` is a fraction (0-1); ``prefix_cache_*`` and
``generation_tokens`` are counters (tokens), turned into per-interval rates by :func:`rates`;
``prefix_cache_hit_rate`` is the server's own gauge where it has no counters (SGLang, vLLM V0).
TGI exposes no KV-cache gauge; its generated tokens are the sum of its per-request histogram."""

_PREFIXES = tuple(sorted({n.removesuffix("_total").removesuffix("_sum") for names, _ in METRICS.values()
                          for n in names}))
_MAX_ROWS = 2_000_000  # ~ 23 days of one URL at 1/s; past it scrapes are counted but not kept


def targets(sut_params: Mapping[str, Any]) -> tuple[list[str], float]:
    """The metrics URLs a SUT's parameters ask for, and the interval (``([], 0)``: no telemetry)."""
    interval = float(sut_params.get("telemetry_interval_s") or 0)
    if interval <= 0:
        return [], 0.0
    urls = sut_params.get("telemetry_urls")
    if not urls:
        base = sut_params.get("urls") or []
        urls = [_base(u) + "/metrics" for u in ([base] if isinstance(base, str) else base)]
    return [str(u) for u in urls], interval


def _base(url: str) -> str:
    u = url.strip().rstrip("/")
    return u[:-3] if u.endswith("/v1") else u


def extract(text: str) -> dict[str, float]:
    """The :data:`METRICS` present in one Prometheus text exposition (absent ones are left out).

    Only the lines of the wanted metrics are parsed: a vLLM ``/metrics`` is mostly histogram
    buckets (thousands of lines), and skipping them keeps a scrape's CPU (and its hold on the
    GIL, shared with in-process shards) near a millisecond.

    Raises:
        ValueError: a wanted line is not Prometheus exposition format.
    """
    from prometheus_client.parser import text_string_to_metric_families

    wanted = "\n".join(_wanted_lines(text))
    seen: dict[str, list[float]] = {}
    for fam in text_string_to_metric_families(wanted + "\n" if wanted else ""):
        for s in fam.samples:
            seen.setdefault(s.name, []).append(float(s.value))
    out: dict[str, float] = {}
    for key, (names, how) in METRICS.items():
        for name in names:
            vals = seen.get(name)
            if vals is None and name.endswith("_total"):
                vals = seen.get(name[:-6])
            if vals:
                out[key] = sum(vals) / len(vals) if how == "mean" else sum(vals)
                break
    return out


def _wanted_lines(text: str) -> list[str]:
    """The lines starting with one of :data:`_PREFIXES` (``str.find`` scans; Python touches only hits)."""
    out = []
    n = len(text)
    for p in _PREFIXES:
        i = text.find(p)
        while i >= 0:
            j = text.find("\n", i)
            j = n if j < 0 else j
            if i == 0 or text[i - 1] == "\n":
                out.append(text[i:j].rstrip("\r"))
            i = text.find(p, j)
    return out


def _opener(proxy: str | None, ca_bundle: str | None, verify_tls: bool) -> urllib.request.OpenerDirector:
    if proxy in (None, "none"):
        ph = urllib.request.ProxyHandler({})
    elif proxy == "env":
        ph = urllib.request.ProxyHandler()  # HTTP(S)_PROXY / NO_PROXY
    else:
        ph = urllib.request.ProxyHandler({"http": proxy, "https": proxy})
    if not verify_tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    else:
        ctx = ssl.create_default_context(cafile=ca_bundle) if ca_bundle else ssl.create_default_context()
    return urllib.request.build_opener(ph, urllib.request.HTTPSHandler(context=ctx))


class Scraper:
    """Scrapes metrics URLs every ``interval_s`` in a daemon thread until stopped or the deadline.

    Args:
        urls: Prometheus endpoints (``http(s)://host:port/metrics``).
        interval_s: time between scrape rounds (a late round is skipped, not bunched up).
        proxy / ca_bundle / verify_tls: as the SUT's HTTP parameters.
        fetch: ``fetch(url, timeout_s) -> str``, replacing the HTTP GET (tests).

    Attributes:
        rows: one dict per scrape and URL: ``mono_ns``, ``wall_ns`` (mid-scrape), ``url`` and
            ``values`` (see :func:`extract`) or ``error``.
        failures: failed scrapes by reason.

    Example:
        >>> s = Scraper(["http://127.0.0.1:8000/metrics"], 1.0); s.start()  # doctest: +SKIP
        >>> ...; s.stop(); s.summary()["scrapes"]
    """

    def __init__(self, urls: Sequence[str], interval_s: float = 1.0, *, proxy: str | None = "env",
                 ca_bundle: str | None = None, verify_tls: bool = True,
                 fetch: Callable[[str, float], str] | None = None) -> None:
        if interval_s <= 0:
            raise ValueError(f"telemetry_interval_s: must be > 0, got {interval_s}")
        self.urls = list(urls)
        self.interval_s = float(interval_s)
        self.timeout_s = min(self.interval_s, 5.0)
        self.rows: list[dict[str, Any]] = []
        self.failures: dict[str, int] = {}
        self.scrapes = 0
        self._fetch = fetch or self._http_get
        self._opener: urllib.request.OpenerDirector | None = None
        self._setup_error: str | None = None  # a bad ca_bundle: every scrape fails with it, the run goes on
        if fetch is None:
            try:
                self._opener = _opener(proxy, ca_bundle, verify_tls)
            except (OSError, ssl.SSLError) as exc:
                why = getattr(exc, "strerror", None) or str(exc)
                self._setup_error = f"ca_bundle: {ca_bundle}: {' '.join(str(why).split())[:120]}"
        self._stop = threading.Event()
        self._deadline_mono_ns: int | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _http_get(self, url: str, timeout_s: float) -> str:
        if self._opener is None:
            raise _SetupError(self._setup_error or "no HTTP opener")
        with self._opener.open(url, timeout=timeout_s) as resp:
            return resp.read(64 << 20).decode("utf-8", "replace")

    def set_deadline(self, mono_ns: int) -> None:
        """Stop scraping at ``mono_ns`` (``time.monotonic_ns``) at the latest."""
        self._deadline_mono_ns = mono_ns

    def start(self) -> None:
        """Start the thread (the first round is immediate)."""
        self._thread = threading.Thread(target=self._loop, name="raybench-telemetry", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop and wait for the thread (at most one scrape timeout per URL)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout_s * max(1, len(self.urls)) + 1.0)

    def _loop(self) -> None:
        nxt = time.monotonic()
        while not self._stop.is_set():
            for url in self.urls:
                left = self._left_s()
                if left is not None and left <= 0 or self._stop.is_set():
                    return
                self.scrape_once(url, self.timeout_s if left is None else min(self.timeout_s, left))
            nxt += self.interval_s
            now = time.monotonic()
            if nxt < now:  # a slow round: skip the missed ticks instead of scraping back to back
                nxt = now + self.interval_s - (now - nxt) % self.interval_s
            left = self._left_s()
            wait = nxt - now if left is None else min(nxt - now, left)
            if self._stop.wait(max(0.0, wait)):
                return

    def _left_s(self) -> float | None:
        d = self._deadline_mono_ns
        return None if d is None else (d - time.monotonic_ns()) / 1e9

    def scrape_once(self, url: str, timeout_s: float | None = None) -> dict[str, Any]:
        """Fetch and parse ``url`` once; the row is kept and returned (never raises)."""
        t = self.timeout_s if timeout_s is None else timeout_s
        m0, w0 = time.monotonic_ns(), time.time_ns()
        row: dict[str, Any] = {"url": url}
        try:
            row["values"] = extract(self._fetch(url, t))
            if not row["values"]:
                del row["values"]
                row["error"] = "no vLLM, SGLang or TGI serving metrics in the answer"
        except _SetupError as exc:
            row["error"] = str(exc)
        except urllib.error.HTTPError as exc:
            row["error"] = f"http {exc.code}"
        except urllib.error.URLError as exc:
            row["error"] = _reason(exc.reason, t)
        except (TimeoutError, OSError) as exc:
            row["error"] = _reason(exc, t)
        except ValueError as exc:
            row["error"] = f"malformed metrics: {' '.join(str(exc).split())[:120]}"
        except Exception as exc:  # noqa: BLE001 - a scrape failure is data, never fatal
            row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())[:120]}"
        m1, w1 = time.monotonic_ns(), time.time_ns()
        row["mono_ns"], row["wall_ns"] = (m0 + m1) // 2, (w0 + w1) // 2
        with self._lock:
            self.scrapes += 1
            if "error" in row:
                self.failures[row["error"]] = self.failures.get(row["error"], 0) + 1
            if len(self.rows) < _MAX_ROWS:
                self.rows.append(row)
        return row

    def summary(self) -> dict[str, Any]:
        """Counts for ``result.json``: targets, interval, scrapes, failures (total and by reason)."""
        with self._lock:
            return {"targets": list(self.urls), "interval_s": self.interval_s, "scrapes": self.scrapes,
                    "failures": sum(self.failures.values()), "failure_reasons": dict(self.failures)}


class _SetupError(Exception):
    """The scraper could not be set up (its message is the failure reason)."""


def _reason(exc: BaseException | str, timeout_s: float) -> str:
    if isinstance(exc, TimeoutError) or "timed out" in str(exc):
        return f"timeout after {timeout_s:.1f}s"
    if isinstance(exc, OSError) and exc.strerror:
        return f"connect failed: {exc.strerror}"
    return " ".join(str(exc).split())[:120] or type(exc).__name__


def write_telemetry(run_dir: Path, scraper: Scraper, *, t0_wall_ns: int | None = None,
                    t0_mono_ns: int | None = None) -> dict[str, Any]:
    """Write ``telemetry.jsonl`` (``t_s`` since T0) and return the ``result.json`` summary.

    T0 is taken from ``t0_wall_ns`` (wall clock, a Ray run) or ``t0_mono_ns`` (this process's
    monotonic clock, an in-process run); with neither, ``t_s`` counts from the first scrape and
    the summary says ``"aligned": false``.
    """
    from raybench.core.logs.atomic import atomic_write_text

    rows = list(scraper.rows)
    if t0_mono_ns:
        key, t0, aligned = "mono_ns", t0_mono_ns, True
    elif t0_wall_ns:
        key, t0, aligned = "wall_ns", t0_wall_ns, True
    else:
        key, t0, aligned = "mono_ns", rows[0]["mono_ns"] if rows else 0, False
    lines = []
    for r in rows:
        out: dict[str, Any] = {"t_s": round((r[key] - t0) / 1e9, 6), "url": r["url"]}
        if "error" in r:
            out["error"] = r["error"]
        else:
            out["values"] = r["values"]
        lines.append(json.dumps(out, separators=(",", ":")))
    atomic_write_text(Path(run_dir) / "telemetry.jsonl", "".join(line + "\n" for line in lines))
    return {**scraper.summary(), "file": "telemetry.jsonl", "aligned": aligned}


def rates(rows: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, list[float]]]:
    """Per URL, the series a report plots, from ``telemetry.jsonl`` rows (failed scrapes skipped).

    Returns ``{url: {"t_s", "kv_cache_usage", "requests_running", "requests_waiting",
    "prefix_hit_rate", "generation_tps"}}``. Gauges are the scraped values (NaN where absent).
    ``generation_tps`` at a scrape = Δ generation_tokens / Δ t since the previous successful
    scrape of that URL; ``prefix_hit_rate`` = Δ hits / Δ queries over the same interval (the
    server's own hit-rate gauge when it has no counters; NaN when Δ queries is 0). The first
    scrape of a URL has no interval: its rates are NaN.
    """
    nan = float("nan")
    out: dict[str, dict[str, list[float]]] = {}
    prev: dict[str, tuple[float, Mapping[str, Any]]] = {}
    for r in rows:
        if "values" not in r:
            continue
        url, t, v = str(r["url"]), float(r["t_s"]), r["values"]
        s = out.setdefault(url, {k: [] for k in ("t_s", "kv_cache_usage", "requests_running", "requests_waiting",
                                                 "prefix_hit_rate", "generation_tps")})
        s["t_s"].append(t)
        for k in ("kv_cache_usage", "requests_running", "requests_waiting"):
            s[k].append(float(v.get(k, nan)))
        tps = hit = nan
        if url in prev:
            pt, pv = prev[url]
            dt = t - pt
            if dt > 0 and "generation_tokens" in v and "generation_tokens" in pv:
                tps = (float(v["generation_tokens"]) - float(pv["generation_tokens"])) / dt
            if "prefix_cache_queries" in v and "prefix_cache_queries" in pv and "prefix_cache_hits" in v \
                    and "prefix_cache_hits" in pv:
                dq = float(v["prefix_cache_queries"]) - float(pv["prefix_cache_queries"])
                if dq > 0:
                    hit = (float(v["prefix_cache_hits"]) - float(pv["prefix_cache_hits"])) / dq
        if hit != hit and "prefix_cache_hit_rate" in v and "prefix_cache_queries" not in v:
            hit = float(v["prefix_cache_hit_rate"])
        s["generation_tps"].append(tps)
        s["prefix_hit_rate"].append(hit)
        prev[url] = (t, v)
    return out
