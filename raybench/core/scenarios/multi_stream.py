"""MultiStream: queries of ``samples_per_query`` samples (8), one at a time.

* Effective: ``target_qps = 1e9 / multi_stream_expected_latency_ns``, percentile
  ``multi_stream_target_latency_percentile``, ``samples_per_query = multi_stream_samples_per_query``,
  ``min_sample_count = min_query_count * samples_per_query``.
* Plan: as SingleStream; each loadable set is padded with its first ``samples_per_query - 1``
  samples so that a query's samples are contiguous in the loaded set.
* Issuing: serial, as SingleStream.
* Query latency = completion of the query's last sample - its scheduled time; percentiles and
  early stopping are over query latencies.
* Throughput: samples/s = ``n / last completion``.
* Min duration: the final query's issue time ``>= min_duration``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar, Literal

from raybench.core.early_stopping import EarlyStoppingResult, latency_early_stopping
from raybench.core.scenarios.base import Effective, Throughput
from raybench.core.scenarios.single_stream import SerialScenario
from raybench.core.settings import TestSettings

if TYPE_CHECKING:
    from raybench.core.aggregate import RunStats
    from raybench.core.plan import Plan

__all__ = ["MultiStream"]


class MultiStream(SerialScenario):
    """MLPerf MultiStream (see the module docstring for every rule)."""

    name: Literal["MultiStream"] = "MultiStream"
    expected_latency_ns: float | None = None
    target_latency_percentile: float | None = None
    samples_per_query: int | None = None

    SETTINGS: ClassVar[dict[str, str]] = {
        "expected_latency_ns": "multi_stream_expected_latency_ns",
        "target_latency_percentile": "multi_stream_target_latency_percentile",
        "samples_per_query": "multi_stream_samples_per_query",
    }
    REQUESTED: ClassVar[tuple[str, ...]] = (
        "multi_stream_expected_latency_ns", "multi_stream_target_latency_percentile", "multi_stream_samples_per_query",
    )

    def _effective_overrides(self, s: TestSettings, base: Effective) -> dict[str, Any]:
        spq = int(s.multi_stream_samples_per_query)
        return {"target_qps": 1e9 / s.multi_stream_expected_latency_ns, "samples_per_query": spq,
                "target_latency_percentile": float(s.multi_stream_target_latency_percentile),
                "min_sample_count": base.min_query_count * spq}

    def padding(self, eff: Effective) -> int:
        return eff.samples_per_query - 1

    def rate_setting(self) -> str:
        return "multi_stream_expected_latency_ns"

    def throughput(self, st: RunStats) -> Throughput:
        return Throughput(samples_per_second=st.latency.count / (st.last_done_ns / 1e9) if st.last_done_ns else 0.0)

    def query_latency_applies(self) -> bool:
        return True

    def early_stopping(self, st: RunStats, plan: Plan) -> list[tuple[str, EarlyStoppingResult]]:
        if not st.samples_issued:
            return []
        return [("latency", latency_early_stopping(st.query_latency, plan.effective.target_latency_percentile))]
