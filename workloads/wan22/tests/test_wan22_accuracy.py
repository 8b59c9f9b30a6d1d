"""Accuracy: video materialisation + checks, the VBench error paths, and the score formula.

VBench itself is not installed here (it needs detectron2, decord and ~2 GB of checkpoints), so
the scoring path runs against a scripted stand-in module that records how it was called and
writes a results file in VBench's format ``{dimension: [average, [per-video results]]}``.
"""

from __future__ import annotations

import importlib.machinery
import json
import re
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from workloads.wan22 import accuracy
from workloads.wan22.accuracy import DIMENSIONS, VBENCH_WEIGHTS, VBenchUnavailable, score, vbench_score
from workloads.wan22.dataset import PromptLibrary, load_library
from workloads.wan22.payload import DEMO_VIDEO, encode_mp4, write_mp4

CHECKER_REGEX = r".*'vbench_score':\s([\d.]+).*"  # submission checker ACC_PATTERN["vbench_score"]
PROMPTS = (
    "a cat playing in park",
    "a dog running happily",
    "lighthouse",
    "waterfall",
    "The bund Shanghai, pixel art",
)


def mp4(value: int, frames: int = 9, fps: int = 16) -> bytes:
    return encode_mp4(np.full((frames, 32, 32, 3), value, dtype=np.uint8), fps=fps)


@pytest.fixture()
def library() -> PromptLibrary:
    # a "real" (file-backed) library, so VBench is on by default; demo-sized videos
    return PromptLibrary(PROMPTS, video=DEMO_VIDEO, source=Path("/data/vbench_prompts.txt"))


@pytest.fixture()
def entries() -> list[tuple[int, bytes]]:
    return [(i, mp4(40 * i)) for i in range(5)]


def test_demo_checks_videos_without_vbench(tmp_path):
    lib = load_library({})
    result = score([(1, mp4(10)), (0, mp4(20)), (1, mp4(30))], lib, {"video_dir": str(tmp_path)})
    assert result.metrics == {"videos": 2, "missing": 6}
    assert result.passed is None
    assert result.accuracy_txt.splitlines()[0] == "{'videos': 2, 'missing': 6}"
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "a cat playing in park-0.mp4",
        "a person swimming in ocean-0.mp4",
    ]
    # first entry of a repeated qsl_idx wins
    assert (tmp_path / "a cat playing in park-0.mp4").read_bytes() == mp4(10)


def test_vbench_not_installed_is_one_clear_line(library, entries, monkeypatch):
    monkeypatch.setattr(accuracy, "_vbench_installed", lambda: False)
    with pytest.raises(VBenchUnavailable) as err:
        score(entries, library, {})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("VBench is not installed")
    assert "vbench=false" in msg


@pytest.mark.skipif(accuracy._vbench_installed(), reason="vbench is installed on this machine")
def test_vbench_really_missing_here(library, entries):
    with pytest.raises(VBenchUnavailable, match="VBench is not installed"):
        score(entries, library, {})


def fake_vbench(monkeypatch, averages: dict[str, float], calls: list[dict]) -> None:
    mod = types.ModuleType("vbench")
    mod.__spec__ = importlib.machinery.ModuleSpec("vbench", None)
    mod.__file__ = "/fake/vbench/__init__.py"

    class VBench:
        def __init__(self, device, full_info_dir, output_path):
            self.args = {"device": device, "full_info": full_info_dir}
            self.out = Path(output_path)

        def evaluate(self, videos_path, name, dimension_list=None, local=False, mode="vbench_standard", **kw):
            videos = sorted(p.name for p in Path(videos_path).iterdir())
            calls.append(
                {
                    **self.args,
                    "videos": videos,
                    "name": name,
                    "dims": list(dimension_list),
                    "local": local,
                    "mode": mode,
                }
            )
            results = {
                d: [averages[d], [{"video_path": v, "video_results": averages[d]} for v in videos]]
                for d in dimension_list
            }
            (self.out / f"{name}_eval_results.json").write_text(json.dumps(results))

    mod.VBench = VBench
    monkeypatch.setitem(sys.modules, "vbench", mod)
    monkeypatch.setenv("VBENCH_CACHE_DIR", "/unused")  # run_vbench sets it; restored after the test


def touch_weights(root: Path) -> None:
    for rels in VBENCH_WEIGHTS.values():
        for rel in rels:
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"")


