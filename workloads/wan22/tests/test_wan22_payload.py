"""mp4 writing, reading and checking (OpenCV)."""

from __future__ import annotations

import numpy as np
import pytest

from workloads.wan22.payload import (
    DEMO_VIDEO,
    MLPERF_VIDEO,
    VideoInfo,
    check_video,
    encode_mp4,
    is_mp4,
    probe_mp4,
    read_mp4,
    to_uint8,
    video_filename,
    write_mp4,
)


def gray_video(value: int = 128, frames: int = 9, size: int = 32) -> np.ndarray:
    return np.full((frames, size, size, 3), value, dtype=np.uint8)


def test_to_uint8_matches_diffusers_export_conversion():
    frames = (
        np.array([0.0, 0.5, 1.0, 1.2, -0.1, 0.999], dtype=np.float32)
        .reshape(1, 1, 1, 6, 1)
        .repeat(3, axis=-1)
    )
    out = to_uint8(frames)  # batch axis of 1 dropped
    assert out.shape == (1, 1, 6, 3)
    assert out.dtype == np.uint8
    assert out[0, 0, :, 0].tolist() == [0, 127, 255, 255, 0, 254]


def test_to_uint8_rejects_wrong_shape():
    with pytest.raises(ValueError, match=r"\(T, H, W, 3\)"):
        to_uint8(np.zeros((9, 32, 32)))


def test_write_and_probe_roundtrip(tmp_path):
    path = write_mp4(gray_video(128), tmp_path / "sub" / "v.mp4", fps=16)
    assert path == tmp_path / "sub" / "v.mp4"
    assert list(path.parent.iterdir()) == [path]  # no temp file left behind
    assert probe_mp4(path) == VideoInfo(num_frames=9, height=32, width=32, fps=16.0)
    frames, fps = read_mp4(path)
    assert frames.shape == (9, 32, 32, 3)
    assert fps == 16.0
    # mp4v is lossy (and goes through YUV 4:2:0): a flat gray video decodes to one flat color
    # within a few levels of 128 (OpenCV 5 gives (124, 126, 123))
    assert (frames == frames[0, 0, 0]).all()
    assert int(np.abs(frames.astype(int) - 128).max()) <= 6


def test_encode_mp4_bytes_equal_written_file(tmp_path):
    data = encode_mp4(gray_video(50), fps=16)
    assert is_mp4(data)
    assert not is_mp4(b"/tmp/a cat-0.mp4")
    written = write_mp4(gray_video(50), tmp_path / "v.mp4", fps=16).read_bytes()
    assert data == written


def test_check_video_names_every_wrong_field(tmp_path):
    path = write_mp4(gray_video(), tmp_path / "v.mp4", fps=8)
    with pytest.raises(ValueError) as err:
        check_video(path, MLPERF_VIDEO)
    msg = str(err.value)
    assert str(path) in msg
    assert "num_frames 9 != 81" in msg
    assert "resolution 32x32 != 720x1280" in msg
    assert "fps 8 != 16" in msg


def test_check_video_accepts_matching_spec(tmp_path):
    path = write_mp4(gray_video(), tmp_path / "v.mp4", fps=16)
    assert check_video(path, DEMO_VIDEO) == VideoInfo(9, 32, 32, 16.0)


def test_missing_and_undecodable_videos(tmp_path):
    with pytest.raises(FileNotFoundError, match="video not found"):
        probe_mp4(tmp_path / "nope.mp4")
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"not a video")
    with pytest.raises(ValueError, match="bad.mp4"):
        probe_mp4(bad)


def test_video_filename_is_vbench_standard_name():
    assert video_filename("a cat playing in park") == "a cat playing in park-0.mp4"
    assert video_filename("a/b", 3) == "a_b-3.mp4"
