"""Accuracy of Wan2.2 text-to-video: check every video, then score it with VBench.

MLPerf's metric (``text_to_video/wan-2.2-t2v-a14b/run_evaluation.py``) runs VBench in its
standard mode on six dimensions and averages them:

    vbench_score = 100 * mean(subject_consistency, background_consistency, motion_smoothness,
                              dynamic_degree, appearance_style, scene)

Each VBench dimension score is in [0, 1]; the MLPerf reference score is 70.48 and the pass
threshold is 99 % of it, 69.7752. ``accuracy.txt`` starts with a Python-dict line
``{'vbench_score': X, ...}`` because the submission checker reads it with the regex
``.*'vbench_score':\\s([\\d.]+).*``.

The accuracy log entries are the SUT's responses: the mp4 bytes of each video (or, with the
SUT's ``response_format="path"``, the UTF-8 path of the mp4). They are written back as
``<prompt>-0.mp4`` (VBench's standard file name) into ``params["video_dir"]`` or a temporary
directory, every video's frame count, resolution and fps are checked, and VBench runs on that
directory. VBench is optional (it needs detectron2, decord and ~2 GB of checkpoints): when it or
its checkpoints are missing, :class:`VBenchUnavailable` says so in one line; nothing is
downloaded (VBench's own code would fetch missing checkpoints with wget, so they are checked
first).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from raybench.core.spec import AccuracyResult
from workloads.wan22.payload import check_video, is_mp4, video_filename

__all__ = [
    "DIMENSIONS",
    "TARGET_VBENCH_SCORE",
    "VBENCH_WEIGHTS",
    "VBenchUnavailable",
    "format_accuracy",
    "materialize_videos",
    "run_vbench",
    "score",
    "vbench_score",
]

#: The six VBench dimensions MLPerf averages.
DIMENSIONS: tuple[str, ...] = (
    "subject_consistency",
    "background_consistency",
    "motion_smoothness",
    "dynamic_degree",
    "appearance_style",
    "scene",
)

#: 99 % of the BF16 reference score 70.48.
TARGET_VBENCH_SCORE = 69.7752

#: Checkpoints VBench loads for each dimension, relative to ``$VBENCH_CACHE_DIR``
#: (default ``~/.cache/vbench``), in its local-checkpoint mode.
VBENCH_WEIGHTS: dict[str, tuple[str, ...]] = {
    "subject_consistency": (
        "dino_model/facebookresearch_dino_main",
        "dino_model/dino_vitbase16_pretrain.pth",
    ),
    "background_consistency": ("clip_model/ViT-B-32.pt",),
    "motion_smoothness": ("amt_model/amt-s.pth",),
    "dynamic_degree": ("raft_model/models/raft-things.pth",),
    "appearance_style": ("clip_model/ViT-B-32.pt",),
    "scene": ("caption_model/tag2text_swin_14m.pth",),
}


class VBenchUnavailable(RuntimeError):
    """VBench or one of its checkpoints is not installed on this machine."""


def _payload_to_file(qsl_idx: int, data: bytes, dest: Path) -> None:
    if is_mp4(data):
        tmp = dest.with_name(f".tmp-{os.getpid()}-{dest.name}")
        tmp.write_bytes(data)
        os.replace(tmp, dest)
        return
    try:
        src = Path(data.decode("utf-8"))
    except UnicodeDecodeError:
        src = None
    if src is None or not src.is_file():
        raise ValueError(
            f"wan22 accuracy entry qsl_idx={qsl_idx}: payload is neither mp4 bytes nor a path to a video"
        )
    if src.resolve() != dest.resolve():
        shutil.copyfile(src, dest)


def materialize_videos(
    entries: Sequence[tuple[int, bytes]], prompts: Sequence[str], video_dir: Path
) -> dict[int, Path]:
    """Write each logged video as ``video_dir/<prompt>-0.mp4``.

    The first entry of a ``qsl_idx`` wins (a performance-mode log may repeat samples).

    Returns:
        qsl_idx -> video path.

    Raises:
        ValueError: for an out-of-range ``qsl_idx`` or a payload that is not a video.
    """
    video_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[int, Path] = {}
    for qsl_idx, data in entries:
        idx = int(qsl_idx)
        if idx in paths:
            continue
        if not 0 <= idx < len(prompts):
            raise ValueError(f"wan22 accuracy entry qsl_idx={idx} out of range [0, {len(prompts)})")
        dest = video_dir / video_filename(prompts[idx])
        _payload_to_file(idx, bytes(data), dest)
        paths[idx] = dest
    return paths


def _vbench_cache_dir(params: Mapping[str, Any]) -> Path:
    raw = params.get("vbench_cache_dir") or os.environ.get("VBENCH_CACHE_DIR") or "~/.cache/vbench"
    return Path(str(raw)).expanduser()


def _vbench_installed() -> bool:
    return importlib.util.find_spec("vbench") is not None


def run_vbench(
    video_dir: Path, params: Mapping[str, Any], dimensions: Sequence[str] = DIMENSIONS
) -> dict[str, float]:
    """Run VBench (standard mode, local checkpoints) on ``video_dir``.

    Params:
        vbench_cache_dir: checkpoint directory (default ``$VBENCH_CACHE_DIR`` or ``~/.cache/vbench``).
        vbench_full_info: VBench's prompt/dimension JSON (default: the one shipped in the package).
        vbench_device: ``"cuda"`` or ``"cpu"`` (default: cuda when available).

    Returns:
        dimension -> VBench average score in [0, 1].

    Raises:
        VBenchUnavailable: VBench not importable or checkpoints missing (nothing is downloaded).
        RuntimeError: VBench scored no video for a dimension (prompts are not VBench prompts).
    """
    if not _vbench_installed():
        raise VBenchUnavailable(
            "VBench is not installed (pip install vbench, see workloads/wan22/README.md); "
            "set the workload param vbench=false to only check the videos"
        )
    cache = _vbench_cache_dir(params)
    missing = sorted(
        {str(cache / rel) for d in dimensions for rel in VBENCH_WEIGHTS[d] if not (cache / rel).exists()}
    )
    if missing:
        raise VBenchUnavailable(
            f"VBench checkpoints missing (set vbench_cache_dir or VBENCH_CACHE_DIR): {', '.join(missing)}"
        )
    # VBench reads VBENCH_CACHE_DIR when vbench.utils is first imported; set both ways.
    os.environ["VBENCH_CACHE_DIR"] = str(cache)
    import vbench

    utils = sys.modules.get("vbench.utils")
    if utils is not None and hasattr(utils, "CACHE_DIR"):
        utils.CACHE_DIR = str(cache)
    full_info = params.get("vbench_full_info") or Path(vbench.__file__).parent / "VBench_full_info.json"
    device = params.get("vbench_device")
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory(prefix="raybench-vbench-") as out:
        bench = vbench.VBench(device, str(full_info), out)
        bench.evaluate(
            videos_path=str(video_dir),
            name="wan22",
            dimension_list=list(dimensions),
            local=True,
            mode="vbench_standard",
        )
        results = json.loads((Path(out) / "wan22_eval_results.json").read_text(encoding="utf-8"))
    scores: dict[str, float] = {}
    for d in dimensions:
        value = results.get(d)
        if not isinstance(value, list) or len(value) < 2 or not value[1]:
            raise RuntimeError(f"VBench scored no video for {d}: are the prompts VBench prompts?")
        scores[d] = float(value[0])
    return scores


def vbench_score(dimension_scores: Mapping[str, float]) -> float:
    """``100 * mean`` of the dimension scores (MLPerf reports VBench in percent)."""
    if not dimension_scores:
        raise ValueError("no VBench dimension scores to average")
    return 100.0 * sum(dimension_scores.values()) / len(dimension_scores)


def format_accuracy(metrics: Mapping[str, float], note: str) -> str:
    """``accuracy.txt``: a dict line the checker's regex reads, then a human note."""
    body = ", ".join(f"'{k}': {v:.4f}" if isinstance(v, float) else f"'{k}': {v}" for k, v in metrics.items())
    return "{" + body + "}\n" + note + "\n"


