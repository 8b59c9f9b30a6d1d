"""Parameters of the DLRMv3 workload."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from raybench.core.spec import Params

__all__ = ["DLRMv3Params"]


class DLRMv3Params(Params):
    """Parameters of the DLRMv3 workload (``workload.params``)."""

    layout: Literal["npz", "reference"] = "npz"
    """On-disk layout of ``data_dir``: ``npz`` (our generator's shards) or ``reference`` (the MLPerf
    reference's CSV files: ``0.csv``, ``offset.csv``, ``requests_per_ts.csv`` ..., e.g. the
    benchmark's ``sampled_data/``; read one user line at a time)."""
    data_dir: str | None = None
    """The dataset (``None`` = generate ``preset`` into the cache on first use; layout ``npz`` only)."""
    preset: Literal["tiny", "small", "reference"] = "tiny"
    """Generator preset of the demo dataset; only ``tiny`` and ``small`` can be generated here."""
    seed: int | None = None
    """Generator seed (``None`` = the preset's, 1001)."""
    shards: list[int] | None = None
    """Load only these dataset shards (e.g. ``[0]``, the reference's sampled subset)."""
    train_ts: int | None = Field(None, ge=1)
    """Layout ``reference``: train timestamps (``None`` = the directory's ``meta.json``, else 90)."""
    num_items: int | None = Field(None, ge=1)
    """Layout ``reference``: item catalogue size (``None`` = ``meta.json``, else 1,000,000,000)."""
    num_categories: int | None = Field(None, ge=1)
    """Layout ``reference``: item categories (``None`` = ``meta.json``, else 128)."""
    dataset_percentage: float = Field(1.0, gt=0.0, le=1.0)
    """Keep the first ``int(count * p)`` requests (by user id) of each inference timestamp
    (reference ``--dataset-percentage``: MLPerf's 349,823-request set is 0.01 of the full set's
    requests, its 34,996-request accuracy set 0.001)."""
    order: Literal["numpy", "reference"] | None = None
    """Within-timestamp shuffle: ``reference`` = Python ``random.Random(order_seed).shuffle`` per
    timestamp (the reference's exact order), ``numpy`` = a numpy permutation per timestamp
    (``None`` = ``reference`` for layout ``reference``, ``numpy`` for ``npz``)."""
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

    @model_validator(mode="after")
    def _reference_needs_data_dir(self) -> DLRMv3Params:
        if self.layout == "reference" and not self.data_dir:
            raise ValueError("data_dir is required with layout 'reference' (the directory holding offset.csv)")
        return self

    @field_validator("train_ts", "num_items", "num_categories", "shards")
    @classmethod
    def _layout_only(cls, value: object, info: ValidationInfo) -> object:
        want = "npz" if info.field_name == "shards" else "reference"
        if value is not None and info.data.get("layout", "npz") != want:
            raise ValueError(f"applies to layout {want!r} only")
        return value

    @field_validator("preset")
    @classmethod
    def _generatable(cls, value: str, info: ValidationInfo) -> str:
        if not info.data.get("data_dir") and value not in ("tiny", "small"):
            raise ValueError(f"{value!r} cannot be generated here; set data_dir")
        return value
