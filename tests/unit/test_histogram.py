"""Histogram (HDR-style, mergeable) and ExactStats: accuracy, merge laws, serialisation."""

from __future__ import annotations

import json
import pickle
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raybench.core import histogram as hmod
from raybench.core.histogram import HIGHEST_TRACKABLE, Histogram, merge_all
from raybench.core.stats import PERCENTILE_GRID, ExactStats, LatencyStats

REL = 1 / 2048  # worst-case relative error of a bucket midpoint


def make(values) -> Histogram:
    h = Histogram()
    h.record_many(np.asarray(values, dtype=np.int64))
    return h


@pytest.fixture(scope="module")
def lognormal() -> np.ndarray:
    rng = np.random.default_rng(20260501)
    return np.rint(rng.lognormal(mean=np.log(10e6), sigma=1.0, size=10**6)).astype(np.int64)


# ---------------------------------------------------------------- layout
def test_layout_is_contiguous_and_midpoints_within_1_in_2048():
    lower, width, rep = hmod._LOWER, hmod._WIDTH, hmod._REPRESENTATIVE
    assert hmod.BUCKET_COUNT == 43008
    assert lower[0] == 0 and np.all(lower[1:] == lower[:-1] + width[:-1])
    assert int(lower[-1] + width[-1] - 1) == HIGHEST_TRACKABLE == 2**51 - 1
    wide = width > 1
    # every value v in a wide bucket satisfies |v - rep| <= width/2 <= lower/2048 <= v/2048
    assert np.all((width[wide] // 2) * 2048 <= lower[wide])
    assert np.array_equal(rep[~wide], lower[~wide])  # 0..2047 are exact
    assert hmod._index_of(2047) == 2047 and hmod._index_of(2048) == 2048 == hmod._index_of(2049)
    assert hmod._index_of(4096) == 3072


def test_scalar_and_vector_bucket_index_agree():
    rng = np.random.default_rng(3)
    vals = np.concatenate(
        [np.arange(5000), rng.integers(0, 2**62, 20000), 2 ** np.arange(62), 2 ** np.arange(1, 62) - 1]
    )
    assert np.array_equal(hmod._indices_of(vals), [hmod._index_of(int(v)) for v in vals])


def test_small_values_are_exact():
    h = make(np.arange(2048)[::-1])
    assert [h.value_at_index(i) for i in (0, 1, 1000, 2046, 2047)] == [0, 1, 1000, 2046, 2047]
    assert h.count == 2048 and h.total == 2047 * 2048 // 2 and h.mean == 1023.5


# ---------------------------------------------------------------- accuracy
def test_percentiles_on_a_million_lognormal_latencies(lognormal):
    h = make(lognormal)
    exact = np.sort(lognormal)
    n = exact.size
    for p in PERCENTILE_GRID:
        want = int(exact[int(n * p)])
        assert abs(h.percentile(p) - want) <= want * REL, p
    assert h.min == int(exact[0]) and h.max == int(exact[-1])
    assert h.value_at_index(0) == h.min and h.value_at_index(n - 1) == h.max == h.percentile(1.0)
    assert h.total == int(lognormal.sum()) and h.count == n
    assert h.mean == pytest.approx(float(lognormal.mean()), rel=1e-12)


def test_count_above_within_bucket_tolerance(lognormal):
    h = make(lognormal)
    exact = ExactStats(lognormal)
    for threshold in (1_000, 2_500_000, 10_000_000, 15_000_123, 100_000_000, 10**9):
        got, want = h.count_above(threshold), exact.count_above(threshold)
        # only values in threshold's own bucket (width <= threshold/1024) can be misclassified
        near = exact.count_above(int(threshold * (1 - 1 / 1024)) - 1) - exact.count_above(
            int(threshold * (1 + 1 / 1024)) + 1
        )
        assert abs(got - want) <= near, threshold
    assert h.count_above(h.max) == 0 and h.count_above(h.max - 1) >= 1
    assert h.count_above(h.min - 1) == h.count


def test_record_and_record_many_are_identical():
    rng = np.random.default_rng(7)
    vals = rng.integers(0, 10**10, 3000)
    a = Histogram()
    for v in vals.tolist():
        a.record(v)
    b = make(vals)  # >= 2048 values: bincount path
    c = Histogram()
    for chunk in np.array_split(vals, 10):  # < 2048 values: np.add.at path
        c.record_many(chunk)
    assert a == b == c
    d = Histogram()
    d.record(5_000_000, count=3)
    assert d == make([5_000_000] * 3)


def test_values_above_the_trackable_range_are_clamped_but_counted():
    h = make([2**60, 2**61, 2**62])
    assert (h.count, h.min, h.max, h.total) == (3, 2**60, 2**62, 2**60 + 2**61 + 2**62)
    # all three share the last bucket; its midpoint (~2**51) is clamped up to min
    assert h.value_at_index(1) == 2**60
    assert int(np.flatnonzero(h._counts)[0]) == hmod.BUCKET_COUNT - 1


def test_bad_input_raises():
    h = Histogram()
    with pytest.raises(ValueError, match="value must be >= 0"):
        h.record(-1)
    with pytest.raises(ValueError, match="count must be >= 0"):
        h.record(1, count=-2)
    with pytest.raises(ValueError, match=">= 0, got -5"):
        h.record_many(np.array([3, -5]))
    with pytest.raises(ValueError, match="integers"):
        h.record_many(np.array([1.5]))
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        make([1]).percentile(1.5)
    assert h.count == 0
    with pytest.raises(IndexError):
        h.percentile(0.5)
    h.record(7, count=0)
    assert h.count == 0 and (h.min, h.max, h.mean) == (0, 0, 0.0)


def test_cdf_points():
    h = make([10, 20, 20, 3000, 3001])
    values, fractions = h.cdf_points()
    # 3000 and 3001 share the width-2 bucket [3000, 3002); its midpoint 3001 is the max
    assert values.tolist() == [10, 20, 3001]
    assert fractions.tolist() == [0.2, 0.6, 1.0]
    v0, f0 = Histogram().cdf_points()
    assert v0.size == 0 and f0.size == 0


# ---------------------------------------------------------------- merging
values_st = st.lists(
    st.one_of(st.integers(0, 5000), st.integers(0, 10**12), st.integers(0, 2**55)), max_size=40
)


@settings(max_examples=60, deadline=None)
@given(values_st, values_st, values_st)
def test_merge_laws(a, b, c):
    ha, hb, hc = make(a), make(b), make(c)
    assert ha.merge(hb).merge(hc) == ha.merge(hb.merge(hc))
    assert ha.merge(hb) == hb.merge(ha)
    assert ha.merge(Histogram()) == ha == Histogram().merge(ha)
    assert merge_all([hc, ha, hb]) == make(a + b + c)
    assert ha == make(a)  # merge() does not mutate its operands


@settings(max_examples=60, deadline=None)
@given(values_st, st.integers(0, 2**56))
def test_count_above_is_consistent_with_value_at_index(values, threshold):
    h = make(values)
    reported = [h.value_at_index(i) for i in range(h.count)]
    assert reported == sorted(reported)
    assert h.count_above(threshold) == sum(v > threshold for v in reported)
    for v in values[:5]:  # also at thresholds sitting exactly on recorded values
        assert h.count_above(v) == sum(r > v for r in reported)


@settings(max_examples=60, deadline=None)
@given(values_st)
def test_dict_and_pickle_round_trip(values):
    h = make(values)
    assert Histogram.from_dict(json.loads(json.dumps(h.to_dict()))) == h
    back = pickle.loads(pickle.dumps(h))
    assert back == h
    if values:
        assert back.percentile(0.5) == h.percentile(0.5)
        back.record(1)  # the restored dense array is writable
        assert back.count == h.count + 1


def test_pickle_is_sparse_and_merge_into_in_place(lognormal):
    h = make(lognormal[:1000])
    assert len(pickle.dumps(h)) < 20_000  # dense counts alone would be 344 KiB
    g = make(lognormal[1000:2000])
    g.merge_into(h)
    assert g == make(lognormal[:2000])


def test_merge_all_64_histograms_is_fast(lognormal):
    hists = [make(chunk) for chunk in np.array_split(lognormal, 64)]
    start = time.perf_counter()
    merged = merge_all(hists)
    elapsed = time.perf_counter() - start
    assert merged == make(lognormal)
    assert elapsed < 0.05


def test_from_dict_rejects_bad_input():
    d = make([1, 2, 3]).to_dict()
    with pytest.raises(ValueError, match="'layout'"):
        Histogram.from_dict({**d, "layout": "other"})
    with pytest.raises(ValueError, match="'count' is 4"):
        Histogram.from_dict({**d, "count": 4})
    with pytest.raises(ValueError, match="missing field"):
        Histogram.from_dict({k: v for k, v in d.items() if k != "total"})
    with pytest.raises(ValueError, match="'index' has a bucket outside"):
        Histogram.from_dict({**d, "index": [1, 2, 10**6]})


# ---------------------------------------------------------------- ExactStats
def test_exact_stats_loadgen_indexing():
    s = ExactStats(np.array([50, 10, 40, 20, 30, 60, 70, 80, 90, 100]))
    assert (s.count, s.min, s.max, s.total, s.mean) == (10, 10, 100, 550, 55.0)
    # LoadGen: sorted[int(n * p)], no interpolation
    assert [s.percentile(p) for p in (0.0, 0.5, 0.9, 0.99, 1.0)] == [10, 60, 100, 100, 100]
    assert s.value_at_index(3) == 40
    assert s.count_above(50) == 5 and s.count_above(49) == 6 and s.count_above(100) == 0
    with pytest.raises(ValueError, match=">= 0"):
        ExactStats(np.array([1, -1]))
    with pytest.raises(IndexError):
        ExactStats(np.array([], dtype=np.int64)).percentile(0.5)


def test_histogram_matches_exact_stats_on_small_values():
    vals = np.random.default_rng(11).integers(0, 2048, 500)
    h, s = make(vals), ExactStats(vals)
    assert isinstance(h, LatencyStats) and isinstance(s, LatencyStats)
    for p in (0.0, *PERCENTILE_GRID, 1.0):
        assert h.percentile(p) == s.percentile(p)
    for t in (0, 100, 1000, 2047):
        assert h.count_above(t) == s.count_above(t)
    assert (h.total, h.min, h.max) == (s.total, s.min, s.max)
