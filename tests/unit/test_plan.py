"""Seeded schedules and sample selection (LoadGen's GenerateLoadableSets / GenerateQueries rules)."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from raybench.core.conf import load_settings
from raybench.core.plan import build_plan as _build_plan
from raybench.core.plan import loadable_sets, partition, rng, stream_samples
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


# ----------------------------------------------------------------------------- streamed plans
# A performance phase holds only its metadata and a recipe; each shard regenerates its own part.

SEED = 16159082839903944936
_ORDER = _streaming_order([3, 5, 2, 4], repeats=3)  # 14 samples, each timestamp 3 times


def _scenario(name: str, arrival: dict | None = None):
    from pydantic import TypeAdapter

    from raybench.core.scenarios import ScenarioConfig

    return TypeAdapter(ScenarioConfig).validate_python({"name": name, **({"arrival": arrival} if arrival else {})})


# (id, scenario, arrival, settings overrides, (total, performance count), library extras)
STREAM_CASES = [
    ("poisson", "Server", None, {}, (256, 200), {}),
    ("constant", "Server", {"kind": "constant"}, {}, (256, 200), {}),
    ("gamma", "Server", {"kind": "gamma", "burstiness": 0.25}, {}, (256, 200), {}),
    ("ramp", "Server", {"kind": "ramp", "start_qps": 0.0, "end_qps": 3000.0}, {}, (256, 200), {}),
    ("ramp-fixed", "Server", {"kind": "ramp", "start_qps": 500.0, "random": False}, {}, (256, 200), {}),
    ("trace", "Server", {"kind": "trace", "speedup": 3.0}, {}, (14, 14), {"trace": True, "order": True}),
    ("equal-issue", "Server", None, {"sample_concatenate_permutation": True}, (256, 50), {}),
    ("issue-same", "Server", None, {"performance_issue_same": True, "performance_issue_same_index": 3}, (256, 200), {}),
    ("issue-unique", "Server", None, {"performance_issue_unique": True}, (256, 200), {}),
    ("test01", "Server", None, {"accuracy_log_probability": 0.1, "accuracy_log_rng_seed": 99}, (256, 200), {}),
    ("issue-order", "Server", None, {}, (14, 14), {"order": True}),
    ("accuracy", "Server", None, {"mode": "AccuracyOnly"}, (256, 100), {}),
    ("singlestream", "SingleStream", None, {"sample_concatenate_permutation": True}, (256, 60), {}),
    ("multistream", "MultiStream", None, {"accuracy_log_probability": 0.2}, (256, 200), {}),
    ("offline", "Offline", None, {"accuracy_log_sampling_target": 40}, (256, 200), {}),
    ("offline-equal", "Offline", None, {"sample_concatenate_permutation": True}, (256, 70), {}),
    ("offline-same", "Offline", None, {"performance_issue_same": True, "performance_issue_same_index": 5}, (256, 200), {}),
    ("offline-order", "Offline", None, {}, (14, 14), {"order": True}),
    ("concurrency", "Concurrency", None, {"target_concurrency": 5}, (256, 200), {}),
]
_BASE = {"server_target_qps": 2000.0, "min_duration_ms": 1500, "min_query_count": 100, "schedule_rng_seed": SEED,
         "single_stream_expected_latency_ns": 1_000_000, "multi_stream_expected_latency_ns": 2_000_000,
         "offline_expected_qps": 3000.0}


def _stream_plan(case: tuple):
    _, name, arrival, kw, (total, perf), extra = case
    s = settings(name, **{**_BASE, **{k: v for k, v in kw.items() if k != "mode"}})
    if "mode" in kw:
        s.mode = kw["mode"]
    trace = np.cumsum(rng(7).integers(1, 5_000_000, size=_ORDER.size)) if extra.get("trace") else None
    return _build_plan(_scenario(name, arrival), s, total, perf, issue_order=_ORDER if extra.get("order") else None,
                       arrival_ns=trace)


def _union(plan, shards: int) -> list[dict]:
    """Per phase, what the shards issue together (each slice pickled, as it travels to a shard)."""
    slices = [pickle.loads(pickle.dumps(sl)) for sl in partition(plan, shards)]
    out = []
    for i, ph in enumerate(plan.phases):
        parts = [sl.phases[i] for sl in slices]
        spq = ph.samples_per_query
        if plan.scenario.name == "Offline":  # contiguous sample ranges of the single query
            lo = [int(p.query_ids[0]) for p in parts]
            assert lo == sorted(lo) and all(p.intended_ns.tolist() == [0] for p in parts)
            out.append({"ids": np.zeros(1, np.int64), "intended": np.zeros(1, np.int64),
                        "samples": np.concatenate([p.samples for p in parts]),
                        "mask": None if parts[0].log_accuracy is None else np.concatenate([p.log_accuracy for p in parts]),
                        "queries": 1, "sample_counts": sum(p.sample_count for p in parts)})
            continue
        ids = np.concatenate([p.query_ids for p in parts])
        order = np.argsort(ids, kind="stable")
        rows = np.concatenate([p.samples.reshape(-1, spq) for p in parts])[order].reshape(-1)
        mask = None
        if parts[0].log_accuracy is not None:
            mask = np.concatenate([p.log_accuracy.reshape(-1, spq) for p in parts])[order].reshape(-1)
        assert sum(p.query_count for p in parts) == ids.shape[0]
        out.append({"ids": ids[order], "intended": np.concatenate([p.intended_ns for p in parts])[order],
                    "samples": rows, "mask": mask, "queries": int(ids.shape[0]),
                    "sample_counts": sum(p.sample_count for p in parts)})
    return out


@pytest.mark.parametrize("case", STREAM_CASES, ids=[c[0] for c in STREAM_CASES])
def test_streamed_slices_union_is_the_single_shard_sequence_and_matches_the_metadata(case, monkeypatch) -> None:
    import raybench.core.plan_stream as ps

    monkeypatch.setattr(ps, "CHUNK", 97)  # many chunks per phase
    plan = _stream_plan(case)
    streamed = [p.source is not None for p in plan.phases]
    # performance runs of scheduled and Offline scenarios are streamed; bounded phases are held
    assert any(streamed) == (case[0] not in ("issue-unique", "accuracy", "concurrency"))
    shard_counts = (1,) if plan.scenario.serial else (1, 2, 3, 7)
    ref = _union(plan, 1)
    for shards in shard_counts:
        got = _union(plan, shards)
        for g, r, ph in zip(got, ref, plan.phases, strict=True):
            assert np.array_equal(g["ids"], r["ids"]) and np.array_equal(g["intended"], r["intended"])
            assert np.array_equal(g["samples"], r["samples"])
            assert (g["mask"] is None) == (r["mask"] is None)
            if g["mask"] is not None:
                assert np.array_equal(g["mask"], r["mask"])
            # the driver's metadata is what the shards issue
            assert g["queries"] == ph.query_count and g["sample_counts"] == ph.sample_count == g["samples"].shape[0]
    assert all(p._arrays == {} for p in plan.phases if p.source is not None)  # the driver never built them
    for r, ph in zip(ref, plan.phases, strict=True):
        if plan.scenario.name not in ("Offline", "Concurrency"):
            assert np.array_equal(r["ids"], np.arange(ph.query_count))
            assert ph.last_intended_ns == int(r["intended"][-1]) and np.all(np.diff(r["intended"]) >= 0)
            if ph.source is not None and ph.source.schedule.kind != "trace":  # the stamp after the last query
                assert ph.generated_duration_ns == int(ps.first_stamps(ph.source.schedule, ph.query_count + 1)[-1])
        # the whole phase read on the driver (tests only) is the same sequence
        assert np.array_equal(ph.samples, r["samples"]) and np.array_equal(ph.intended_ns, r["intended"])


def test_streamed_rules_hold_on_regenerated_sequences() -> None:
    # equal issue: whole passes over the loaded set, each a permutation
    plan = _stream_plan(STREAM_CASES[6])
    ph = plan.phases[0]
    assert ph.query_count % 50 == 0 and ph.query_count >= 3000
    for p in range(ph.query_count // 50):
        assert sorted(ph.samples[50 * p : 50 * (p + 1)].tolist()) == sorted(ph.loaded_set.tolist())
    # issue_same: every sample is the loaded set's entry 3
    same = _stream_plan(STREAM_CASES[7]).phases[0]
    assert set(same.samples.tolist()) == {int(same.loaded_set[3])}
    # fixed issue order: sample k is order[k % len]
    order = _stream_plan(STREAM_CASES[10]).phases[0]
    assert order.samples.tolist() == [int(_ORDER[k % _ORDER.size]) for k in range(order.sample_count)]
    # the trace: every entry once, times divided by the speedup
    tr = _stream_plan(STREAM_CASES[5]).phases[0]
    stamps = np.cumsum(rng(7).integers(1, 5_000_000, size=_ORDER.size))
    assert tr.intended_ns.tolist() == np.floor((stamps - stamps[0]) / 3.0).astype(np.int64).tolist()
    # Offline: the loaded set repeated in order (1.1 x 1.5 s x 3000 = 4950 samples), equal issue padded
    off = _stream_plan(STREAM_CASES[14]).phases[0]
    assert off.sample_count == 4950 and np.array_equal(off.samples, np.resize(off.loaded_set, 4950))
    oe = _stream_plan(STREAM_CASES[15]).phases[0]
    assert oe.sample_count == 4970 and np.array_equal(np.bincount(oe.samples, minlength=256)[oe.loaded_set],
                                                      np.full(70, 71))
    # MultiStream: a query's 8 samples are contiguous in the padded loaded set
    ms = _stream_plan(STREAM_CASES[13]).phases[0]
    rows = ms.samples.reshape(-1, 8)
    pos = {int(v): i for i, v in enumerate(ms.loaded_set[:200])}
    assert all(np.array_equal(r, ms.loaded_set[pos[int(r[0])] : pos[int(r[0])] + 8]) for r in rows[:50])


def test_streamed_draws_follow_their_definition_exactly() -> None:
    s = settings("Server", **{**_BASE, "accuracy_log_probability": 0.25, "accuracy_log_rng_seed": 5})
    plan = build_plan(s, 256, 200)
    ph = plan.phases[0]
    n = ph.query_count
    gaps = np.floor(rng(SEED, 0).exponential(1 / 2000.0, size=n) * 1e9).astype(np.int64)
    stamps = np.concatenate([[0], np.cumsum(gaps)])
    k = int(np.nonzero((stamps >= 1_500_000_000) & (np.arange(n + 1) + 1 >= 100))[0][0])
    assert n == k + 1 and np.array_equal(ph.intended_ns, stamps[:n]) and ph.generated_duration_ns == stamps[n]
    starts = (rng(s.sample_index_rng_seed, 3).random(n) * 200).astype(np.int64)
    assert np.array_equal(ph.samples, ph.loaded_set[starts])
    u = rng(5, 0).random(n + 1)
    assert np.array_equal(ph.log_accuracy, ((u[1:] + u[0]) % 1.0) <= 0.25)
    assert 0.2 < ph.log_accuracy.mean() < 0.3


@pytest.mark.parametrize("kind", ["poisson", "gamma", "ramp", "ramp-fixed", "periodic"])
def test_chunk_size_does_not_change_the_sequence(kind: str) -> None:
    from raybench.core.plan_stream import (
        MaskSpec,
        PhaseSource,
        ScheduleSpec,
        count_schedule,
        mask_values,
        regenerate,
        sample_rows,
    )

    spec = {"poisson": ScheduleSpec("poisson", 500.0, SEED, 2),
            "gamma": ScheduleSpec("gamma", 500.0, SEED, 2, burstiness=0.3),
            "ramp": ScheduleSpec("ramp", 10.0, SEED, 2, end_qps=900.0, ramp_ns=2_000_000_000),
            "ramp-fixed": ScheduleSpec("ramp", 10.0, SEED, 2, end_qps=900.0, ramp_ns=2_000_000_000, random=False),
            "periodic": ScheduleSpec("periodic", 500.0)}[kind]
    counts = {count_schedule(spec, 3_000_000_000, 50, chunk=c) for c in (1, 2, 7, 1000, 1 << 20)}
    assert len(counts) == 1
    n = counts.pop()[0]
    assert n > 1000
    loaded = np.arange(1000, 1100, dtype=np.int64)
    for mode in ("uniform", "equal", "cyclic"):
        src = PhaseSource(spec, n, 1, mode, loaded, 100, seed=3)
        whole = regenerate(src, 0, 1, chunk=1 << 20)
        for chunk in (1, 5, 64):
            part = regenerate(src, 1, 3, chunk=chunk)
            assert np.array_equal(part[0], np.arange(1, n, 3))
            assert all(np.array_equal(a, b[1::3]) for a, b in zip(part[1:3], whole[1:3], strict=True))
        pieces = np.concatenate([sample_rows(src, a, min(n, a + 13)) for a in range(0, n, 13)])
        assert np.array_equal(pieces, whole[2])
    spec_m = MaskSpec(9, 0.5)
    whole_m = mask_values(spec_m, 0, 500)
    assert np.array_equal(np.concatenate([mask_values(spec_m, a, min(500, a + 7)) for a in range(0, 500, 7)]), whole_m)


def test_driver_memory_and_slice_size_do_not_grow_with_the_query_count() -> None:
    import tracemalloc

    s = settings("Server", server_target_qps=1e6, min_duration_ms=100, min_query_count=2_000_000,
                 accuracy_log_probability=0.01)
    tracemalloc.start()
    try:
        plan = build_plan(s, 4096, 4096)
        slices = partition(plan, 4)
        blobs = [pickle.dumps(sl) for sl in slices]
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert plan.query_count == 2_000_000
    # a materialised plan would hold 2e6 x (8 + 8 + 1) bytes = 34 MB; the streamed one, a few chunks
    assert peak < 12_000_000, peak
    assert all(len(b) < 80_000 for b in blobs)  # the loaded set (4096 x 8 bytes) and the recipe
    assert not any(name in p.__dict__ for sl in slices for p in sl.phases for name in ("intended_ns", "samples"))
    part = pickle.loads(blobs[3]).phases[0]
    assert part.query_count == 500_000 and part.intended_ns.shape[0] == 500_000
    assert part.query_ids[:3].tolist() == [3, 7, 11]


def test_ramp_sums_carry_across_chunks_exactly() -> None:
    from raybench.core.plan_stream import ScheduleSpec, first_stamps

    # restarting the float sum per chunk (lam0 + cumsum(steps)) flips a few dozen of these stamps by 1 ns
    spec = ScheduleSpec("ramp", 10.0, 5, 2, end_qps=900.0, ramp_ns=2_000_000_000)
    assert np.array_equal(first_stamps(spec, 100_000, chunk=3), first_stamps(spec, 100_000, chunk=1 << 20))
