"""Hierarchical F1, response parsing and accuracy.txt of the qwen3_vl workload (hand-checked)."""

from __future__ import annotations

import re

import pytest

from workloads.qwen3_vl.accuracy import (
    ProductMetadata,
    accuracy_txt,
    brand_similarity,
    hierarchical_components,
    hierarchical_f1,
    parse_response,
    score,
    unparsable_category,
)

CHECKER_RE = re.compile(r'\{.*"f1":\s*([\d\.]+).*\}')  # submission checker's F1_HIERARCHICAL pattern


class FakeLibrary:
    def __init__(self, truths):
        self.truths = truths

    def ground_truth(self, i):
        return self.truths[i]


def _json(category, brand="Acme", secondhand=False):
    return (
        ProductMetadata(category=category, brand=brand, is_secondhand=secondhand).model_dump_json().encode()
    )


@pytest.mark.parametrize(
    ("pred", "true", "expected"),
    [
        ("A > B > C", "A > B > C", (3, 3, 3)),  # exact
        ("A > B > X > Y", "A > B > C", (2, 4, 3)),  # common prefix of 2, deeper prediction
        ("A", "A > B > C > D", (1, 1, 4)),  # shallower prediction
        ("X > B", "A > B", (0, 2, 2)),  # level 2 equal but the prefix is already broken
        ("A >  B ", "A > B", (2, 2, 2)),  # levels are stripped
        ("A>B", "A > B", (0, 1, 2)),  # only " > " separates levels
        ("Home >Kitchen", "Home > Kitchen", (0, 1, 2)),
        ("", "A > B", (0, 1, 2)),  # empty string is one empty level
    ],
)
def test_hierarchical_components(pred, true, expected):
    assert hierarchical_components(pred, true) == expected


def test_unparsable_category_has_truth_depth():
    assert unparsable_category("Cameras & Optics > Cameras > Video Cameras > Drone Video Cameras") == (
        "|NA| > |NA| > |NA| > |NA|"
    )
    assert hierarchical_components(unparsable_category("A > B > C"), "A > B > C") == (0, 3, 3)


def test_hierarchical_f1_micro_aggregation():
    pairs = [
        ("A > B > C", "A > B > C"),  # 3 / 3 / 3
        ("A > B > X > Y", "A > B > C"),  # 2 / 4 / 3
        ("|NA| > |NA| > |NA|", "A > B > C"),  # 0 / 3 / 3
        ("A", "A > B > C > D"),  # 1 / 1 / 4
    ]
    f1, hp, hr = hierarchical_f1(pairs)
    assert hp == 6 / 11
    assert hr == 6 / 13
    assert f1 == pytest.approx(0.5, abs=1e-15)  # 2 I / (P + T) = 12 / 24
    assert hierarchical_f1([("A > B > X > Y", "A > B > C")])[0] == pytest.approx(4 / 7, abs=1e-15)
    assert hierarchical_f1([]) == (0.0, 0.0, 0.0)
    assert hierarchical_f1([("X", "A")]) == (0.0, 0.0, 0.0)


@pytest.mark.parametrize(
    "text",
    [
        b'```json\n{"category": "A", "brand": "b", "is_secondhand": false}\n```',  # fenced
        b'Sure! {"category": "A", "brand": "b", "is_secondhand": false}',  # leading text
        b'{"category": "A", "brand": "b", "is_secondhand": false} Done.',  # trailing text
        b'{"category": "A", "brand": "b"}',  # missing field
        b'{"category": "A", "brand": "b", "is_secondhand": false, "color": "red"}',  # extra field
        b'{"category": 3, "brand": "b", "is_secondhand": false}',  # wrong type
        b"\xff\xfe",  # not UTF-8
        b"",
    ],
)
def test_unparsable_responses(text):
    assert parse_response(text) is None


def test_parsable_responses():
    got = parse_response(b' {"category": "A > B", "brand": "b", "is_secondhand": true}\n')
    assert got == ProductMetadata(category="A > B", brand="b", is_secondhand=True)
    # pydantic's lax mode, as in the reference: "false" is a boolean
    assert parse_response('{"category": "A", "brand": "b", "is_secondhand": "false"}').is_secondhand is False


def test_brand_similarity_matches_indel_ratio():
    assert brand_similarity("this is a test", "this is a test!") == pytest.approx(100 * 28 / 29)
    assert brand_similarity("adidas", "adodas") == pytest.approx(100 * 10 / 12)
    assert brand_similarity("", "") == 100.0
    assert brand_similarity("abc", "") == 0.0


def test_score_counts_unparsable_as_full_mismatch():
    truths = [
        {"category": "A > B > C", "brand": "Acme", "is_secondhand": True},
        {"category": "A > B > C", "brand": "Acme", "is_secondhand": False},
        {"category": "A > B > C", "brand": "Nordlys", "is_secondhand": False},
        {"category": "A > B > C > D", "brand": "Kuro", "is_secondhand": True},
    ]
    entries = [
        (0, _json("A > B > C", "acme ", True)),
        (1, _json("A > B > X > Y", "Acme", False)),
        (2, b'```json\n{"category": "A > B > C", "brand": "Nordlys", "is_secondhand": false}\n```'),
        (3, _json("A", "Kuro", False)),
    ]
    res = score(entries, FakeLibrary(truths), {})
    assert res.metrics["f1"] == pytest.approx(0.5, abs=1e-15)
    assert res.metrics["hierarchical_precision"] == 6 / 11
    assert res.metrics["hierarchical_recall"] == 6 / 13
    assert res.metrics["unparsable"] == 1.0
    assert res.metrics["responses"] == 4.0
    assert res.metrics["brand_accuracy"] == 3 / 4  # the fenced answer's brand does not count
    assert res.passed is False
    assert res.targets == {"f1": 0.7824}
    assert score(entries, FakeLibrary(truths), {"f1_target": 0.49}).passed is True  # f1 is 0.4999999999999999
    m = CHECKER_RE.search(res.accuracy_txt.replace("\n", " "))
    assert m is not None and float(m.group(1)) == pytest.approx(0.5, abs=1e-15)


def test_secondhand_f1():
    truths = [{"category": "A", "brand": "x", "is_secondhand": t} for t in (True, True, False, False)]
    preds = [True, False, True, False]  # TP 1, FN 1, FP 1 -> F1 = 2/(2+1+1)
    entries = [(i, _json("A", "x", p)) for i, p in enumerate(preds)]
    res = score(entries, FakeLibrary(truths), {})
    assert res.metrics["is_secondhand_f1"] == 0.5
    assert res.metrics["f1"] == 1.0 and res.passed is True


def test_accuracy_txt_layout_and_checker_regex():
    txt = accuracy_txt(0.7903037)
    lines = txt.split("\n")
    assert lines[0] == "Results" and lines[2] == '{"f1": 0.7903037}' and lines[4].startswith("hash=")
    assert len(lines[4]) == len("hash=") + 64
    assert float(CHECKER_RE.search(txt).group(1)) == 0.7903037
    tiny = accuracy_txt(1.5e-05)  # json.dumps would print 1.5e-05 and the checker would read 1.5
    assert float(CHECKER_RE.search(tiny).group(1)) == 1.5e-05
    assert float(CHECKER_RE.search(accuracy_txt(0.0)).group(1)) == 0.0
