"""The tiny checkpoint learns the task (slow: ~1-2 min of CPU)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_train_tiny_auc_above_0_6(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.setenv("RAYBENCH_CACHE", str(tmp_path / "cache"))
    sys.path.insert(0, str(ROOT / "scripts"))
    import train_dlrmv3

    metrics = train_dlrmv3.main(["--preset", "tiny", "--out", str(tmp_path / "ckpt"),
                                 "--steps", "150", "--lr", "5e-3", "--max-requests-per-ts", "30"])
    assert metrics["gauc"] > 0.6
    assert metrics["ne"] < 0.95
    saved = json.loads((tmp_path / "ckpt" / "reference_metrics.json").read_text())
    assert saved["gauc"] == metrics["gauc"]
    assert (tmp_path / "ckpt" / "model.pt").exists()
