"""Seeded schedules and sample selection (LoadGen's GenerateLoadableSets / GenerateQueries rules)."""

from __future__ import annotations

import numpy as np
import pytest

from raybench.core.conf import load_settings
from raybench.core.plan import build_plan as _build_plan
from raybench.core.plan import loadable_sets, partition, stream_samples
from raybench.core.scenarios import get_scenario
from raybench.core.settings import TestSettings


def build_plan(s: TestSettings, total: int, perf: int):
    return _build_plan(get_scenario(s.scenario), s, total, perf)


def effective_settings(s: TestSettings, perf: int):
    return get_scenario(s.scenario).effective(s, perf, perf)


def settings(scenario: str, **kw) -> TestSettings:
    return load_settings(model=None, scenario=scenario, mlperf_conf="none", overrides=kw)


def test_poisson_interarrivals_pass_ks_against_exponential() -> None:
    scipy_stats = pytest.importorskip("scipy.stats")
    s = settings("Server", server_target_qps=1000.0, min_duration_ms=60_000, schedule_rng_seed=16159082839903944936)
    plan = build_plan(s, 1024, 1024)
    gaps = np.diff(plan.phases[0].intended_ns) / 1e9
    assert gaps.shape[0] > 59_000
    ks = scipy_stats.kstest(gaps, "expon", args=(0, 1 / 1000.0))
    assert ks.pvalue > 0.01
    assert abs(gaps.mean() - 1e-3) < 2e-5  # 60k gaps: standard error of the mean ~4e-6 s


def test_server_generation_stops_at_first_query_past_min_duration() -> None:
    s = settings("Server", server_target_qps=100.0, min_duration_ms=5000, min_query_count=10)
    ph = build_plan(s, 64, 64).phases[0]
    t = ph.intended_ns
    assert t[0] == 0
    assert t[-1] >= 5_000_000_000 > t[-2]
    assert ph.generated_duration_ns > t[-1]
    assert np.all(np.diff(t) >= 0)


def test_server_generation_honours_min_query_count() -> None:
    s = settings("Server", server_target_qps=10.0, min_duration_ms=100, min_query_count=500)
    assert build_plan(s, 64, 64).phases[0].query_count == 500


def test_singlestream_pregenerates_twice_the_duration_at_expected_latency() -> None:
    s = settings("SingleStream", single_stream_expected_latency_ns=1_000_000, min_duration_ms=1000, min_query_count=100)
    ph = build_plan(s, 64, 64).phases[0]
    # queries at 0, 1 ms, ... until the previous timestamp reaches 2 s: 2001 queries.
    assert ph.query_count == 2001
    assert ph.intended_ns[1] == 1_000_000


def test_offline_single_query_is_loaded_set_repeated_1_1x_duration_qps() -> None:
    s = settings("Offline", offline_expected_qps=100.0, min_duration_ms=10_000)
    plan = build_plan(s, 1000, 64)
    eff = plan.effective
    assert eff.samples_per_query == 1100 and eff.min_query_count == 1 and eff.min_sample_count == 1100
    ph = plan.phases[0]
    assert ph.query_count == 1 and ph.samples.shape[0] == 1100
    loaded = ph.loaded_set
    assert loaded.shape[0] == 64
    # LoadGen repeats the loaded set in order, then a remainder.
    assert np.array_equal(ph.samples[:64], loaded) and np.array_equal(ph.samples[1088:], loaded[:12])


def test_offline_min_query_count_is_a_floor_on_samples() -> None:
    s = settings("Offline", offline_expected_qps=1.0, min_duration_ms=1000, min_query_count=24576)
    assert effective_settings(s, 64).samples_per_query == 24576


def test_loaded_set_is_seeded_shuffle_and_multistream_is_padded() -> None:
    sets = loadable_sets(100, 30, 7, padding=0)
    assert [len(x) for x in sets] == [30, 30, 30, 10]
    assert sorted(np.concatenate(sets).tolist()) == list(range(100))
    again = loadable_sets(100, 30, 7, padding=0)
    assert all(np.array_equal(a, b) for a, b in zip(sets, again, strict=True))
    padded = loadable_sets(100, 30, 7, padding=7)
    assert len(padded[0]) == 37 and np.array_equal(padded[0][30:], padded[0][:7])


@pytest.mark.parametrize("scenario", ["Server", "SingleStream", "Offline", "MultiStream"])
def test_accuracy_mode_visits_every_sample(scenario: str) -> None:
    s = settings(scenario, server_target_qps=1000.0, multi_stream_samples_per_query=8)
    s.mode = "AccuracyOnly"
    plan = build_plan(s, 1000, 64)
    assert len(plan.phases) == 16  # ceil(1000 / 64) loadable sets, each loaded in turn
    seen = np.concatenate([p.samples for p in plan.phases])
    counts = np.bincount(seen, minlength=1000)
    assert counts.min() >= 1
    if scenario != "MultiStream":
        assert seen.shape[0] == 1000 and counts.max() == 1


def test_equal_issue_pads_to_whole_dataset_passes() -> None:
    s = settings("Server", server_target_qps=100.0, min_duration_ms=1000, min_query_count=10, sample_concatenate_permutation=True)
    ph = build_plan(s, 40, 40).phases[0]
    n = ph.query_count
    assert n % 40 == 0 and n >= 101
    counts = np.bincount(ph.samples, minlength=40)
    assert counts.min() == counts.max() == n // 40


def test_performance_samples_come_from_loaded_set_only() -> None:
    s = settings("Server", server_target_qps=500.0, min_duration_ms=2000)
    plan = build_plan(s, 1000, 50)
    assert set(plan.phases[0].samples.tolist()) <= set(plan.phases[0].loaded_set.tolist())


