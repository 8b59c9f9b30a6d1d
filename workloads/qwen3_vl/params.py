"""Parameters of the Qwen3-VL (Shopify product catalogue) workload and its oracle SUT (pydantic only)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from raybench.core.spec import Params

__all__ = ["OracleQ3VLParams", "Qwen3VLParams"]


class Qwen3VLParams(Params):
    """Parameters of the qwen3_vl workload (``workload.params``)."""

    data_dir: str | None = None
    """Local dataset copy (``None`` = the generated demo catalogue)."""
    splits: list[str] = Field(default_factory=lambda: ["train", "test"], min_length=1)
    """Split names, concatenated in order."""
    count: int | None = Field(None, ge=1)
    """Use only the first N samples."""
    performance_count: int | None = Field(None, ge=1)
    """Samples held in memory in a performance run (``None`` = all)."""
    demo_samples: int = Field(32, ge=1)
    """Rows of the generated demo catalogue."""
    demo_seed: int = 0
    """Seed of the generated demo catalogue."""
    guided_decoding: bool = False
    """Ask the server for JSON-schema guided decoding (``response_format``)."""
    reencode_images: bool = False
    """Re-encode every image before sending it (see ``dataset.py``)."""
    f1_target: float = Field(0.7824, ge=0, le=1)
    """Minimum hierarchical category F1."""
    random_seed: int = 12345
    """Seed of the coin flips for unparsable ``is_secondhand`` answers."""


class OracleQ3VLParams(Params):
    """Parameters of the ``oracle_q3vl`` SUT (:class:`~workloads.qwen3_vl.oracle.OracleQ3VLSUT`)."""

    mode: Literal["exact", "fenced", "parent"] = "exact"
    """``exact``: the ground truth (F1 = 1); ``fenced``: inside a json fence (unparsable, F1 = 0);
    ``parent``: the category without its last level (partial credit)."""
    max_batch: int = Field(64, ge=1)
    """Samples per Offline call."""
    max_inflight: int = Field(0, ge=0)
    """Concurrent Offline calls (0 = no cap)."""
