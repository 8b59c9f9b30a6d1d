"""The Diffusers Wan2.2 SUT end to end on the tiny local pipeline (CPU, no Ray, no hub).

Tiny run: 32x32, 9 frames, 4 UniPC steps with CFG. With flow_shift 3 the timesteps are
[999, 900, 750, 500]; boundary 0.875 * 1000 = 875 sends 2 steps to each expert, and CFG runs
each expert twice per step (conditional + unconditional): 4 forward calls each.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

pytest.importorskip("diffusers")
pytest.importorskip("accelerate")
pytest.importorskip("cv2")

import torch  # noqa: E402

from raybench.core.protocols import Query, SUTContext  # noqa: E402
from raybench.core.spec import load_object  # noqa: E402
from raybench.registry import get_workload, make_library  # noqa: E402
from reference_suts.diffusers_wan import (  # noqa: E402
    MLPERF_PRESET,
    REFERENCE_NEGATIVE_PROMPT,
    SUT_SPEC,
    TINY_PRESET,
    resolve_params,
)
from reference_suts.diffusers_wan.sut import DiffusersWanSUT  # noqa: E402
from workloads.wan22.payload import DEMO_VIDEO, VideoInfo, is_mp4, probe_mp4, read_mp4  # noqa: E402

WORKLOAD = get_workload("wan22")

PROMPT = "a cat playing in park"


def params(**overrides) -> dict:
    """What the harness passes for the demo: SUT defaults < workload sut_params < user overrides."""
    return {**SUT_SPEC.params, **WORKLOAD.sut_params["diffusers_wan"], **overrides}


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch) -> Iterator[Path]:
    root = tmp_path_factory.getbasetemp() / "raybench-cache"  # shared: the tiny pipeline is built once
    monkeypatch.setenv("RAYBENCH_CACHE", str(root))
    threads = torch.get_num_threads()
    yield root
    torch.set_num_threads(threads)  # the tiny preset sets 1 thread process-wide


def ctx(mode: str = "AccuracyOnly", **workload_params) -> SUTContext:
    return SUTContext(workload="wan22", scenario="SingleStream", mode=mode, workload_params=workload_params)


def run(sut: DiffusersWanSUT, context: SUTContext, prompts: list[str], hooks: bool = False):
    """start, issue one query per prompt (SingleStream), stop; returns responses and expert call counts."""
    counts = {"transformer": 0, "transformer_2": 0}

    async def go():
        await sut.start(context)
        if hooks:
            for name in counts:
                getattr(sut.pipe, name).register_forward_hook(
                    lambda *_a, n=name: counts.__setitem__(n, counts[n] + 1)
                )
        out = []
        for i, prompt in enumerate(prompts):
            out += await sut.issue(Query(id=i, indices=[i], samples=[prompt]))
        await sut.stop()
        return out

    return asyncio.run(go()), counts


def test_demo_sut_params_are_the_tiny_pipeline():
    p = resolve_params(params())
    assert p == {"preset": "tiny", **TINY_PRESET}
    assert (p["model"], p["device"], p["generate_latent"]) == ("builtin:tiny", "cpu", True)
    assert (p["height"], p["width"], p["num_frames"], p["fps"]) == (
        DEMO_VIDEO.height,
        DEMO_VIDEO.width,
        DEMO_VIDEO.num_frames,
        DEMO_VIDEO.fps,
    )


def test_mlperf_preset_is_the_reference_and_overrides_win():
    p = resolve_params({**params(), "preset": "mlperf", "model": "/models/wan", "height": 480})
    assert p["model"] == "/models/wan"
    assert (p["height"], p["width"], p["num_frames"], p["fps"]) == (480, 1280, 81, 16)
    assert (
        p["num_inference_steps"],
        p["guidance_scale"],
        p["guidance_scale_2"],
        p["boundary_ratio"],
        p["seed"],
    ) == (
        20,
        4.0,
        3.0,
        0.875,
        42,
    )
    assert (p["dtype"], p["vae_dtype"], p["allow_download"], p["generate_latent"]) == (
        "bfloat16",
        "float32",
        False,
        False,
    )
    assert resolve_params(SUT_SPEC.params) == {"preset": "mlperf", **MLPERF_PRESET}
    assert REFERENCE_NEGATIVE_PROMPT.startswith(
        "vivid colors, overexposed, static, blurry details, subtitles, style,\nwork"
    )
    assert REFERENCE_NEGATIVE_PROMPT.endswith("many people in the background,\nwalking backwards")
    with pytest.raises(ValueError, match="^sut\\.params\\.preset: Input should be 'mlperf' or 'tiny'$"):
        resolve_params({"preset": "huge"})
    with pytest.raises(ValueError, match="^sut\\.params\\.hieght: unknown field$"):
        resolve_params({"hieght": 720})


def test_end_to_end_accuracy_mode_writes_videos_and_uses_both_experts(tmp_path, cache):
    sut = DiffusersWanSUT(params(video_dir=str(tmp_path)))
    [resp], counts = run(sut, ctx(), [PROMPT], hooks=True)
    assert resp.error is None
    assert counts == {"transformer": 4, "transformer_2": 4}
    path = tmp_path / f"{PROMPT}-0.mp4"
    assert [p.name for p in tmp_path.iterdir()] == [path.name]
    assert is_mp4(resp.data) and resp.data == path.read_bytes()
    assert probe_mp4(path) == VideoInfo(num_frames=9, height=32, width=32, fps=16.0)
    # the generated latent: randn(1, 16, 3, 4, 4) from seed 42, saved in the cache
    assert sut.latent_path == cache / "wan22-latents" / "fixed_latent_1x16x3x4x4_seed42.pt"
    expected = torch.randn((1, 16, 3, 4, 4), generator=torch.Generator().manual_seed(42))
    assert torch.equal(torch.load(sut.latent_path, weights_only=True), expected)
    assert sut.pipe is None  # released by stop()


def test_boundary_ratio_moves_steps_between_experts(tmp_path):
    # boundary 0.95 -> 950: only t=999 goes to the high-noise expert
    sut = DiffusersWanSUT(params(boundary_ratio=0.95, save_videos="never"))
    [resp], counts = run(sut, ctx(), [PROMPT], hooks=True)
    assert resp.error is None
    assert counts == {"transformer": 2, "transformer_2": 6}


def test_fixed_latent_makes_runs_identical_whatever_the_seed(tmp_path):
    latent = tmp_path / "fixed_latent.pt"
    torch.save(torch.randn((1, 16, 3, 4, 4), generator=torch.Generator().manual_seed(1)), latent)
    frames = []
    for seed in (42, 7):
        sut = DiffusersWanSUT(params(seed=seed, latent_path=str(latent), video_dir=str(tmp_path / str(seed))))
        run(sut, ctx(), [PROMPT])
        frames.append(read_mp4(tmp_path / str(seed) / f"{PROMPT}-0.mp4")[0])
    assert (frames[0] == frames[1]).all()
    # a different latent (found through the workload's data_dir) gives a different video
    other = tmp_path / "data"
    other.mkdir()
    torch.save(
        torch.randn((1, 16, 3, 4, 4), generator=torch.Generator().manual_seed(2)), other / "fixed_latent.pt"
    )
    sut = DiffusersWanSUT(params(video_dir=str(tmp_path / "other")))
    run(sut, ctx(data_dir=str(other)), [PROMPT])
    assert sut.latent_path == other / "fixed_latent.pt"
    assert not (read_mp4(tmp_path / "other" / f"{PROMPT}-0.mp4")[0] == frames[0]).all()


def test_performance_mode_returns_mp4_without_writing(tmp_path):
    sut = DiffusersWanSUT(params(video_dir=str(tmp_path / "v")))
    responses, _ = run(sut, ctx("PerformanceOnly"), [PROMPT, "lighthouse"])
    assert [r.error for r in responses] == [None, None]
    assert all(is_mp4(r.data) for r in responses)
    assert not (tmp_path / "v").exists()


def test_path_response_format(tmp_path):
    sut = DiffusersWanSUT(params(video_dir=str(tmp_path), response_format="path"))
    [resp], _ = run(sut, ctx("PerformanceOnly"), ["lighthouse"])
    assert resp.data.decode() == str((tmp_path / "lighthouse-0.mp4").resolve())


def test_non_string_sample_is_an_error_response(tmp_path):
    sut = DiffusersWanSUT(params(save_videos="never"))
    [resp], _ = run(sut, ctx(), [123])
    assert resp.data == b""
    assert resp.error == "TypeError: Wan2.2 sample must be a prompt string, got int"


@pytest.mark.parametrize(
    ("override", "match"),
    [
        ({"height": 40}, "^sut\\.params\\.height: must be a multiple of 16, got 40$"),
        ({"num_frames": 10}, "^sut\\.params\\.num_frames: must be 4k\\+1"),
        ({"num_inference_steps": 0}, "^sut\\.params\\.num_inference_steps: Input should be greater than 0$"),
        ({"dtype": "fp8"}, "^sut\\.params\\.dtype: Input should be 'bfloat16', 'float16' or 'float32'$"),
        ({"save_videos": "sometimes"}, "^sut\\.params\\.save_videos: Input should be 'accuracy', 'always' or 'never'$"),
        ({"boundary_ratio": 1.0}, "^sut\\.params\\.boundary_ratio: Input should be less than 1$"),
        ({"model": ""}, "^sut\\.params\\.model: String should have at least 1 character$"),
    ],
)
def test_bad_params(override, match):
    with pytest.raises(ValueError, match=match):
        DiffusersWanSUT(params(**override))


def test_missing_latent_without_generation(tmp_path):
    sut = DiffusersWanSUT(params(generate_latent=False, latent_path=str(tmp_path / "none.pt")))
    with pytest.raises(FileNotFoundError, match=f"fixed latent not found: {tmp_path / 'none.pt'}"):
        run(sut, ctx(), [])


def test_latent_of_wrong_shape(tmp_path):
    bad = tmp_path / "bad.pt"
    torch.save(torch.zeros(1, 16, 21, 90, 160), bad)
    sut = DiffusersWanSUT(params(latent_path=str(bad)))
    with pytest.raises(ValueError, match=r"shape \(1, 16, 21, 90, 160\), expected \(1, 16, 3, 4, 4\)"):
        run(sut, ctx(), [])


def test_hub_id_not_downloaded_offline():
    sut = DiffusersWanSUT(params(model="nobody/not-a-wan-model"))
    with pytest.raises(FileNotFoundError, match="allow_download=true"):
        run(sut, ctx(), [])


def test_demo_through_library_sut_and_scorer(tmp_path):
    """The demo flow without the harness: library -> SUT (accuracy mode) -> scorer on the logged bytes."""
    score = load_object(WORKLOAD.accuracy)
    lib = make_library(WORKLOAD, {**WORKLOAD.params, "count": 3})
    lib.load(range(lib.total_count))
    sut = DiffusersWanSUT(params(video_dir=str(tmp_path / "sut")))
    responses, _ = run(sut, ctx(), [lib.get(i) for i in range(3)])
    entries = [(i, r.data) for i, r in enumerate(responses)]
    result = score(entries, lib, {**WORKLOAD.params, "video_dir": str(tmp_path / "scored")})
    assert result.metrics == {"videos": 3, "missing": 0}
    assert result.passed is None  # demo prompts: videos checked, VBench not run
    for prompt in lib.prompts:
        name = f"{prompt}-0.mp4"
        assert (tmp_path / "scored" / name).read_bytes() == (tmp_path / "sut" / name).read_bytes()
