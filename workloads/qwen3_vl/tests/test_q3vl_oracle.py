"""End-to-end scoring path of qwen3_vl with the oracle SUT: request -> response bytes -> score()."""

from __future__ import annotations

import asyncio
import collections
import re

import pytest

from raybench.core.clock import VirtualClock
from raybench.core.protocols import Query, SUTContext
from raybench.core.spec import load_object
from workloads.qwen3_vl import ORACLE_SPEC as SUT_SPEC
from workloads.qwen3_vl import WORKLOAD


def _run(params, mode):
    """Load every sample, issue it in queries of 5, read responses back like the accuracy log does."""
    library = load_object(WORKLOAD.library)(params)
    library.load(range(library.total_count))
    sut = load_object(SUT_SPEC.entry)({**SUT_SPEC.params, "mode": mode})
    # start() loads the library in a worker thread, which a virtual-time loop cannot wait for.
    asyncio.run(sut.start(SUTContext("qwen3_vl", "Offline", "AccuracyOnly", workload_params=params)))
    clock = VirtualClock()
    t0 = clock.now_ns()

    async def main():
        idx = list(range(library.total_count))
        queries = [
            Query(id=k, indices=idx[k : k + 5], samples=[library.get(i) for i in idx[k : k + 5]], clock=clock)
            for k in range(0, len(idx), 5)
        ]
        answers = await asyncio.gather(*(sut.issue(q) for q in queries))
        await sut.stop()
        return queries, answers

    queries, answers = clock.run(main())
    assert clock.now_ns() == t0  # the oracle answers at once: no virtual time passes
    entries = []
    for q, responses in zip(queries, answers, strict=True):
        # one token mark per answered sample, all at the issue time
        assert len(responses) == len(q.indices) and q.first_token_ns == t0 and q.token_ns == [t0] * len(q.indices)
        for i, r in zip(q.indices, responses, strict=True):
            entries.append(
                (i, bytes.fromhex(r.data.hex().upper()))
            )  # hex round trip of mlperf_log_accuracy.json
    return library, load_object(WORKLOAD.accuracy)(entries, library, params)


@pytest.fixture()
def params(tmp_path, monkeypatch):
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path))
    return {**WORKLOAD.params}


def test_oracle_scores_perfect_f1(params):
    library, res = _run(params, "exact")
    assert library.total_count == 32
    assert res.metrics["f1"] == 1.0
    assert res.metrics["unparsable"] == 0.0 and res.metrics["responses"] == 32.0
    assert res.metrics["brand_accuracy"] == 1.0 and res.metrics["is_secondhand_f1"] == 1.0
    assert res.passed is True
    assert float(re.search(r'\{.*"f1":\s*([\d\.]+).*\}', res.accuracy_txt).group(1)) == 1.0


def test_fenced_json_is_unparsable(params):
    _, res = _run(params, "fenced")
    assert res.metrics["f1"] == 0.0 and res.metrics["unparsable"] == 32.0 and res.passed is False


def test_parent_category_gets_partial_credit(params):
    library, res = _run(params, "parent")
    depths = collections.Counter(len(library.ground_truth(i)["category"].split(" > ")) for i in range(32))
    assert depths == {2: 3, 3: 9, 4: 16, 5: 4}
    # overlap = predicted = sum(d - 1) = 85, true = sum(d) = 117 -> F1 = 2*85 / (85 + 117)
    assert res.metrics["hierarchical_precision"] == 1.0
    assert res.metrics["hierarchical_recall"] == 85 / 117
    assert res.metrics["f1"] == pytest.approx(170 / 202, abs=1e-15)


def test_rejects_bad_params():
    with pytest.raises(ValueError, match=r"^sut\.params\.mode: Input should be 'exact', 'fenced' or 'parent'$"):
        load_object(SUT_SPEC.entry)({"mode": "psychic"})
    with pytest.raises(ValueError, match=r"^sut\.params\.colour: unknown field$"):
        load_object(SUT_SPEC.entry)({"colour": 1})
