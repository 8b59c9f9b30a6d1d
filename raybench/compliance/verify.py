"""The compliance verifications: the official ``run_verification.py`` / ``verify_*.py`` rules.

Each function reads MLPerf logs (``mlperf_log_accuracy.json``, ``mlperf_log_detail.txt``,
``mlperf_log_summary.txt``) and returns ``(text, passed)``: ``text`` is what the official script
writes into its ``verify_*.txt`` (the submission checker greps it for ``TEST PASS`` and the
``... check pass: True`` lines), ``passed`` the verdict those lines carry.

Where the official rule is weak it is kept, so that a verdict here is the checker's verdict:
TEST01 compares only the first element of each payload (read as ``dtype``, bytes by default),
and a run that is not VALID fails the performance check.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "read_accuracy_entries", "read_detail", "baseline_delta_check", "verify_test01_accuracy", "verify_test01_performance",
    "verify_test04_performance", "verify_test06", "verify_test07", "verify_test08", "verify_test09",
]

DTYPES = {"byte": np.byte, "int16": np.int16, "int32": np.int32, "int64": np.int64, "float32": np.float32}
#: Each scenario's score in the detail log (TEST01's ``verify_performance.py``).
RESULT_FIELD = {"Offline": "result_samples_per_second", "SingleStream": "early_stopping_latency_ss",
                "MultiStream": "early_stopping_latency_ms", "Server": "result_completed_samples_per_sec"}
_BAR = "=" * 80


def read_accuracy_entries(path: str | Path) -> list[dict[str, Any]]:
    """The entries of an accuracy log (``ValueError`` naming the file when it is not one)."""
    path = Path(path)
    try:
        items = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: accuracy log not found") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not a JSON accuracy log ({exc})") from None
    if not isinstance(items, list) or not all(isinstance(i, dict) and "qsl_idx" in i and "data" in i for i in items):
        raise ValueError(f"{path}: expected a JSON array of {{qsl_idx, data}} entries")
    return items


def read_detail(path: str | Path) -> dict[str, Any]:
    """The keys of a detail log, first occurrence winning (as the checker's parser)."""
    path = Path(path)
    out: dict[str, Any] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise ValueError(f"{path}: detail log not found") from None
    for n, line in enumerate(lines, start=1):
        if not line.startswith(":::MLLOG "):
            continue
        try:
            obj = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            raise ValueError(f"{path}:{n}: not a JSON :::MLLOG line") from None
        out.setdefault(obj["key"], obj["value"])
        if obj.get("metadata", {}).get("is_error"):
            out.setdefault("__errors__", 0)
            out["__errors__"] += 1
    return out


def _frombuffer(hex_data: str, dtype: Any) -> np.ndarray:
    raw = bytes.fromhex(hex_data)
    size = np.dtype(dtype).itemsize
    return np.frombuffer(raw[: len(raw) - len(raw) % size], dtype=dtype)


# ----------------------------------------------------------------------------- TEST01


def verify_test01_accuracy(reference: str | Path, test: str | Path, dtype: str = "byte") -> tuple[str, bool]:
    """TEST01 ``verify_accuracy.py``: each performance-mode answer's first element equals the
    accuracy-mode answer of the same ``qsl_idx``; passes with no mismatch and at least one match."""
    dt = DTYPES[dtype]
    acc, perf = read_accuracy_entries(reference), read_accuracy_entries(test)
    results: dict[int, str] = {}
    dup = acc_mismatch = matched = mismatch = missing = 0
    for e in acc:
        idx = int(e["qsl_idx"])
        if idx in results:
            dup += 1
            acc_mismatch += results[idx] != e["data"]
        else:
            results[idx] = e["data"]
    for e in perf:
        idx = int(e["qsl_idx"])
        if idx in results:
            matched += 1
            a, b = _frombuffer(e["data"], dt), _frombuffer(results[idx], dt)
            if a.size == 0 or b.size == 0:
                mismatch += a.size != b.size
            elif a[0] != b[0]:
                mismatch += 1
        else:
            missing += 1
        results[idx] = e["data"]
    passed = mismatch == 0 and matched > 0
    lines = ["Verifying accuracy. This might take a while...", "Reading accuracy mode results...",
             "Reading performance mode results...", f"num_acc_log_entries = {len(acc)}",
             f"num_acc_log_duplicate_keys = {dup}", f"num_acc_log_data_mismatch = {acc_mismatch}",
             f"num_perf_log_entries = {len(perf)}", f"num_perf_log_qsl_idx_match = {matched}",
             f"num_perf_log_data_mismatch = {mismatch}", f"num_missing_qsl_idxs = {missing}",
             "TEST PASS" if passed else "TEST FAIL", ""]
    return "\n".join(lines) + "\n", passed


def _detail_score(path: str | Path) -> tuple[str | None, float, Any, str | None]:
    d = read_detail(path)
    scenario = d.get("effective_scenario")
    if d.get("result_validity") != "VALID":
        return scenario, 0.0, None, f"TEST FAIL: Invalid results in {path}"
    field = RESULT_FIELD.get(str(scenario))
    if field is None or field not in d:
        return scenario, 0.0, None, f"TEST FAIL: {path} has no {field or 'score for scenario ' + str(scenario)}"
    latency = d.get("effective_target_latency_ns") if scenario == "Server" else None
    return scenario, float(d[field]), latency, None


def verify_test01_performance(reference: str | Path, test: str | Path) -> tuple[str, bool]:
    """TEST01 ``verify_performance.py`` on the detail logs: both runs VALID, the same scenario
    (Server: the same latency bound), the test's score within 10% of the reference (20% for a
    SingleStream latency <= 0.2 ms or a MultiStream one <= 1.6 ms)."""
    lines = ["Verifying performance."]
    ref_sc, ref, ref_lat, err = _detail_score(reference)
    if err is None:
        test_sc, score, test_lat, err = _detail_score(test)
    if err is None and test_sc != ref_sc:
        err = "TEST FAIL: Test and reference scenarios do not match!"
    if err is None and ref_sc == "Server" and test_lat != ref_lat:
        err = "TEST FAIL: Server target latency mismatch"
    if err is not None:
        return "\n".join([*lines, err]) + "\n", False
    lines += [f"Reference score = {ref}", f"Test score = {score}"]
    threshold = 0.20 if (ref_sc == "SingleStream" and ref <= 200000) or (ref_sc == "MultiStream" and ref <= 1600000) else 0.10
    passed = ref * (1 - threshold) <= score <= ref * (1 + threshold)
    return "\n".join([*lines, "TEST PASS" if passed else "TEST FAIL: Test score invalid"]) + "\n", passed


def baseline_delta_check(baseline: dict[str, float], compliance: dict[str, float], metrics: list[str],
                       checker_model: str | None) -> tuple[str, bool]:
    """TEST01's fallback for non-deterministic SUTs (the checker's rule): for each target metric,
    ``|1 - baseline / compliance|`` in percent is at most 1 (0.1 for a ``*-99.9`` benchmark), where
    ``baseline`` scores the accuracy run's answers to the samples the compliance run logged and
    ``compliance`` the compliance run's answers; a zero score fails."""
    limit = 0.1 if checker_model and "99.9" in checker_model else 1.0
    lines, ok = [], bool(metrics)
    for m in metrics:
        b, c = float(baseline.get(m, 0.0)), float(compliance.get(m, 0.0))
        if b == 0 or c == 0:
            lines.append(f"{m}: baseline {b}, compliance {c}: a zero score fails")
            ok = False
            continue
        delta = abs(1 - b / c) * 100
        lines.append(f"{m}: baseline {b}, compliance {c}, delta {delta:.4f}% (limit {limit}%)")
        ok = ok and delta <= limit
    return "\n".join([*lines, "TEST PASS" if ok else "TEST FAIL"]) + "\n", ok


# ----------------------------------------------------------------------------- TEST04

_SS_ESTIMATE = re.compile(r".*Early stopping (90th|90.0th|99.9th) percentile estimate")
_MS_ESTIMATE = re.compile(r".*Early stopping (99th|99.0th) percentile estimate")


def _summary_score(path: str | Path, who: str) -> tuple[str, float, str | None, str | None, list[str]]:
    """(scenario, score, target latency line, failure, warnings) of a summary, as TEST04 reads it."""
    scenario, score, latency, notes = "", 0.0, None, []
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ValueError(f"{path}: summary log not found") from None
    for line in text.splitlines():
        value = line.split(": ", 1)[1].strip() if ": " in line else ""
        if line.startswith("Scenario"):
            scenario = value
        elif scenario == "SingleStream" and _SS_ESTIMATE.match(line) or scenario == "MultiStream" and _MS_ESTIMATE.match(line):
            score = 1e9 / float(value)
        elif scenario == "Server" and line.startswith("Completed samples per second"):
            score = float(value)
        elif scenario == "Server" and line.startswith("target_latency (ns)"):
            latency = value
        elif scenario == "Offline" and line.startswith("Samples per second"):
            score = float(value)
        elif line.startswith("Result is") and value == "INVALID":
            return scenario, score, latency, f"TEST FAIL: {who.capitalize()} results are invalid", notes
        elif re.match(r"\d+ ERROR", line):
            notes.append(f"WARNING: {line.split(' ', 1)[0]} ERROR reported in {who} results")
    return scenario, score, latency, None, notes


def verify_test04_performance(reference: str | Path, test: str | Path) -> tuple[str, bool]:
    """TEST04 ``verify_performance.py`` on the summaries: issuing one sample over and over must
    not be faster than the performance run by 10% or more (20% for short SingleStream and
    MultiStream latencies); scores are throughput (SingleStream/MultiStream: 1e9 / estimate)."""
    lines = ["Verifying performance."]
    ref_sc, ref, ref_lat, err, notes = _summary_score(reference, "reference")
    lines += notes
    if err is None:
        test_sc, score, test_lat, err, notes = _summary_score(test, "test")
        lines += notes
        if err is None and test_sc == "Server" and test_lat != ref_lat:
            err = "TEST FAIL: Server target latency mismatch"
        if err is None and test_sc != ref_sc:
            err = "Test and reference scenarios do not match!"
    if err is not None:
        return "\n".join([*lines, err]) + "\n", False
    lines += [f"reference score = {ref}", f"test score = {score}"]
    threshold = 0.20 if (ref_sc == "SingleStream" and ref <= 200000) or (ref_sc == "MultiStream" and ref <= 1600000) else 0.10
    passed = score < ref * (1 + threshold)
    return "\n".join([*lines, "TEST PASS" if passed else "TEST FAIL: Test score invalid"]) + "\n", passed


# ----------------------------------------------------------------------------- TEST06


def verify_test06(test: str | Path, scenario: str, dtype: str = "int32", eos_token_id: int = 2) -> tuple[str, bool]:
    """TEST06: no answer ends in two or more EOS tokens (an answer of exactly two EOS is allowed),
    each answer's length is its ``token_count``, and (streaming scenarios) the first token reported
    equals the answer's first token."""
    dt = DTYPES[dtype]
    entries = read_accuracy_entries(test)
    eos_pass, len_pass = True, True
    for e in entries:
        data = _frombuffer(e["data"], dt)
        tail = 0
        for tok in data[:0:-1]:  # from the end down to index 1, as the official loop
            if tok != eos_token_id:
                break
            tail += 1
        if tail >= 2 and data.size != 2:
            eos_pass = False
        if "token_count" not in e or data.size != int(e["token_count"]):
            len_pass = False
    first: bool | str = "Skipped"
    if scenario != "Offline":
        first = all("token_data" in e and all(a == b for a, b in zip(_frombuffer(e["data"], dt),
                                                                     _frombuffer(e["token_data"], dt), strict=False))
                    for e in entries)
    passed = eos_pass and len_pass and first in (True, "Skipped")
    lines = [f"First token check pass: {first}", f"EOS check pass: {eos_pass}", f"Sample length check pass: {len_pass}",
             "TEST06 verification complete" if passed else "TEST06 verification failed"]
    return "\n".join(lines) + "\n", passed


# ----------------------------------------------------------------------------- TEST07


def verify_test07(scorer_output: str, score: float | None, threshold: float) -> tuple[str, bool]:
    """TEST07: the accuracy of every sample logged in performance mode is at least ``threshold``
    (``scorer_output`` is the accuracy script's text, kept at the top as the official file)."""
    passed = score is not None and score >= threshold
    lines = [scorer_output.rstrip("\n"), "", _BAR, "TEST07 Verification Summary", _BAR]
    if score is None:
        lines += ["Error: Could not parse accuracy score", "TEST FAIL"]
    else:
        lines += [f"Accuracy score: {score}", f"Accuracy threshold: {threshold}", f"Accuracy check pass: {passed}",
                  "TEST PASS" if passed else "TEST FAIL"]
    return "\n".join(lines) + "\n", passed


# ----------------------------------------------------------------------------- TEST08


def _ne(preds: np.ndarray, labels: np.ndarray, weights: np.ndarray) -> float:
    """Normalized entropy: weighted cross entropy over the entropy of the weighted label mean."""
    eps = 1e-7
    p = np.clip(preds.astype(np.float64), eps, 1 - eps)
    y = np.clip(labels.astype(np.float64), eps, 1 - eps)
    w = weights.astype(np.float64)
    total = float(w.sum())
    if total == 0:
        return 0.0
    ce = -float(np.sum(w * (y * np.log(p) + (1 - y) * np.log(1 - p))))
    mean = min(max(float(np.sum(w * y)) / total, eps), 1 - eps)
    base = -mean * math.log(mean) - (1 - mean) * math.log(1 - mean)
    return 0.0 if base == 0 else ce / (base * total)


def verify_test08(reference: str | Path, test: str | Path, tolerance: float = 0.001) -> tuple[str, bool]:
    """TEST08: every performance-mode DLRMv3 answer matches an accuracy-mode one by
    ``(ts_idx, query_idx)`` and its NE (with the accuracy run's labels and weights) is within
    ``tolerance`` (relative) of the accuracy run's NE.

    A performance payload is ``[ts_idx, query_idx, preds...]``; a full ``[.., preds, labels,
    weights, n]`` payload (raybench's SUTs answer the same in both modes) is read for its preds.
    """
    ref: dict[tuple[int, int], tuple[float, np.ndarray, np.ndarray]] = {}
    acc = read_accuracy_entries(reference)
    for e in acc:
        arr = _frombuffer(e["data"], np.float32)
        n = int(arr[-1])
        if arr.size != 3 + 3 * n:
            raise ValueError(f"{reference}: entry qsl_idx={e['qsl_idx']} is not a DLRMv3 payload "
                             f"({arr.size} floats, expected 3 + 3 * {n})")
        preds, labels, weights = arr[2:2 + n], arr[2 + n:2 + 2 * n], arr[2 + 2 * n:2 + 3 * n]
        ref[(int(arr[0]), int(arr[1]))] = (_ne(preds, labels, weights), labels, weights)
    perf = read_accuracy_entries(test)
    matched = unmatched = bad = 0
    notes = []
    for e in perf:
        arr = _frombuffer(e["data"], np.float32)
        key = (int(arr[0]), int(arr[1]))
        if key not in ref:
            unmatched += 1
            continue
        matched += 1
        acc_ne, labels, weights = ref[key]
        n = labels.size
        preds = arr[2:2 + n] if arr.size in (2 + n, 3 + 3 * n) else arr[2:]
        if preds.size != n:
            bad += 1
            notes.append(f"  NE mismatch at {key}: {preds.size} predictions for {n} labels")
            continue
        perf_ne = _ne(preds, labels, weights)
        if acc_ne == 0 and perf_ne == 0:
            continue
        if acc_ne == 0 or perf_ne == 0 or abs(perf_ne - acc_ne) / abs(acc_ne) > tolerance:
            bad += 1
            notes.append(f"  NE mismatch at {key}: acc_ne={acc_ne:.6f}, perf_ne={perf_ne:.6f}")
    passed = bad == 0 and matched > 0 and unmatched == 0
    lines = ["Verifying accuracy. This might take a while...", "Reading accuracy mode results...",
             "Reading performance mode results...", *notes, "", f"num_acc_log_entries = {len(acc)}",
             f"num_perf_log_entries = {len(perf)}", f"num_matched = {matched}", f"num_unmatched = {unmatched}",
             f"num_ne_mismatch = {bad}", f"tolerance = {tolerance * 100:.2f}%", "",
             "TEST PASS" if passed else "TEST FAIL", "TEST08 verification complete"]
    return "\n".join(lines) + "\n", passed


# ----------------------------------------------------------------------------- TEST09


def verify_test09(test: str | Path, min_tokens: float, max_tokens: float) -> tuple[str, bool]:
    """TEST09: the mean output length (int32 token ids) of the logged answers is within bounds."""
    entries = read_accuracy_entries(test)
    lengths = [len(bytes.fromhex(e["data"])) // 4 for e in entries]
    if not lengths:
        raise ValueError(f"{test}: no entries in the accuracy log")
    mean = sum(lengths) / len(lengths)
    std = (sum((x - mean) ** 2 for x in lengths) / len(lengths)) ** 0.5
    lo_ok, hi_ok = mean >= min_tokens, mean <= max_tokens
    passed = lo_ok and hi_ok
    lines = [_BAR, "TEST09: Verify Output Token Length in Performance Mode", _BAR, "",
             "Output Token Length Statistics", "-" * 40, f"Total samples: {len(lengths)}",
             f"Mean output tokens: {mean:.2f}", f"Min output tokens: {min(lengths)}", f"Max output tokens: {max(lengths)}",
             f"Std deviation: {std:.2f}", "", _BAR, "Verification Results", _BAR, f"Mean output tokens: {mean:.2f}",
             f"Min threshold: {min_tokens}", f"Max threshold: {max_tokens}", f"Min check pass: {lo_ok}",
             f"Max check pass: {hi_ok}", "", "TEST PASS" if passed else "TEST FAIL"]
    return "\n".join(lines) + "\n", passed
