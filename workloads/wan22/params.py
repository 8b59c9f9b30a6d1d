"""Parameters of the Wan2.2 text-to-video workload."""

from __future__ import annotations

from pydantic import Field

from raybench.core.spec import Params

__all__ = ["Wan22Params"]


class Wan22Params(Params):
    """Parameters of the wan22 workload (``workload.params``)."""

    prompts: str | None = None
    """Path of ``vbench_prompts.txt`` (wins over ``data_dir``)."""
    data_dir: str | None = None
    """Directory with ``vbench_prompts.txt`` and ``fixed_latent.pt`` (``None`` = built-in demo)."""
    count: int | None = Field(None, ge=1)
    """Use only the first N prompts."""
    performance_count: int | None = Field(None, ge=1)
    """QSL performance sample count (``None`` = all prompts; mlperf.conf: 248, checker minimum 50)."""
    height: int | None = Field(None, ge=1)
    """Expected video height (``None`` = 720, demo 32)."""
    width: int | None = Field(None, ge=1)
    """Expected video width (``None`` = 1280, demo 32)."""
    num_frames: int | None = Field(None, ge=1)
    """Expected frames per video (``None`` = 81, demo 9)."""
    fps: int | None = Field(None, ge=1)
    """Expected frames per second (``None`` = 16)."""
    video_dir: str | None = None
    """Keep the scored videos here (``None`` = a temporary directory)."""
    vbench: bool | None = None
    """Run VBench (``None`` = for a prompts file, not for the demo prompts)."""
    target: float = 69.7752
    """Minimum VBench score (99 % of 70.48)."""
    vbench_cache_dir: str | None = None
    """VBench checkpoints (``None`` = ``$VBENCH_CACHE_DIR`` or ``~/.cache/vbench``)."""
    vbench_full_info: str | None = None
    """VBench's ``VBench_full_info.json`` (``None`` = the one shipped with VBench)."""
    vbench_device: str | None = None
    """Device VBench runs on (``None`` = its default)."""
