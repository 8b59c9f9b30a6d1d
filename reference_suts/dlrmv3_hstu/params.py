"""Parameters of the dlrmv3_hstu SUT (pydantic only; see ``sut.py`` for what they do)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from raybench.core.spec import Params

__all__ = ["DLRMv3HSTUParams", "DLRMv3ReferenceParams", "ReferenceModelParams"]


class _ServingParams(Params):
    """What both DLRMv3 SUTs share: placement, streaming gate, KV-cache paths, batching."""

    n_shards: int = Field(1, ge=1)
    """Row-wise shards of the item table (local, or the number of actors on Ray)."""
    embedding_actors: int | None = Field(None, ge=0)
    """Shards as shared Ray actors (``None`` = ``n_shards`` inside a Ray replica, else local; 0 = local)."""
    embedding_actor_options: dict[str, Any] = Field(default_factory=dict)
    """Ray options of each shard actor (``num_cpus`` 0 by default), e.g. ``{"resources": {"emb_host": 1}}``
    to put the shards on CPU hosts."""
    global_order: bool | None = None
    """One streaming scheduler actor shared by all replicas, strict rule (``None`` = when inside Ray);
    else one local scheduler per SUT instance, local rule (see ``scheduler.py``)."""
    run_id: str | None = None
    """Overrides the Ray job id in shared-actor names."""
    order_log: str | None = None
    """CSV the scheduler appends ``seq,phase,ts_idx,index,client,granted_ns,released_ns`` to (``seq`` = plan
    position)."""
    microbatch: int = Field(0, ge=0)
    """M-FALCON candidate microbatch (0 = off)."""
    uih_cache: bool = False
    """Cross-request UIH KV cache."""
    uih_cache_max_bytes: int = Field(1 << 30, ge=0)
    """Bound of the UIH cache per replica."""
    streaming: bool = True
    """Check each sample against the streaming order and gate it by timestamp (else serve the
    samples as given, ungated). What is issued, ``repeats`` included, is the workload's
    (``workload.params.repeats``)."""
    max_batch: int = Field(8, ge=1)
    """Samples per Offline call."""
    max_inflight: int = Field(8, ge=0)
    """Concurrent Offline calls (0 = no cap)."""
    torch_threads: int = Field(1, ge=1)
    """Intra-op threads of the worker."""


class DLRMv3HSTUParams(_ServingParams):
    """Parameters of :class:`~reference_suts.dlrmv3_hstu.sut.DLRMv3HSTUSUT`."""

    config: Literal["tiny", "small", "reference"] = "tiny"
    """Model config for a random init sized to the dataset (real runs: ``checkpoint``)."""
    checkpoint: str | None = None
    """``.pt`` written by ``scripts/train_dlrmv3.py`` (overrides ``config``)."""
    seed: int = 0
    """Seed of the random init."""
    device: str = "auto"
    """Dense forward: ``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N`` (checked for
    presence when the SUT starts, on its node)."""

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip().lower()):
            raise ValueError(f"{value!r} is not one of auto, cpu, cuda, cuda:N")
        return value


class ReferenceModelParams(Params):
    """Sizes of the reference model; the defaults are MLPerf's (``recommendation/dlrm_v3/configs.py``
    and ``DlrmHSTUConfig``). Tests use small values; a real checkpoint needs the defaults."""

    max_seq_len: int = Field(16384, ge=2)
    """Sequence budget; history kept = ``max_seq_len - max_num_candidates - 1`` (the first items)."""
    max_num_candidates: int = Field(32, ge=0)
    """Training candidates (only enters the history budget, as in the reference loader)."""
    max_num_candidates_inference: int = Field(2048, ge=1)
    """Candidates scored per request (the first ones)."""
    num_heads: int = Field(4, ge=1)
    """``hstu_num_heads``."""
    attn_linear_dim: int = Field(128, ge=1)
    """``hstu_attn_linear_dim`` (value/u dim per head)."""
    attn_qk_dim: int = Field(128, ge=1)
    """``hstu_attn_qk_dim``."""
    num_layers: int = Field(5, ge=1)
    """``hstu_attn_num_layers``."""
    table_dim: int = Field(512, ge=1)
    """``hstu_embedding_table_dim`` (all three tables)."""
    preprocessor_hidden_dim: int = Field(256, ge=1)
    """``hstu_preprocessor_hidden_dim``."""
    transducer_dim: int = Field(512, ge=1)
    """``hstu_transducer_embedding_dim``."""
    action_weights: tuple[int, ...] = (1, 2, 4, 8, 16)
    """``action_weights`` (bit per rating 1..5)."""
    action_embedding_dim: int = Field(8, ge=1)
    """Action embedding width per action type."""
    contextual_max_len: int = Field(1, ge=1, le=1)
    """Contextual tokens (``user_id``: 1)."""
    contextual_min_uih_len: int = Field(20, ge=0)
    """``contextual_feature_to_min_uih_length['user_id']``."""
    num_position_buckets: int = Field(8192, ge=2)
    """Position table rows."""
    num_time_buckets: int = Field(2048, ge=1)
    """Time table rows - 1."""
    item_rows: int = Field(1_000_000_000, ge=1)
    """``item_id`` table rows (``HASH_SIZE``)."""
    category_rows: int = Field(128, ge=1)
    """``item_category_id`` table rows."""
    user_rows: int = Field(10_000_000, ge=1)
    """``user_id`` table rows."""
    mlp_hidden: int = Field(512, ge=1)
    """Width of the item tower and prediction MLPs (512 in the reference code)."""
    num_tasks: int = Field(1, ge=1, le=1)
    """Tasks (``rating``, binary)."""
    time_duration_features: tuple[tuple[int, int], ...] = ((3600, 24), (86400, 7))
    """Postprocessor time features ``(period seconds, units per period)``."""


class DLRMv3ReferenceParams(_ServingParams):
    """Parameters of :class:`~reference_suts.dlrmv3_hstu.reference_sut.DLRMv3ReferenceSUT`."""

    checkpoint: str | None = Field(None, validate_default=True)
    """Reference checkpoint directory holding ``non_sparse.ckpt`` and ``sparse/`` (required)."""
    arch: ReferenceModelParams = Field(default_factory=ReferenceModelParams)
    """Model sizes (defaults: the reference's); ``model.json`` of a script-made checkpoint."""
    device: str = "cpu"
    """Dense forward: ``cpu`` (default), ``cuda``, ``cuda:N`` or ``auto`` (checked when the SUT starts;
    the CUDA path is not exercised by the tests: no GPU here)."""

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip().lower()):
            raise ValueError(f"{value!r} is not one of auto, cpu, cuda, cuda:N")
        return value

    @field_validator("checkpoint")
    @classmethod
    def _required(cls, value: str | None) -> str:
        if not value:
            raise ValueError("required (the directory holding non_sparse.ckpt and sparse/; "
                             "scripts/make_dlrmv3_reference_checkpoint.py writes a tiny one)")
        return value
