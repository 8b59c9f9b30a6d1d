"""Accuracy-log truncation as the MLPerf submission tools do it (head + tail, hash in accuracy.txt)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from raybench.submission.truncate import (
    MAX_ACCURACY_LOG_SIZE,
    SEPARATOR,
    VIEWABLE_SIZE,
    truncate_accuracy_log,
)


def _log(tmp_path: Path, n: int) -> tuple[Path, Path, bytes]:
    data = bytes((48 + i % 10) for i in range(n))  # "0123456789..." so head and tail differ by position
    log, acc = tmp_path / "mlperf_log_accuracy.json", tmp_path / "accuracy.txt"
    log.write_bytes(data)
    acc.write_text("exact_match=1.000000 count=1024")
    return log, acc, data


def test_big_log_keeps_4096_head_and_tail_and_records_the_full_hash(tmp_path: Path) -> None:
    log, acc, data = _log(tmp_path, 83_799)
    res = truncate_accuracy_log(log, acc)
    out = log.read_bytes()
    assert len(out) == 8199 == 2 * VIEWABLE_SIZE + len(SEPARATOR)
    assert len(out) <= MAX_ACCURACY_LOG_SIZE == 10_240
    assert out == data[:4096] + b"\n\n...\n\n" + data[-4096:]
    digest = hashlib.sha256(data).hexdigest()
    assert acc.read_text() == f"exact_match=1.000000 count=1024\nhash={digest}\n"
    assert (res.sha256, res.original_size, res.final_size, res.truncated, res.already_done) == (digest, 83_799, 8199, True, False)


def test_second_pass_changes_nothing(tmp_path: Path) -> None:
    log, acc, data = _log(tmp_path, 20_000)
    truncate_accuracy_log(log, acc)
    before = (log.read_bytes(), acc.read_text())
    res = truncate_accuracy_log(log, acc)
    assert res.already_done and not res.truncated
    assert res.sha256 == hashlib.sha256(data).hexdigest()
    assert (log.read_bytes(), acc.read_text()) == before


def test_small_log_is_kept_whole_with_its_hash(tmp_path: Path) -> None:
    log, acc, data = _log(tmp_path, 8199)  # exactly what truncation would produce: nothing to cut
    res = truncate_accuracy_log(log, acc)
    assert log.read_bytes() == data and not res.truncated and res.final_size == 8199
    assert acc.read_text().splitlines()[-1] == f"hash={hashlib.sha256(data).hexdigest()}"


def test_log_over_the_limit_with_a_stale_hash_is_still_truncated(tmp_path: Path) -> None:
    log, acc, data = _log(tmp_path, 12_000)
    acc.write_text("exact_match=1.0\nhash=abc\n")
    res = truncate_accuracy_log(log, acc)
    assert res.truncated and log.stat().st_size == 8199
    assert acc.read_text() == f"exact_match=1.0\nhash=abc\nhash={hashlib.sha256(data).hexdigest()}\n"


def test_missing_files_are_named(tmp_path: Path) -> None:
    log, acc, _ = _log(tmp_path, 100)
    acc.unlink()
    with pytest.raises(FileNotFoundError, match=r"accuracy\.txt not found: score the accuracy run first"):
        truncate_accuracy_log(log, acc)
    with pytest.raises(FileNotFoundError, match=r"accuracy log .*nope\.json not found"):
        truncate_accuracy_log(tmp_path / "nope.json", acc)
