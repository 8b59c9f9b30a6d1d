"""Parameters of the dlrmv3_hstu SUT (pydantic only; see ``sut.py`` for what they do)."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator

from raybench.core.spec import Params

__all__ = ["DLRMv3HSTUParams"]


class DLRMv3HSTUParams(Params):
    """Parameters of :class:`~reference_suts.dlrmv3_hstu.sut.DLRMv3HSTUSUT`."""

    config: Literal["tiny", "small", "reference"] = "tiny"
    """Model config for a random init sized to the dataset (real runs: ``checkpoint``)."""
    checkpoint: str | None = None
    """``.pt`` written by ``scripts/train_dlrmv3.py`` (overrides ``config``)."""
    seed: int = 0
    """Seed of the random init."""
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
    device: str = "auto"
    """Dense forward: ``auto`` (cuda if available), ``cpu``, ``cuda`` or ``cuda:N`` (checked for
    presence when the SUT starts, on its node)."""

    @field_validator("device")
    @classmethod
    def _device_name(cls, value: str) -> str:
        if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", value.strip().lower()):
            raise ValueError(f"{value!r} is not one of auto, cpu, cuda, cuda:N")
        return value
