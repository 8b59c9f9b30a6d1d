"""Parameters of the DLRMv3 workload."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator

from raybench.core.spec import Params

__all__ = ["DLRMv3Params"]


class DLRMv3Params(Params):
    """Parameters of the DLRMv3 workload (``workload.params``)."""

    data_dir: str | None = None
    """A generated dataset (``None`` = generate ``preset`` into the cache on first use)."""
    preset: Literal["tiny", "small", "reference"] = "tiny"
    """Generator preset of the demo dataset; only ``tiny`` and ``small`` can be generated here."""
    seed: int | None = None
    """Generator seed (``None`` = the preset's, 1001)."""
    shards: list[int] | None = None
    """Load only these dataset shards (e.g. ``[0]``, the reference's sampled subset)."""
    order_seed: int = 123
    """Seed of the within-timestamp shuffle (reference ``numpy_rand_seed``)."""
    max_requests_per_ts: int | None = Field(None, ge=1)
    """Keep only the first N requests of each timestamp."""
    repeats: int = Field(1, ge=1)
    """Times each timestamp's requests are issued before the next timestamp (reference
    ``num_repeats``); shapes the library's ``issue_order`` (performance runs only: accuracy runs
    issue every request once)."""
    reference_metrics: str | None = None
    """JSON written by ``scripts/train_dlrmv3.py`` (``None`` = MLPerf's reference metrics)."""

    @field_validator("preset")
    @classmethod
    def _generatable(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("data_dir") and value not in ("tiny", "small"):
            raise ValueError(f"{value!r} cannot be generated here; set data_dir")
        return value
