"""The wan22 response payload: mp4 videos (write, read and check them).

A SUT answers each prompt with the mp4 bytes of its video, or the UTF-8 path of the mp4 it wrote
(for runs whose accuracy log must stay small and whose scorer sees the same file system). The
MLPerf reference saves every generated video as ``<prompt>-0.mp4`` at 16 fps (the file name
VBench's standard mode looks for, :func:`video_filename`) and logs the mp4 bytes as the accuracy
payload, so that ``mlperf_log_accuracy.json`` holds encoded videos instead of raw frames (one
81x720x1280 RGB float video is ~900 MB raw, a few MB as mp4).

This module is the contract between SUTs (``reference_suts/diffusers_wan``) and the workload's
scorer: SUTs encode with :func:`to_uint8` / :func:`encode_mp4` / :func:`write_mp4` and import
nothing else of ``workloads.wan22``.

OpenCV (``cv2``) does the encoding with the ``mp4v`` codec, the same fallback diffusers'
``export_to_video`` uses when imageio is absent; it is imported lazily so that importing this
module stays cheap.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "DEMO_VIDEO",
    "MLPERF_VIDEO",
    "VideoInfo",
    "VideoSpec",
    "check_video",
    "encode_mp4",
    "is_mp4",
    "probe_mp4",
    "read_mp4",
    "to_uint8",
    "video_filename",
    "write_mp4",
]


@dataclass(frozen=True, slots=True)
class VideoSpec:
    """What every generated video must look like.

    Attributes:
        height: frame height in pixels.
        width: frame width in pixels.
        num_frames: frames per video.
        fps: frames per second stored in the container.
    """

    height: int
    width: int
    num_frames: int
    fps: int


#: The MLPerf v6.0 output: 81 frames of 720x1280 at 16 fps (5 s of video).
MLPERF_VIDEO = VideoSpec(height=720, width=1280, num_frames=81, fps=16)

#: The built-in demo's output (the tiny local pipeline): 9 frames of 32x32 at 16 fps. 9 frames =
#: 3 latent frames (Wan's VAE compresses time 4x, keeping the first frame), 32 px = 4 latent px.
DEMO_VIDEO = VideoSpec(height=32, width=32, num_frames=9, fps=16)


@dataclass(frozen=True, slots=True)
class VideoInfo:
    """What a decoded mp4 actually contains (frames counted by decoding, not from the header)."""

    num_frames: int
    height: int
    width: int
    fps: float


def video_filename(prompt: str, index: int = 0) -> str:
    """VBench's standard-mode file name for the ``index``-th video of ``prompt``: ``f"{prompt}-{index}.mp4"``.

    A ``/`` in a prompt would make a sub-directory, so it is replaced by ``_`` (no VBench prompt
    contains one).
    """
    return f"{prompt.replace('/', '_')}-{index}.mp4"


def to_uint8(frames: Any) -> np.ndarray:
    """Convert pipeline frames to ``uint8`` RGB ``(T, H, W, 3)``.

    Float frames in ``[0, 1]`` become ``floor(x * 255)`` (clipped), the conversion diffusers'
    ``export_to_video`` applies, so a video written here equals the reference's. A leading batch
    axis of size 1 is dropped; ``uint8`` input passes through.

    Raises:
        ValueError: when the array is not ``(T, H, W, 3)`` after dropping the batch axis.
    """
    arr = np.asarray(frames)
    if arr.ndim == 5 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 4 or arr.shape[-1] != 3:
        raise ValueError(f"video frames must have shape (T, H, W, 3), got {arr.shape}")
    if arr.dtype == np.uint8:
        return arr
    return (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255).astype(np.uint8)


def write_mp4(frames: Any, path: str | os.PathLike[str], fps: int) -> Path:
    """Encode ``frames`` (RGB, see :func:`to_uint8`) as an mp4 at ``fps`` and write it atomically.

    The video is encoded into a temporary file in the same directory, then renamed, so a reader
    never sees a half-written video.

    Returns:
        The final path.

    Raises:
        RuntimeError: when OpenCV cannot open an mp4 writer.
    """
    import cv2

    rgb = to_uint8(frames)
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(suffix=".mp4", prefix=".tmp-", dir=out.parent)
    os.close(fd)
    try:
        height, width = rgb.shape[1:3]
        writer = cv2.VideoWriter(tmp, cv2.VideoWriter_fourcc(*"mp4v"), float(fps), (width, height))
        if not writer.isOpened():
            raise RuntimeError(f"OpenCV cannot open an mp4 writer for {out}")
        try:
            for frame in rgb:
                writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
        finally:
            writer.release()
        os.replace(tmp, out)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return out


def encode_mp4(frames: Any, fps: int) -> bytes:
    """The bytes of the mp4 that :func:`write_mp4` would write."""
    with tempfile.TemporaryDirectory(prefix="raybench-mp4-") as tmp:
        return write_mp4(frames, Path(tmp) / "v.mp4", fps).read_bytes()


def is_mp4(data: bytes) -> bool:
    """Whether ``data`` starts like an ISO media file (an ``ftyp`` box at byte 4)."""
    return len(data) >= 12 and data[4:8] == b"ftyp"


def _open(path: Path) -> Any:
    import cv2

    if not path.is_file():
        raise FileNotFoundError(f"video not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise ValueError(f"cannot decode video {path}")
    return cap


def read_mp4(path: str | os.PathLike[str]) -> tuple[np.ndarray, float]:
    """Decode a video into ``uint8`` RGB frames ``(T, H, W, 3)`` and its fps.

    Raises:
        FileNotFoundError: when the file does not exist.
        ValueError: when it cannot be decoded or has no frame.
    """
    import cv2

    p = Path(path)
    cap = _open(p)
    try:
        fps = float(cap.get(cv2.CAP_PROP_FPS))
        frames = []
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB))
    finally:
        cap.release()
    if not frames:
        raise ValueError(f"video {p} has no decodable frame")
    return np.stack(frames), fps


def probe_mp4(path: str | os.PathLike[str]) -> VideoInfo:
    """Frame count (by decoding every frame: header counts can be estimates), size and fps of a video."""
    frames, fps = read_mp4(path)
    return VideoInfo(
        num_frames=int(frames.shape[0]), height=int(frames.shape[1]), width=int(frames.shape[2]), fps=fps
    )


def check_video(path: str | os.PathLike[str], spec: VideoSpec) -> VideoInfo:
    """Verify that a video has the frame count, resolution and fps of ``spec``.

    fps is compared to within 0.01 (containers store it as a rational).

    Returns:
        The probed :class:`VideoInfo`.

    Raises:
        ValueError: naming the file and every field that differs.
    """
    info = probe_mp4(path)
    wrong = []
    if info.num_frames != spec.num_frames:
        wrong.append(f"num_frames {info.num_frames} != {spec.num_frames}")
    if (info.height, info.width) != (spec.height, spec.width):
        wrong.append(f"resolution {info.height}x{info.width} != {spec.height}x{spec.width}")
    if abs(info.fps - spec.fps) > 0.01:
        wrong.append(f"fps {info.fps:g} != {spec.fps}")
    if wrong:
        raise ValueError(f"video {path}: " + "; ".join(wrong))
    return info
