"""Scores chat responses (UTF-8 text) against the optional ``expected`` answers.

Metrics over the samples that have an ``expected`` value (first log entry per ``qsl_idx``):
``exact_match`` = % whose normalised response equals the normalised expected answer, and
``token_f1`` = mean SQuAD-style token F1 x 100 (normalisation: lower case, punctuation and
articles removed, whitespace collapsed), which credits partially right answers.
No target: ``passed`` is ``None`` unless ``params["targets"]`` gives minimums.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from typing import Any

from raybench.core.spec import AccuracyResult

__all__ = ["normalize", "score", "token_f1"]

_PUNCT = str.maketrans("", "", string.punctuation)


def normalize(text: str) -> str:
    """Lower case, drop punctuation and the articles a/an/the, collapse whitespace."""
    t = text.lower().translate(_PUNCT)
    t = re.sub(r"\b(a|an|the)\b", " ", t)
    return " ".join(t.split())


def token_f1(pred: str, ref: str) -> float:
    """Harmonic mean of token precision and recall after :func:`normalize` (1.0 if both empty)."""
    p, r = normalize(pred).split(), normalize(ref).split()
    if not p or not r:
        return float(p == r)
    common = sum((Counter(p) & Counter(r)).values())
    if common == 0:
        return 0.0
    prec, rec = common / len(p), common / len(r)
    return 2 * prec * rec / (prec + rec)


def score(entries: list[tuple[int, bytes]], library: Any, params: dict[str, Any]) -> AccuracyResult:
    """Exact match and token F1 (%) over samples with an expected answer."""
    seen: set[int] = set()
    em = f1 = 0.0
    n = 0
    for q, data in entries:
        if q in seen:
            continue
        seen.add(q)
        ref = library.expected[q]
        if ref is None:
            continue
        pred = data.decode("utf-8", "replace")
        n += 1
        em += normalize(pred) == normalize(ref)
        f1 += token_f1(pred, ref)
    metrics = {"exact_match": round(100 * em / n, 4) if n else 0.0,
               "token_f1": round(100 * f1 / n, 4) if n else 0.0, "scored": float(n)}
    targets = dict(params.get("targets") or {})
    passed = all(metrics[k] >= v for k, v in targets.items()) if targets else None
    text = f"{{'exact_match': {metrics['exact_match']}, 'token_f1': {metrics['token_f1']}, 'scored': {n}}}\n"
    return AccuracyResult(metrics=metrics, accuracy_txt=text, passed=passed, targets=targets)