def test_missing_checkpoints_are_listed_and_not_downloaded(library, entries, monkeypatch, tmp_path):
    calls: list[dict] = []
    fake_vbench(monkeypatch, {}, calls)
    (tmp_path / "clip_model").mkdir()
    (tmp_path / "clip_model" / "ViT-B-32.pt").write_bytes(b"")
    with pytest.raises(VBenchUnavailable) as err:
        score(entries, library, {"vbench_cache_dir": str(tmp_path)})
    msg = str(err.value)
    assert "\n" not in msg
    assert msg.startswith("VBench checkpoints missing")
    for rel in (
        "amt_model/amt-s.pth",
        "raft_model/models/raft-things.pth",
        "caption_model/tag2text_swin_14m.pth",
        "dino_model/dino_vitbase16_pretrain.pth",
    ):
        assert str(tmp_path / rel) in msg
    assert "ViT-B-32.pt" not in msg
    assert calls == []


# Five hand-checked dimension averages: sum 4.21, mean 0.701666..., x100 = 70.1667 >= 69.7752.
AVERAGES = {
    "subject_consistency": 0.95,
    "background_consistency": 0.96,
    "motion_smoothness": 0.98,
    "dynamic_degree": 0.5,
    "appearance_style": 0.22,
    "scene": 0.6,
}


def test_vbench_score_passes(library, entries, monkeypatch, tmp_path):
    calls: list[dict] = []
    fake_vbench(monkeypatch, AVERAGES, calls)
    touch_weights(tmp_path / "ckpt")
    result = score(entries, library, {"vbench_cache_dir": str(tmp_path / "ckpt"), "vbench_device": "cpu"})
    assert result.metrics["vbench_score"] == pytest.approx(70.1666667)
    assert result.metrics["videos"] == 5 and result.metrics["missing"] == 0
    assert result.passed is True
    assert result.targets == {"vbench_score": 69.7752}
    first = result.accuracy_txt.splitlines()[0]
    assert re.match(CHECKER_REGEX, first).group(1) == "70.1667"
    assert first.startswith("{'vbench_score': 70.1667, 'subject_consistency': 0.9500,")
    assert result.accuracy_txt.splitlines()[1].endswith("vbench_score 70.1667 vs target 69.7752: PASS")
    [call] = calls
    assert call["dims"] == list(DIMENSIONS)
    assert call["local"] is True and call["mode"] == "vbench_standard" and call["device"] == "cpu"
    assert call["full_info"] == str(Path("/fake/vbench/VBench_full_info.json"))
    assert call["videos"] == sorted(f"{p}-0.mp4" for p in PROMPTS)
    assert sys.modules.get("vbench") is not None


def test_vbench_score_fails_below_target_or_with_missing_samples(library, entries, monkeypatch, tmp_path):
    fake_vbench(monkeypatch, {**AVERAGES, "dynamic_degree": 0.25}, [])  # mean 3.96/6 -> 66.0
    touch_weights(tmp_path)
    params = {"vbench_cache_dir": str(tmp_path), "vbench_device": "cpu"}
    low = score(entries, library, params)
    assert low.metrics["vbench_score"] == pytest.approx(66.0)
    assert low.passed is False
    assert low.accuracy_txt.splitlines()[1].endswith("FAIL")
    fake_vbench(monkeypatch, AVERAGES, [])
    partial = score(entries[:4], library, params)
    assert partial.metrics["missing"] == 1
    assert partial.passed is False


def test_vbench_score_formula():
    assert vbench_score({"a": 0.5, "b": 1.0}) == 75.0
    with pytest.raises(ValueError):
        vbench_score({})


def test_path_payload_is_copied(library, tmp_path):
    src = write_mp4(np.zeros((9, 32, 32, 3), np.uint8), tmp_path / "elsewhere.mp4", fps=16)
    out = tmp_path / "videos"
    result = score([(2, str(src).encode())], library, {"video_dir": str(out), "vbench": False})
    assert result.metrics == {"videos": 1, "missing": 4}
    assert (out / "lighthouse-0.mp4").read_bytes() == src.read_bytes()


def test_bad_payloads_and_videos(library, tmp_path):
    with pytest.raises(ValueError, match="qsl_idx=3: payload is neither mp4 bytes nor a path"):
        score([(3, b"\xff\xfe garbage")], library, {"vbench": False})
    with pytest.raises(ValueError, match="qsl_idx=9 out of range"):
        score([(9, mp4(0))], library, {"vbench": False})
    with pytest.raises(ValueError, match="num_frames 5 != 9"):
        score([(0, mp4(0, frames=5))], library, {"vbench": False})
    with pytest.raises(ValueError, match="fps 8 != 16"):
        score([(0, mp4(0, fps=8))], library, {"vbench": False})