def score(entries: Sequence[tuple[int, bytes]], library: Any, params: Mapping[str, Any]) -> AccuracyResult:
    """Check the logged videos and compute the VBench score.

    Params (workload):
        video_dir: where to keep the videos (default: a temporary directory, removed after).
        vbench: run VBench (default: yes for a prompts file, no for the built-in demo prompts,
            which VBench's standard mode would not recognise on random-weight videos anyway).
        target: minimum ``vbench_score`` (default 69.7752).
        vbench_cache_dir, vbench_full_info, vbench_device: see :func:`run_vbench`.

    Raises:
        ValueError: a payload is not a video, or a video has the wrong frames/size/fps.
        VBenchUnavailable: VBench requested but not installed or its checkpoints are missing.
    """
    use_vbench = params.get("vbench")
    if use_vbench is None:
        use_vbench = not getattr(library, "is_demo", False)
    target = float(params.get("target") or TARGET_VBENCH_SCORE)
    keep = params.get("video_dir")
    tmp = None if keep else tempfile.TemporaryDirectory(prefix="raybench-wan22-")
    try:
        video_dir = Path(str(keep)).expanduser() if keep else Path(tmp.name)  # type: ignore[union-attr]
        paths = materialize_videos(entries, library.prompts, video_dir)
        for path in paths.values():
            check_video(path, library.video)
        spec = library.video
        counts = {"videos": len(paths), "missing": library.total_count - len(paths)}
        checked = f"{len(paths)} videos checked ({spec.height}x{spec.width}, {spec.num_frames} frames, {spec.fps} fps)"
        if not use_vbench:
            return AccuracyResult(
                metrics=dict(counts),
                accuracy_txt=format_accuracy(
                    counts, f"{checked}; VBench not run (vbench=false or demo prompts)"
                ),
                passed=None,
            )
        dims = run_vbench(video_dir, params)
    finally:
        if tmp is not None:
            tmp.cleanup()
    total = vbench_score(dims)
    passed = total >= target and counts["missing"] == 0
    metrics: dict[str, Any] = {"vbench_score": total, **dims, **counts}
    verdict = "PASS" if passed else "FAIL"
    note = f"{checked}; vbench_score {total:.4f} vs target {target:.4f}: {verdict}"
    return AccuracyResult(
        metrics=metrics,
        accuracy_txt=format_accuracy(metrics, note),
        passed=passed,
        targets={"vbench_score": target},
    )
