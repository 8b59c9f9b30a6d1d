"""The registry: discovery (broken packages are shown, not dropped), workload-owned SUTs, typed params."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

import reference_suts
import workloads
from raybench import registry
from raybench.cli import app
from raybench.config import load_run_config
from raybench.registry import (
    ParamsError,
    RegistryError,
    get_sut,
    get_workload,
    list_suts,
    list_workloads,
    sut_params,
    workload_params,
)
from raybench.run import prepare_run


def _clear() -> None:
    for fn in (registry._packages, registry.list_workloads, registry.list_suts):
        fn.cache_clear()


@pytest.fixture
def broken(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A workload package and a SUT package that fail to import, added to the discovery paths."""
    for pkg, name in (("workloads", "brokenwl"), ("reference_suts", "brokensut")):
        d = tmp_path / pkg / name
        d.mkdir(parents=True)
        (d / "__init__.py").write_text("import raybench_no_such_module  # noqa\n")
    monkeypatch.setattr(workloads, "__path__", [*workloads.__path__, str(tmp_path / "workloads")])
    monkeypatch.setattr(
        reference_suts, "__path__", [*reference_suts.__path__, str(tmp_path / "reference_suts")]
    )
    _clear()
    yield
    monkeypatch.undo()
    _clear()


def test_broken_packages_are_listed_with_the_reason(broken: None) -> None:
    why = "ModuleNotFoundError: No module named 'raybench_no_such_module'"
    assert registry.broken_workloads() == {"brokenwl": why}
    assert registry.broken_suts() == {"brokensut": why}
    assert "synthetic" in list_workloads() and "fake" in list_suts()  # the others still load
    with pytest.raises(RegistryError) as err:
        get_workload("brokenwl")
    assert str(err.value) == f"workload.name: workload 'brokenwl' is unavailable: {why}"
    with pytest.raises(RegistryError, match=f"^sut.name: SUT 'brokensut' is unavailable: {why}$"):
        get_sut("brokensut")
    with pytest.raises(RegistryError) as err:
        get_sut("nope")
    assert str(err.value).startswith("sut.name: unknown SUT 'nope' (known: ")
    assert str(err.value).endswith("; broken packages: brokensut, workloads.brokenwl)")
    res = CliRunner().invoke(app, ["list"], env={"COLUMNS": "250"})
    assert res.exit_code == 0
    rows = [line for line in res.output.splitlines() if "broken" in line]
    assert len(rows) == 2 and all(why in row for row in rows), res.output
    assert "brokenwl" in rows[0] and "brokensut" in rows[1]


def test_workload_packages_register_their_oracles() -> None:
    assert get_sut("oracle_yolo").entry == "workloads.yolo11.oracle:OracleYoloSUT"
    assert get_sut("oracle_q3vl").entry == "workloads.qwen3_vl.oracle:OracleQ3VLSUT"
    assert not [s for s in list_suts().values() if s.entry.startswith("reference_suts.oracle")]


def test_params_are_validated_into_plain_dicts() -> None:
    wl = get_workload("synthetic")
    assert workload_params(wl, None) == {"count": 1024, "performance_count": 1024, "sample_bytes": 16}
    assert workload_params(wl, {"count": 10}) == {"count": 10, "performance_count": 1024, "sample_bytes": 16}
    assert wl.params == workload_params(wl, {})
    p = sut_params(get_sut("fake"), wl, {"latency": {"dist": "constant", "ms": 5}})
    assert p["latency"] == {"dist": "constant", "ms": 5.0}
    assert (p["echo"], p["max_batch"], p["max_inflight"]) == (True, 16, 2)  # the workload's sut_params
    assert type(p) is dict and type(p["latency"]) is dict


@pytest.mark.parametrize(
    ("kind", "params", "line"),
    [
        ("workload", {"cont": 5}, "workload.params.cont: unknown field"),
        ("workload", {"count": 0}, "workload.params.count: Input should be greater than or equal to 1"),
        (
            "sut",
            {"latency": {"dist": "foo"}},
            "sut.params.latency.dist: Input should be 'constant', 'uniform', 'lognormal' or 'exponential'",
        ),
        ("sut", {"latency": {"ms": 3}}, "sut.params.latency.dist: Field required"),
        (
            "sut",
            {"latency": {"dist": "constant", "ms": "x"}},
            "sut.params.latency.ms: Input should be a valid number, unable to parse string as a number",
        ),
        (
            "sut",
            {"latency": {"dist": "uniform", "low_ms": 3, "high_ms": 1}},
            "sut.params.latency: high_ms (1.0) must be >= low_ms (3.0)",
        ),
        (
            "sut",
            {"tokens": {"n": [1, 2, 3]}},
            "sut.params.tokens.n: expected a token count or [lo, hi] with 0 <= lo <= hi, got [1, 2, 3]",
        ),
        ("sut", {"tokens": {"n": 8, "ttft": 1}}, "sut.params.tokens.ttft: unknown field"),
        ("sut", {"error_rate": 2}, "sut.params.error_rate: Input should be less than or equal to 1"),
    ],
)
def test_params_errors_are_one_line_naming_the_field(kind: str, params: dict, line: str) -> None:
    wl = get_workload("synthetic")
    with pytest.raises(ParamsError) as err:
        workload_params(wl, params) if kind == "workload" else sut_params(get_sut("fake"), wl, params)
    assert str(err.value) == line


def test_prepare_run_fails_before_anything_starts() -> None:
    for sets, line in (
        (["workload.params.cont=5"], "workload.params.cont: unknown field"),
        (["sut.params.latency={dist: foo}"], "sut.params.latency.dist: Input should be 'constant'"),
    ):
        cfg = load_run_config(None, ["workload=synthetic", "sut=fake", *sets])
        with pytest.raises(ValueError, match=f"^{line}"):
            prepare_run(cfg)


def test_mode_union_and_secrets() -> None:
    vllm = get_sut("vllm")
    assert sut_params(vllm, None, {"model": "m"})["mode"] == "server"
    assert sut_params(vllm, None, {"model": "m", "mode": "engine"})["min_tokens"] == 1
    for params, line in (
        ({"model": "m", "mode": "remote"}, "sut.params.mode: Input should be 'server', 'external' or 'engine'"),
        ({"model": "m", "mode": "engine", "python": "x"}, "sut.params.python: unknown field"),
        ({"mode": "engine"}, "sut.params.model: required (a local checkpoint path or a hub id)"),
    ):
        with pytest.raises(ParamsError) as err:
            sut_params(vllm, None, params)
        assert str(err.value) == line
    with pytest.raises(ParamsError) as err:
        sut_params(get_sut("openai_endpoint"), None, {"api_key": "sk-very-secret"})
    assert (
        "sk-very-secret" not in str(err.value)
        and err.value.__cause__ is None
        and err.value.__suppress_context__
    )
    assert str(err.value).startswith("sut.params.api_key: do not put the key in params")


def test_every_workload_sut_params_default_fits_the_sut_model() -> None:
    """``WorkloadSpec.sut_params`` go through the SUT's model too; a SUT that needs a value the
    workload does not give (a model path) may still complain about that one."""
    for wl in list_workloads().values():
        for name, defaults in wl.sut_params.items():
            try:
                sut_params(get_sut(name), wl, None)
            except ParamsError as exc:
                field = str(exc).split(":")[0].removeprefix("sut.params.")
                assert field not in defaults and field == "model", f"{wl.name} -> {name}: {exc}"
