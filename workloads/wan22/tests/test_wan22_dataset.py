"""Prompt sample library."""

from __future__ import annotations

import subprocess
import sys

import pytest

from workloads.wan22 import WORKLOAD
from workloads.wan22.dataset import DEMO_PROMPTS, PROMPTS_FILENAME, PromptLibrary, load_library, read_prompts
from workloads.wan22.payload import DEMO_VIDEO, MLPERF_VIDEO, VideoSpec


def test_workload_spec():
    assert WORKLOAD.name == "wan22"
    assert WORKLOAD.mlperf_model == "wan-2.2-t2v-a14b"
    assert WORKLOAD.scenarios == ("SingleStream", "Offline")
    assert WORKLOAD.default_sut == "diffusers_wan"
    assert WORKLOAD.params["target"] == 69.7752


def test_import_is_cheap():
    code = (
        "import sys, workloads.wan22, reference_suts.diffusers_wan;"
        "heavy = [m for m in ('torch', 'diffusers', 'cv2', 'transformers') if m in sys.modules];"
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_read_prompts_strips_and_skips_blank_lines(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("  a cat \n\n a dog\n   \nlighthouse", encoding="utf-8")
    assert read_prompts(f) == ["a cat", "a dog", "lighthouse"]


def test_demo_library():
    lib = load_library(dict(WORKLOAD.params))
    assert lib.is_demo
    assert lib.total_count == lib.performance_count == len(DEMO_PROMPTS) == 8
    assert lib.video == DEMO_VIDEO
    lib.load([0, 7])
    assert lib.get(7) == "waterfall"


def test_prompts_file_and_data_dir(tmp_path):
    (tmp_path / PROMPTS_FILENAME).write_text("a cat\na dog\na bird\n", encoding="utf-8")
    lib = load_library({"data_dir": str(tmp_path)})
    assert not lib.is_demo
    assert lib.source == tmp_path / PROMPTS_FILENAME
    assert lib.prompts == ("a cat", "a dog", "a bird")
    assert lib.video == MLPERF_VIDEO
    other = tmp_path / "other.txt"
    other.write_text("x\ny\n", encoding="utf-8")
    lib2 = load_library({"data_dir": str(tmp_path), "prompts": str(other), "count": 1, "height": 64})
    assert lib2.prompts == ("x",)
    assert lib2.video == VideoSpec(height=64, width=1280, num_frames=81, fps=16)


def test_performance_count():
    assert PromptLibrary(["a", "b", "c"], performance_count=2).performance_count == 2
    with pytest.raises(ValueError, match="performance_count must be in \\[1, 3\\]"):
        PromptLibrary(["a", "b", "c"], performance_count=4)


@pytest.mark.parametrize(
    ("params", "exc", "match"),
    [
        (
            {"prompts": "/nonexistent/p.txt"},
            FileNotFoundError,
            "wan22 prompts file not found: /nonexistent/p.txt",
        ),
        ({"count": 0}, ValueError, "count must be an integer in \\[1, 8\\]"),
        ({"count": 9}, ValueError, "count must be an integer in \\[1, 8\\]"),
        ({"fps": 0}, ValueError, "param fps must be a positive integer"),
    ],
)
def test_bad_params(params, exc, match):
    with pytest.raises(exc, match=match):
        load_library(params)


def test_empty_prompts_file(tmp_path):
    f = tmp_path / "p.txt"
    f.write_text("\n  \n", encoding="utf-8")
    with pytest.raises(ValueError, match="contains no prompt"):
        load_library({"prompts": str(f)})


def test_index_out_of_range():
    lib = load_library({})
    with pytest.raises(IndexError, match="index 8 out of range"):
        lib.load([8])
    with pytest.raises(IndexError):
        lib.get(-1)
