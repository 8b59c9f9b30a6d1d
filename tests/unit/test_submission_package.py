"""``raybench package``: refusals (one line, naming the run and the reason) and the v6.0 tree."""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, replace
from pathlib import Path

import pytest
from typer.testing import CliRunner

from raybench.cli import app
from raybench.core.conf import resolve_settings
from raybench.submission.package import SYSTEM_FIELDS, PackageError, PackageOptions, package
from raybench.testing import virtual_run

runner = CliRunner()
OFFLINE = ("scenario=Offline", "round=v6.0", "settings.min_duration_ms=1500", "settings.offline_expected_qps=30000")
MEASUREMENTS = {"input_data_types": "bytes", "retraining": "no", "starting_weights_filename": "none (echo SUT)",
                "weight_data_types": "none", "weight_transformations": "none"}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A performance and an accuracy run of synthetic/Offline (v6.0 seeds, 1.5 s), and two bad ones."""
    root = tmp_path_factory.mktemp("runs")
    out: dict[str, Path] = {}
    for name, extra in (("perf", ()), ("acc", ("mode=AccuracyOnly", "sut.params.echo=true")),
                        ("perf_v61", ("round=v6.1",)), ("perf_bad", ("sut.params.error_rate=0.5",))):
        out[name] = virtual_run(root, *OFFLINE, *extra, f"run_dir={root / name}").run_dir
    return out


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    system = {k: "n/a" for k in SYSTEM_FIELDS if k not in ("division", "submitter")}
    system.update(system_name="vm-2cpu", status="available", system_type="datacenter", number_of_nodes=1)
    (tmp_path / "vm-2cpu.json").write_text(json.dumps(system))
    (tmp_path / "measurements.json").write_text(json.dumps(MEASUREMENTS))
    test01 = tmp_path / "compliance" / "TEST01"
    (test01 / "performance" / "run_1").mkdir(parents=True)
    (test01 / "verify_accuracy.txt").write_text("TEST PASS\n")
    (test01 / "verify_performance.txt").write_text("TEST PASS\n")
    (test01 / "performance" / "run_1" / "mlperf_log_detail.txt").write_text(":::MLLOG {}\n")
    return {"system": tmp_path / "vm-2cpu.json", "measurements": tmp_path / "measurements.json", "test01": test01,
            "out": tmp_path / "submission"}


def _opts(inputs: dict[str, Path], **kw: object) -> PackageOptions:
    base = PackageOptions(org="RayBenchOrg", division="open", system_json=inputs["system"],
                          measurements_json=inputs["measurements"], out=inputs["out"], benchmark="resnet")
    return replace(base, **kw)  # type: ignore[arg-type]


def _cli_args(runs: dict[str, Path], inputs: dict[str, Path], *extra: str) -> list[str]:
    return ["package", str(runs["perf"]), str(runs["acc"]), "--org", "RayBenchOrg", "--division", "open",
            "--system-json", str(inputs["system"]), "--measurements-json", str(inputs["measurements"]),
            "--out", str(inputs["out"]), "--benchmark", "resnet", *extra]


def test_short_run_is_refused_for_its_duration(runs: dict[str, Path], inputs: dict[str, Path]) -> None:
    res = runner.invoke(app, _cli_args(runs, inputs), env={"RAYBENCH_PACKAGE_ALLOW_SHORT": ""})
    assert res.exit_code == 2
    assert res.output == (f"raybench: error: {runs['perf']}: effective min_duration_ms is 1500; a submission run "
                          "needs >= 600000 (run with your user.conf)\n")
    assert not inputs["out"].exists()


def test_override_writes_the_full_v60_tree(runs: dict[str, Path], inputs: dict[str, Path]) -> None:
    res = runner.invoke(app, _cli_args(runs, inputs, "--compliance", f"Offline={inputs['test01']}"),
                        env={"RAYBENCH_PACKAGE_ALLOW_SHORT": "1"})
    assert res.exit_code == 0, res.output
    root = inputs["out"]
    files = sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())
    scen = "open/RayBenchOrg/results/vm-2cpu/resnet/Offline"
    assert files == sorted([
        "open/RayBenchOrg/systems/vm-2cpu.json",
        "open/RayBenchOrg/src/README.md",
        f"{scen}/README.md", f"{scen}/measurements.json", f"{scen}/mlperf.conf", f"{scen}/user.conf",
        f"{scen}/performance/run_1/mlperf_log_detail.txt", f"{scen}/performance/run_1/mlperf_log_summary.txt",
        f"{scen}/accuracy/mlperf_log_detail.txt", f"{scen}/accuracy/mlperf_log_summary.txt",
        f"{scen}/accuracy/mlperf_log_accuracy.json", f"{scen}/accuracy/accuracy.txt",
        f"{scen}/TEST01/verify_accuracy.txt", f"{scen}/TEST01/verify_performance.txt",
        f"{scen}/TEST01/performance/run_1/mlperf_log_detail.txt",
    ])
    s = root / scen
    full = (runs["acc"] / "mlperf_log_accuracy.json").read_bytes()
    assert len(full) > 10_240  # the run's log is untouched and needed truncating
    cut = (s / "accuracy" / "mlperf_log_accuracy.json").read_bytes()
    assert cut == full[:4096] + b"\n\n...\n\n" + full[-4096:]
    assert (s / "accuracy" / "accuracy.txt").read_text() == (
        (runs["acc"] / "accuracy.txt").read_text() + f"hash={hashlib.sha256(full).hexdigest()}\n")
    for part in ("performance/run_1", "accuracy"):
        src = runs["perf"] if part.startswith("performance") else runs["acc"]
        for f in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
            assert (s / part / f).read_bytes() == (src / f).read_bytes()
    system = json.loads((root / "open/RayBenchOrg/systems/vm-2cpu.json").read_text())
    assert (system["division"], system["submitter"], system["system_name"]) == ("open", "RayBenchOrg", "vm-2cpu")
    assert json.loads((s / "measurements.json").read_text()) == MEASUREMENTS
    assert (s / "user.conf").read_text().splitlines()[2:] == ["*.Offline.min_duration = 1500", "*.Offline.target_qps = 30000"]


def test_reconstructed_user_conf_reproduces_the_run_settings(runs: dict[str, Path], inputs: dict[str, Path],
                                                            tmp_path: Path) -> None:
    package([runs["perf"], runs["acc"]], _opts(inputs, allow_short=True))
    conf = inputs["out"] / "open/RayBenchOrg/results/vm-2cpu/resnet/Offline/user.conf"
    got, _ = resolve_settings(model=None, scenario="Offline", mode="PerformanceOnly", user_conf=conf, round="v6.0")
    assert asdict(got) == json.loads((runs["perf"] / "result.json").read_text())["settings"]


@pytest.mark.parametrize(("names", "kw", "message"), [
    (("perf",), {}, "synthetic/Offline: no accuracy run among the run directories "
                    "(raybench run --workload synthetic --scenario Offline --mode AccuracyOnly ...)"),
    (("perf", "perf_v61", "acc"), {}, "{perf} and {perf_v61} are both performance runs of synthetic/Offline; pass one"),
    (("perf_v61", "acc"), {}, "{perf_v61}: seeds (qsl, sample index, schedule) (2085463073848966840, "
                              "2747215439041700203, 16159082839903944936) are not the v6.0 round's "
                              "(2465351861681999779, 14276810075590677512, 3936089224930324775); "
                              "rerun with --set round=v6.0 and no seed override"),
    (("perf_bad", "acc"), {}, "{perf_bad}: the performance run is INVALID: "),
    (("perf", "acc"), {"division": "closed", "benchmark": "synthetic"},
     "--benchmark synthetic: not a v6.0 closed-division benchmark ("),
    (("perf", "acc"), {"benchmark": None}, "workload synthetic has no MLPerf benchmark name; pass --benchmark NAME"),
])
def test_refusals_name_the_run_and_the_reason(runs: dict[str, Path], inputs: dict[str, Path], names: tuple[str, ...],
                                              kw: dict[str, object], message: str) -> None:
    with pytest.raises(PackageError) as exc:
        package([runs[n] for n in names], _opts(inputs, allow_short=True, **kw))
    assert str(exc.value).startswith(message.format(**{k: str(v) for k, v in runs.items()}))
    assert "\n" not in str(exc.value)
    assert not inputs["out"].exists()


def test_system_json_missing_fields_are_listed(runs: dict[str, Path], inputs: dict[str, Path]) -> None:
    data = json.loads(inputs["system"].read_text())
    del data["cooling"], data["hw_notes"]
    inputs["system"].write_text(json.dumps(data))
    with pytest.raises(PackageError, match=r"vm-2cpu\.json: missing fields the checker requires: cooling, hw_notes$"):
        package([runs["perf"], runs["acc"]], _opts(inputs, allow_short=True))


def test_existing_scenario_directory_is_not_overwritten(runs: dict[str, Path], inputs: dict[str, Path]) -> None:
    package([runs["perf"], runs["acc"]], _opts(inputs, allow_short=True))
    with pytest.raises(PackageError, match=r"resnet/Offline already exists; remove it or choose another --out$"):
        package([runs["perf"], runs["acc"]], _opts(inputs, allow_short=True))


def test_benchmark_names_follow_the_v60_checker() -> None:
    from raybench.submission.package import BENCHMARKS, V60_MODELS, _benchmark_of, _Run

    def run(workload: str, params: dict[str, str]) -> _Run:
        return _Run(Path("."), {"workload": workload}, {"workload": {"params": params}})

    assert set(BENCHMARKS.values()) <= V60_MODELS
    assert [_benchmark_of(run(w, {})) for w in ("dlrmv3", "yolo11", "qwen3_vl", "wan22", "llm", "synthetic")] == [
        "dlrm-v3", "yolo-95", "qwen3-vl-235b-a22b", "wan-2.2-t2v-a14b", "llama3.1-8b", None]
    assert _benchmark_of(run("yolo11", {"accuracy_target": "yolo-99"})) == "yolo-99"


def test_the_runs_user_conf_is_copied_and_a_missing_one_refused(runs: dict[str, Path], inputs: dict[str, Path],
                                                                 tmp_path: Path) -> None:
    import shutil

    import yaml

    perf = tmp_path / "perf"
    shutil.copytree(runs["perf"], perf)
    conf = tmp_path / "my-user.conf"
    conf.write_text("*.Offline.min_duration = 1500\n*.Offline.target_qps = 30000\n")
    cfg = yaml.safe_load((perf / "config.yaml").read_text())
    cfg["user_conf"] = str(conf)
    (perf / "config.yaml").write_text(yaml.safe_dump(cfg))
    package([perf, runs["acc"]], _opts(inputs, allow_short=True))
    written = inputs["out"] / "open/RayBenchOrg/results/vm-2cpu/resnet/Offline/user.conf"
    assert written.read_text() == conf.read_text()
    conf.unlink()
    with pytest.raises(PackageError, match=rf"^{perf}/config\.yaml: user_conf {conf} not found \(run package from"):
        package([perf, runs["acc"]], _opts(inputs, out=tmp_path / "other", allow_short=True))
    assert not (tmp_path / "other").exists()
