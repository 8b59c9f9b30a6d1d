"""The Wan2.2 text-to-video sample library: one text prompt per sample.

The MLPerf dataset is ``vbench_prompts.txt``: 248 VBench prompts, one per line (blank lines and
surrounding spaces dropped, as the reference's ``load_prompts`` does). ``qsl_idx`` is the line
index among the non-blank lines. Accuracy mode generates all 248; the performance sample count
is the whole file too (mlperf.conf sets ``wan-2.2-t2v-a14b.*.performance_sample_count_override =
248``; the submission checker requires at least 50).

Without a prompts file the library serves a small built-in list of VBench prompts, so the demo
runs with no data on disk (prompts are tiny, so nothing is written to a cache).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from workloads.wan22.payload import DEMO_VIDEO, MLPERF_VIDEO, VideoSpec

__all__ = ["DEMO_PROMPTS", "PROMPTS_FILENAME", "PromptLibrary", "load_library", "read_prompts"]

#: File name of the prompt list inside ``data_dir`` (as in the MLPerf reference's ``data/``).
PROMPTS_FILENAME = "vbench_prompts.txt"

#: Built-in demo prompts: a few VBench prompts covering its dimensions (style, scene, motion).
DEMO_PROMPTS: tuple[str, ...] = (
    "a person swimming in ocean",
    "a cat playing in park",
    "a car turning a corner",
    "a horse galloping across an open field",
    "An astronaut flying in space, oil painting",
    "The bund Shanghai, pixel art",
    "lighthouse",
    "waterfall",
)


def read_prompts(path: str | os.PathLike[str]) -> list[str]:
    """Read a prompts file: one prompt per line, stripped, blank lines skipped.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it holds no prompt.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise FileNotFoundError(f"wan22 prompts file not found: {p}")
    prompts = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not prompts:
        raise ValueError(f"wan22 prompts file {p} contains no prompt")
    return prompts


class PromptLibrary:
    """MLPerf QSL over text prompts; ``get(i)`` returns the prompt string.

    Attributes:
        name: ``"wan22"``.
        prompts: every prompt, in ``qsl_idx`` order.
        video: the :class:`VideoSpec` every generated video must match.
        source: the prompts file, or ``None`` for the built-in demo list.

    Example:
        >>> lib = PromptLibrary(["a cat", "a dog"])
        >>> lib.load([1]); lib.get(1)
        'a dog'
    """

    name = "wan22"

    def __init__(
        self,
        prompts: Sequence[str],
        *,
        performance_count: int | None = None,
        video: VideoSpec = MLPERF_VIDEO,
        source: Path | None = None,
    ) -> None:
        if not prompts:
            raise ValueError("wan22 library needs at least one prompt")
        self.prompts: tuple[str, ...] = tuple(prompts)
        n = len(self.prompts)
        pc = n if performance_count is None else int(performance_count)
        if not 1 <= pc <= n:
            raise ValueError(f"wan22 param performance_count must be in [1, {n}], got {performance_count}")
        self._performance_count = pc
        self.video = video
        self.source = source
        self._loaded: set[int] = set()

    @property
    def total_count(self) -> int:
        return len(self.prompts)

    @property
    def performance_count(self) -> int:
        return self._performance_count

    @property
    def is_demo(self) -> bool:
        """True for the built-in demo prompts (no prompts file)."""
        return self.source is None

    def _check(self, index: int) -> int:
        i = int(index)
        if not 0 <= i < len(self.prompts):
            raise IndexError(f"wan22 sample index {index} out of range [0, {len(self.prompts)})")
        return i

    def load(self, indices: Sequence[int]) -> None:
        """Mark samples as loaded (prompts are always in memory; this validates the indices)."""
        self._loaded.update(self._check(i) for i in indices)

    def unload(self, indices: Sequence[int]) -> None:
        for i in indices:
            self._loaded.discard(int(i))

    def get(self, index: int) -> str:
        """The prompt of sample ``index``."""
        return self.prompts[self._check(index)]


def _video_spec(params: Mapping[str, Any], default: VideoSpec) -> VideoSpec:
    values = {}
    for key in ("height", "width", "num_frames", "fps"):
        raw = params.get(key)
        value = getattr(default, key) if raw is None else raw
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ValueError(f"wan22 param {key} must be a positive integer, got {raw!r}")
        values[key] = value
    return VideoSpec(**values)


def load_library(params: Mapping[str, Any]) -> PromptLibrary:
    """Build the library from workload params.

    Params:
        prompts: path of a prompts file (wins over ``data_dir``).
        data_dir: directory holding ``vbench_prompts.txt`` (and ``fixed_latent.pt``, which the
            SUT reads). With neither, the built-in :data:`DEMO_PROMPTS` are used.
        count: keep only the first ``count`` prompts.
        performance_count: QSL performance sample count (default: all prompts).
        height, width, num_frames, fps: the expected video; default :data:`MLPERF_VIDEO` for a
            prompts file and :data:`DEMO_VIDEO` for the demo (the tiny pipeline's output).

    Raises:
        FileNotFoundError / ValueError: naming the bad file or param.
    """
    source: Path | None = None
    if params.get("prompts"):
        source = Path(str(params["prompts"])).expanduser()
    elif params.get("data_dir"):
        source = Path(str(params["data_dir"])).expanduser() / PROMPTS_FILENAME
    prompts = list(DEMO_PROMPTS) if source is None else read_prompts(source)
    count = params.get("count")
    if count is not None:
        if not isinstance(count, int) or isinstance(count, bool) or not 1 <= count <= len(prompts):
            raise ValueError(f"wan22 param count must be an integer in [1, {len(prompts)}], got {count!r}")
        prompts = prompts[:count]
    video = _video_spec(params, DEMO_VIDEO if source is None else MLPERF_VIDEO)
    return PromptLibrary(
        prompts, performance_count=params.get("performance_count"), video=video, source=source
    )