@pytest.mark.parametrize("shards", [1, 2, 4])
def test_server_global_sequence_is_shard_count_invariant(shards: int) -> None:
    s = settings("Server", server_target_qps=300.0, min_duration_ms=3000)
    plan = build_plan(s, 256, 256)
    ph = plan.phases[0]
    pairs = []
    for sl in partition(plan, shards):
        part = sl.phases[0]  # a shard receives only its own queries
        assert part.query_count == len(range(sl.shard, ph.query_count, shards))
        pairs += list(zip(part.query_ids.tolist(), part.intended_ns.tolist(), part.samples.tolist(), strict=True))
    pairs.sort()
    ref = build_plan(s, 256, 256).phases[0]
    assert [p[0] for p in pairs] == list(range(ref.query_count))
    assert [p[1] for p in pairs] == ref.intended_ns.tolist()
    assert [p[2] for p in pairs] == ref.samples.tolist()


def test_offline_and_closed_loop_partitions() -> None:
    s = settings("Offline", offline_expected_qps=100.0, min_duration_ms=1000)
    plan = build_plan(s, 64, 64)
    ranges = [(int(sl.phases[0].query_ids[0]), int(sl.phases[0].query_ids[0]) + sl.phases[0].samples.shape[0])
              for sl in partition(plan, 3)]
    assert ranges == [(0, 36), (36, 73), (73, 110)]
    c = settings("Concurrency", target_concurrency=5)
    cplan = build_plan(c, 64, 64)
    streams = [sl.streams.tolist() for sl in partition(cplan, 2)]
    assert streams == [[0, 2, 4], [1, 3]]
    # A stream's samples do not depend on which shard runs it.
    loaded, seed = cplan.phases[0].loaded_set, cplan.settings.sample_index_rng_seed
    assert np.array_equal(stream_samples(loaded, seed, 3, 10), stream_samples(loaded, seed, 3, 12)[:10])


def test_serial_scenarios_refuse_multiple_shards() -> None:
    plan = build_plan(settings("SingleStream"), 64, 64)
    with pytest.raises(ValueError, match="serial by definition"):
        partition(plan, 2)


def _streaming_order(counts: list[int], repeats: int) -> np.ndarray:
    """A fake library's ``issue_order``: timestamp by timestamp, each ``repeats`` times
    (slot j of timestamp t serves ``offset[t] + j % counts[t]``), as DLRMv3's library."""
    offsets = np.concatenate([[0], np.cumsum(counts)])
    return np.concatenate([offsets[t] + np.arange(repeats * c) % c for t, c in enumerate(counts)])


def test_fixed_issue_order_with_repeats_is_issued_cyclically() -> None:
    order = _streaming_order([2, 3], repeats=2)
    assert order.tolist() == [0, 1, 0, 1, 2, 3, 4, 2, 3, 4]
    s = settings("Server", server_target_qps=1000.0, min_duration_ms=100, min_query_count=25)
    plan = _build_plan(get_scenario("Server"), s, 5, 5, issue_order=order)
    ph = plan.phases[0]
    assert ph.query_count >= 25 and plan.meta["issue_order"] == "fixed by the sample library"
    assert ph.samples.tolist() == [int(order[k % 10]) for k in range(ph.sample_count)]
    # Shards keep the global position: query id k carries order[k % 10].
    for sl in partition(plan, 2):
        part = sl.phases[0]
        assert part.samples.tolist() == [int(order[q % 10]) for q in part.query_ids.tolist()]
    o = settings("Offline", offline_expected_qps=100.0, min_duration_ms=1000)
    oph = _build_plan(get_scenario("Offline"), o, 5, 5, issue_order=order).phases[0]
    assert oph.sample_count == 110 and oph.samples.tolist() == [int(order[k % 10]) for k in range(110)]


@pytest.mark.parametrize("scenario", ["Server", "Offline"])
def test_fixed_issue_order_accuracy_mode_issues_each_sample_once_in_first_appearance_order(scenario: str) -> None:
    order = np.array([3, 4, 3, 4, 0, 2, 1, 0, 2, 1])          # 5 samples, repeats, not sorted
    s = settings(scenario, server_target_qps=1000.0)
    s.mode = "AccuracyOnly"
    plan = _build_plan(get_scenario(scenario), s, 5, 5, issue_order=order)
    assert len(plan.phases) == 1
    assert plan.phases[0].samples.tolist() == [3, 4, 0, 2, 1]
    dl = _build_plan(get_scenario(scenario), s, 5, 5, issue_order=_streaming_order([2, 3], 3)).phases[0]
    assert dl.samples.tolist() == [0, 1, 2, 3, 4]                # streaming order, every sample once


def test_fixed_issue_order_must_cover_every_sample() -> None:
    s = settings("Server", server_target_qps=1000.0, min_duration_ms=100)
    for bad, why in (([0, 1, 0, 1, 3], "2 indices missing, 0 out of range"),
                     ([0, 1, 2, 3, 4, 5], "0 indices missing, 1 out of range"), ([], "5 indices missing")):
        with pytest.raises(ValueError, match=r"^sample library: issue_order must cover every index of \[0, 5\) "
                                             r"at least once") as exc:
            _build_plan(get_scenario("Server"), s, 5, 5, issue_order=np.array(bad, dtype=np.int64))
        assert why in str(exc.value) and "\n" not in str(exc.value)
    with pytest.raises(ValueError, match="every sample loaded at once"):
        _build_plan(get_scenario("Server"), s, 5, 4, issue_order=np.arange(5))
