"""build_once: an entry is built once, appears whole or not at all."""

from __future__ import annotations

from pathlib import Path

import pytest

from raybench.core.cache import build_once


def test_builds_once_and_reuses(tmp_path: Path) -> None:
    calls: list[Path] = []

    def build(d: Path) -> None:
        calls.append(d)
        (d / "done.txt").write_text("x")

    first = build_once("thing-v1", build, "done.txt", tmp_path)
    second = build_once("thing-v1", build, "done.txt", tmp_path)
    assert first == second == tmp_path / "thing-v1"
    assert len(calls) == 1 and (first / "done.txt").read_text() == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["thing-v1"]  # no temp dir left behind


def test_failed_build_leaves_nothing(tmp_path: Path) -> None:
    def build(d: Path) -> None:
        (d / "half.txt").write_text("x")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        build_once("thing-v1", build, "done.txt", tmp_path)
    assert list(tmp_path.iterdir()) == []
