"""``raybench package``: run directories and a system description -> an MLPerf submission tree.

The tree follows the layout the v6.0 submission checker walks
(``tools/submission/submission_checker/constants.py``, ``*_PATH["v6.0"]``)::

    <out>/<division>/<org>/
        systems/<system>.json
        src/README.md                                   pointer to the harness code (v6.0: src/, was code/)
        results/<system>/<benchmark>/<scenario>/
            README.md  measurements.json  mlperf.conf  user.conf
            performance/run_1/mlperf_log_detail.txt  mlperf_log_summary.txt
            accuracy/mlperf_log_detail.txt  mlperf_log_summary.txt  mlperf_log_accuracy.json  accuracy.txt
            TEST01/ ...                                 copied from ``raybench compliance`` output

Since v6.0 the files the checker once read from ``measurements/<system>/<benchmark>/<scenario>/``
(``mlperf.conf``, ``user.conf``, ``README.md`` and the measurements JSON) sit in the scenario's
results directory, and compliance tests sit next to ``performance/`` instead of under
``compliance/``.

Every benchmark/scenario needs exactly one performance run and one accuracy run. A run is refused
(one line naming the run and the reason) when it could not pass the checker: an INVALID
performance run, an effective ``min_duration_ms`` under 600000, seeds other than the round's,
compliance-only settings in a submission run, an accuracy run that is incomplete or (closed
division) under its target, a scenario MLPerf does not have. ``allow_short`` (``RAYBENCH_PACKAGE_ALLOW_SHORT=1``,
for tests and dry runs only) waives the 600 s rule and nothing else.

The accuracy log is truncated as the submission tools do (:mod:`raybench.submission.truncate`);
the run directories themselves are never modified.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from raybench import __version__
from raybench.core.logs.atomic import atomic_write_json, atomic_write_text
from raybench.core.settings import BUNDLED_MLPERF_CONF, ROUND_SEEDS
from raybench.submission.truncate import truncate_accuracy_log
from raybench.submission.userconf import reconstruct_user_conf

__all__ = [
    "BENCHMARKS",
    "MEASUREMENTS_FIELDS",
    "MIN_DURATION_MS",
    "SYSTEM_FIELDS",
    "V60_MODELS",
    "PackageError",
    "PackageOptions",
    "PackageResult",
    "package",
]

#: raybench workload -> the v6.0 checker's benchmark name (``MODEL_CONFIG["v6.0"]["models"]``).
#: ``yolo11`` is ``yolo-95`` (the workload's default tier) unless the run's
#: ``workload.params.accuracy_target`` is ``yolo-99``.
BENCHMARKS: dict[str, str] = {
    "dlrmv3": "dlrm-v3",
    "yolo11": "yolo-95",
    "qwen3_vl": "qwen3-vl-235b-a22b",
    "wan22": "wan-2.2-t2v-a14b",
    "llm": "llama3.1-8b",
}
#: Benchmarks the v6.0 checker knows (closed division: the only names allowed).
V60_MODELS = frozenset({
    "resnet", "retinanet", "bert-99", "bert-99.9", "3d-unet-99", "3d-unet-99.9", "llama3.1-8b",
    "llama3.1-8b-edge", "llama2-70b-99", "llama2-70b-99.9", "stable-diffusion-xl", "mixtral-8x7b",
    "llama3.1-405b", "rgat", "pointpainting", "deepseek-r1", "whisper", "gpt-oss-120b",
    "wan-2.2-t2v-a14b", "qwen3-vl-235b-a22b", "dlrm-v3", "yolo-95", "yolo-99",
})
MLPERF_SCENARIOS = ("SingleStream", "MultiStream", "Server", "Offline")
MIN_DURATION_MS = 600_000
"""The checker's ``TEST_DURATION_MS``: a performance run's effective min duration."""
#: The checker's ``SYSTEM_DESC_REQUIRED_FIELDS`` (v6.0): every key must be present in the system JSON.
SYSTEM_FIELDS = (
    "division", "submitter", "status", "system_name", "number_of_nodes", "host_processor_model_name",
    "host_processors_per_node", "host_processor_core_count", "host_memory_capacity", "host_storage_capacity",
    "host_storage_type", "accelerators_per_node", "accelerator_model_name", "accelerator_memory_capacity",
    "framework", "operating_system", "system_type", "other_software_stack", "host_processor_frequency",
    "host_processor_caches", "host_memory_configuration", "host_processor_interconnect", "host_networking",
    "host_networking_topology", "accelerator_frequency", "accelerator_host_interconnect",
    "accelerator_interconnect", "accelerator_interconnect_topology", "accelerator_memory_configuration",
    "accelerator_on-chip_memories", "cooling", "hw_notes", "sw_notes", "host_network_card_count",
    "system_type_detail",
)
#: The checker's ``SYSTEM_IMP_REQUIRED_FILES``: keys of measurements.json, each with a non-empty value.
MEASUREMENTS_FIELDS = ("input_data_types", "retraining", "starting_weights_filename", "weight_data_types",
                       "weight_transformations")
#: TestSettings a compliance test sets (audit.config); a submission run must leave them at rest.
_COMPLIANCE_SETTINGS = {"performance_issue_unique": False, "performance_issue_same": False, "test05": False,
                        "accuracy_log_sampling_target": 0, "accuracy_log_probability": 0.0}
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]*$")
_TEST_RE = re.compile(r"^TEST\d\d$")


class PackageError(ValueError):
    """A run, file or option that cannot go into a submission (one line, naming it)."""


@dataclass(frozen=True)
class PackageOptions:
    """What ``raybench package`` was asked for.

    Attributes:
        org: the submitter (``<division>/<org>/``).
        division: ``closed`` or ``open``.
        system_json: the system description (the checker's fields; ``division``/``submitter`` filled in).
        measurements_json: ``measurements.json`` for the benchmark (model and weight facts).
        out: the submission root.
        system: the system's folder name (default: the system JSON's file stem).
        benchmark: the MLPerf benchmark name (default: :data:`BENCHMARKS` by workload).
        version: the checker version whose seeds the runs must carry (``v6.0`` or ``v6.1``).
        compliance: ``(scenario or None, path of a TESTxx folder)``.
        allow_short: waive the 600 s minimum (tests only).
    """

    org: str
    division: str
    system_json: Path
    measurements_json: Path
    out: Path
    system: str | None = None
    benchmark: str | None = None
    version: str = "v6.0"
    compliance: tuple[tuple[str | None, Path], ...] = ()
    allow_short: bool = False


@dataclass
class _Run:
    path: Path
    result: dict[str, Any]
    config: dict[str, Any]

    @property
    def workload(self) -> str:
        return str(self.result.get("workload"))

    @property
    def scenario(self) -> str:
        return str(self.result.get("scenario"))

    @property
    def mode(self) -> str:
        return str(self.result.get("mode"))


@dataclass
class PackageResult:
    """What :func:`package` wrote: the division/org root and every scenario directory."""

    root: Path
    scenario_dirs: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)


def package(run_dirs: Sequence[str | Path], opts: PackageOptions) -> PackageResult:
    """Check every run and write the submission tree (see the module docstring).

    Raises:
        PackageError: the first reason the submission cannot be written; nothing is written then.
    """
    if opts.division not in ("closed", "open"):
        raise PackageError(f"--division: expected closed or open, got {opts.division!r}")
    if not _NAME_RE.match(opts.org):
        raise PackageError(f"--org: {opts.org!r} is not a folder name (letters, digits, _ . + -)")
    if opts.version not in ROUND_SEEDS:
        raise PackageError(f"--version: expected one of {', '.join(ROUND_SEEDS)}, got {opts.version!r}")
    if not run_dirs:
        raise PackageError("no run directory given")
    system_name = opts.system or Path(opts.system_json).stem
    if not _NAME_RE.match(system_name):
        raise PackageError(f"--system: {system_name!r} is not a folder name (letters, digits, _ . + -)")
    system = _system_description(opts)
    measurements = _measurements(opts.measurements_json)
    groups = _group(_load_run(Path(p)) for p in run_dirs)
    if opts.benchmark and len({w for w, _ in groups}) > 1:
        raise PackageError(f"--benchmark {opts.benchmark} is ambiguous: the runs hold workloads "
                           f"{', '.join(sorted({w for w, _ in groups}))}; package one workload at a time")
    tests = _assign_compliance(opts.compliance, groups)
    root = Path(opts.out) / opts.division / opts.org
    plans: list[tuple[Path, _Run, _Run, list[Path]]] = []
    for (workload, scenario), (perf, acc) in sorted(groups.items()):
        _check_perf(perf, opts)
        _check_acc(acc, opts)
        if perf.result.get("sut") != acc.result.get("sut"):
            raise PackageError(f"{workload}/{scenario}: the performance run used SUT {perf.result.get('sut')} "
                               f"but the accuracy run {acc.result.get('sut')}")
        bench = opts.benchmark or _benchmark_of(acc)
        if bench is None:
            raise PackageError(f"workload {workload} has no MLPerf benchmark name; pass --benchmark NAME")
        if opts.division == "closed" and bench not in V60_MODELS:
            raise PackageError(f"--benchmark {bench}: not a v6.0 closed-division benchmark "
                               f"({', '.join(sorted(V60_MODELS))})")
        target = root / "results" / system_name / bench / scenario
        if target.exists():
            raise PackageError(f"{target} already exists; remove it or choose another --out")
        plans.append((target, perf, acc, tests.get((workload, scenario), [])))
    sys_file = root / "systems" / f"{system_name}.json"
    if sys_file.exists() and json.loads(sys_file.read_text()) != system:
        raise PackageError(f"{sys_file} already exists with a different description; remove it or choose another --out")
    confs = [(_user_conf(perf), _mlperf_conf(perf)) for _, perf, _, _ in plans]  # refuse before writing

    res = PackageResult(root=root)
    res.files.append(atomic_write_json(sys_file, system))
    res.files.append(atomic_write_text(root / "src" / "README.md", _src_readme()))
    for (target, perf, acc, test_dirs), (user_conf, mlperf_conf) in zip(plans, confs, strict=True):
        res.scenario_dirs.append(target)
        res.files += _copy(perf.path, target / "performance" / "run_1", ("mlperf_log_detail.txt", "mlperf_log_summary.txt"))
        res.files += _copy(acc.path, target / "accuracy", ("mlperf_log_detail.txt", "mlperf_log_summary.txt",
                                                           "mlperf_log_accuracy.json", "accuracy.txt"))
        truncate_accuracy_log(target / "accuracy" / "mlperf_log_accuracy.json", target / "accuracy" / "accuracy.txt")
        res.files.append(atomic_write_text(target / "user.conf", user_conf))
        res.files.append(atomic_write_text(target / "mlperf.conf", mlperf_conf))
        res.files.append(atomic_write_json(target / "measurements.json", measurements))
        res.files.append(atomic_write_text(target / "README.md", _scenario_readme(target, perf, acc, opts)))
        for test in test_dirs:
            shutil.copytree(test, target / test.name)
            res.files += sorted(p for p in (target / test.name).rglob("*") if p.is_file())
    return res


# ----------------------------------------------------------------------------- inputs


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        data = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise PackageError(f"{what} {path}: not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise PackageError(f"{what} {path}: cannot read ({type(exc).__name__})") from None
    except json.JSONDecodeError as exc:
        raise PackageError(f"{what} {path}:{exc.lineno}: not JSON ({exc.msg})") from None
    if not isinstance(data, dict):
        raise PackageError(f"{what} {path}: expected a JSON object, got {type(data).__name__}")
    return data


def _system_description(opts: PackageOptions) -> dict[str, Any]:
    data = _read_json(opts.system_json, "--system-json")
    for key, want in (("division", opts.division), ("submitter", opts.org)):
        if data.get(key) not in (None, "", want):
            raise PackageError(f"--system-json {opts.system_json}: {key} is {data[key]!r} but the package is for {want!r}")
        data[key] = want
    missing = [k for k in SYSTEM_FIELDS if k not in data]
    if missing:
        raise PackageError(f"--system-json {opts.system_json}: missing fields the checker requires: {', '.join(missing)}")
    return data


def _measurements(path: Path) -> dict[str, Any]:
    data = _read_json(path, "--measurements-json")
    empty = [k for k in MEASUREMENTS_FIELDS if not data.get(k)]
    if empty:
        raise PackageError(f"--measurements-json {path}: missing or empty fields: {', '.join(empty)}")
    return data


def _load_run(path: Path) -> _Run:
    if not path.is_dir():
        raise PackageError(f"{path}: not a directory")
    res_file = path / "result.json"
    if not res_file.is_file():
        raise PackageError(f"{path}: no result.json (not a raybench run directory)")
    result = _read_json(res_file, "result")
    cfg_file = path / "config.yaml"
    try:
        config = yaml.safe_load(cfg_file.read_text()) or {}
    except FileNotFoundError:
        raise PackageError(f"{path}: no config.yaml (not a raybench run directory)") from None
    except yaml.YAMLError as exc:
        raise PackageError(f"{cfg_file}: not YAML ({str(exc).splitlines()[0]})") from None
    for f in ("mlperf_log_detail.txt", "mlperf_log_summary.txt"):
        if not (path / f).is_file():
            raise PackageError(f"{path}: {f} is missing")
    return _Run(path, result, config if isinstance(config, dict) else {})


def _group(runs: Any) -> dict[tuple[str, str], tuple[_Run, _Run]]:
    found: dict[tuple[str, str], dict[str, _Run]] = {}
    for run in runs:
        if run.scenario not in MLPERF_SCENARIOS:
            raise PackageError(f"{run.path}: scenario {run.scenario} is not an MLPerf scenario "
                               f"({', '.join(MLPERF_SCENARIOS)}); it cannot be submitted")
        kind = {"PerformanceOnly": "performance", "AccuracyOnly": "accuracy"}.get(run.mode)
        if kind is None:
            raise PackageError(f"{run.path}: mode {run.mode}; a submission takes PerformanceOnly and AccuracyOnly runs")
        slot = found.setdefault((run.workload, run.scenario), {})
        if kind in slot:
            raise PackageError(f"{slot[kind].path} and {run.path} are both {kind} runs of "
                               f"{run.workload}/{run.scenario}; pass one")
        slot[kind] = run
    out: dict[tuple[str, str], tuple[_Run, _Run]] = {}
    for (w, s), slot in found.items():
        for kind, how in (("performance", ""), ("accuracy", " --mode AccuracyOnly")):
            if kind not in slot:
                raise PackageError(f"{w}/{s}: no {kind} run among the run directories "
                                   f"(raybench run --workload {w} --scenario {s}{how} ...)")
        out[(w, s)] = (slot["performance"], slot["accuracy"])
    return out


def _assign_compliance(entries: Sequence[tuple[str | None, Path]],
                       groups: dict[tuple[str, str], tuple[_Run, _Run]]) -> dict[tuple[str, str], list[Path]]:
    out: dict[tuple[str, str], list[Path]] = {}
    for scenario, path in entries:
        path = Path(path)
        if not path.is_dir():
            raise PackageError(f"--compliance {path}: not a directory")
        if not _TEST_RE.match(path.name):
            raise PackageError(f"--compliance {path}: the folder must be named TESTxx (as raybench compliance writes it)")
        if not any(path.glob("verify_*.txt")):
            raise PackageError(f"--compliance {path}: no verify_*.txt inside (not a finished compliance test)")
        keys = [k for k in groups if scenario is None or k[1] == scenario]
        if len(keys) != 1:
            where = f"scenario {scenario}" if scenario else "--compliance without SCENARIO="
            raise PackageError(f"--compliance {path}: {where} matches {len(keys)} of the packaged benchmark/scenarios "
                               f"({', '.join('/'.join(k) for k in sorted(groups))}); write SCENARIO=PATH")
        lst = out.setdefault(keys[0], [])
        if any(p.name == path.name for p in lst):
            raise PackageError(f"--compliance {path}: {path.name} given twice for {'/'.join(keys[0])}")
        lst.append(path)
    return out


def _benchmark_of(run: _Run) -> str | None:
    params = (run.config.get("workload") or {}).get("params") or {}
    if run.workload == "yolo11" and params.get("accuracy_target") in ("yolo-95", "yolo-99"):
        return str(params["accuracy_target"])
    return BENCHMARKS.get(run.workload)


# ----------------------------------------------------------------------------- checks


def _check_common(run: _Run, opts: PackageOptions) -> None:
    eff = run.result.get("effective") or {}
    seeds = tuple(eff.get(k) for k in ("qsl_rng_seed", "sample_index_rng_seed", "schedule_rng_seed"))
    want = ROUND_SEEDS[opts.version]
    if seeds != want:
        raise PackageError(f"{run.path}: seeds (qsl, sample index, schedule) {seeds} are not the {opts.version} "
                           f"round's {want}; rerun with --set round={opts.version} and no seed override")
    settings = run.result.get("settings") or {}
    for key, rest in _COMPLIANCE_SETTINGS.items():
        if settings.get(key, rest) != rest:
            raise PackageError(f"{run.path}: settings.{key} = {settings[key]!r} is a compliance-test setting; "
                               "a submission run must not set it")


def _check_perf(run: _Run, opts: PackageOptions) -> None:
    if run.result.get("validity") != "VALID":
        reasons = run.result.get("invalid_reasons") or ["no verdict in result.json"]
        raise PackageError(f"{run.path}: the performance run is INVALID: {reasons[0]}")
    _check_common(run, opts)
    min_ms = int((run.result.get("effective") or {}).get("min_duration_ms", 0))
    if min_ms < MIN_DURATION_MS and not opts.allow_short:
        raise PackageError(f"{run.path}: effective min_duration_ms is {min_ms}; a submission run needs >= "
                           f"{MIN_DURATION_MS} (run with your user.conf)")


def _check_acc(run: _Run, opts: PackageOptions) -> None:
    if run.result.get("validity") != "VALID":
        reasons = run.result.get("invalid_reasons") or ["no verdict in result.json"]
        raise PackageError(f"{run.path}: the accuracy run is incomplete: {reasons[0]}")
    _check_common(run, opts)
    for f in ("mlperf_log_accuracy.json", "accuracy.txt"):
        if not (run.path / f).is_file():
            raise PackageError(f"{run.path}: {f} is missing (raybench accuracy {run.workload} {run.path})")
    acc = run.result.get("accuracy") or {}
    if opts.division == "closed" and acc.get("passed") is False:
        raise PackageError(f"{run.path}: accuracy {acc.get('metrics')} is below the target {acc.get('targets')}; "
                           "the closed division refuses it")


# ----------------------------------------------------------------------------- outputs


def _conf_path(run: _Run, key: str) -> Path | None:
    value = run.config.get(key)
    if not value or (key == "mlperf_conf" and str(value).lower() == "none"):
        return None
    p = Path(str(value)).expanduser()
    if not p.is_file():
        raise PackageError(f"{run.path / 'config.yaml'}: {key} {value} not found (run package from the directory "
                           "the run was started in, or give an absolute path)")
    return p


def _user_conf(run: _Run) -> str:
    path = _conf_path(run, "user_conf")
    if path is not None:
        return path.read_text()
    try:
        return reconstruct_user_conf(run.config, run.result)
    except (LookupError, ValueError, OSError) as exc:  # unknown workload, unreadable mlperf.conf
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise PackageError(f"{run.path}: no user.conf and none can be rebuilt: {first}") from None


def _mlperf_conf(run: _Run) -> str:
    if str(run.config.get("mlperf_conf") or "").lower() == "none":
        raise PackageError(f"{run.path}: run without mlperf.conf (mlperf_conf: none); a submission run uses it")
    path = _conf_path(run, "mlperf_conf")
    return (path or BUNDLED_MLPERF_CONF).read_text()


def _copy(src_dir: Path, dst_dir: Path, names: Sequence[str]) -> list[Path]:
    dst_dir.mkdir(parents=True, exist_ok=True)
    return [Path(shutil.copy2(src_dir / n, dst_dir / n)) for n in names]


def _git_commit() -> str:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).resolve().parent, capture_output=True,
                             text=True, timeout=5, check=False)
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out.stdout.strip() if out.returncode == 0 and out.stdout.strip() else "unknown"


def _src_readme() -> str:
    return ("# Harness code\n\n"
            f"The runs were made with raybench {__version__} (git commit {_git_commit()}), which drives the SUT with\n"
            "MLPerf LoadGen's scenario rules and writes LoadGen 6.0 logs. The workload and SUT code is in the\n"
            "raybench repository under `workloads/<name>/` and `reference_suts/<name>/`.\n")


def _scenario_readme(target: Path, perf: _Run, acc: _Run, opts: PackageOptions) -> str:
    r = perf.result
    bench, scenario = target.parent.name, target.name
    lines = [
        f"# {bench} / {scenario}",
        "",
        f"System `{target.parent.parent.name}`, submitter `{opts.org}`, {opts.division} division; "
        f"made with raybench {__version__}.",
        "",
        f"- performance: {r.get('validity')}, {r.get('samples_per_second', 0):.3f} samples/s "
        f"(run `{perf.path.name}`, SUT `{r.get('sut')}`)",
        f"- accuracy: `{(acc.path / 'accuracy.txt').read_text().splitlines()[0] if (acc.path / 'accuracy.txt').is_file() else '-'}` "
        f"(run `{acc.path.name}`)",
        "",
        "## Reproduce",
        "",
        "```bash",
        f"raybench run --workload {perf.workload} --sut {r.get('sut')} --scenario {scenario} --user-conf user.conf "
        f"--set round={opts.version}",
        f"raybench run --workload {perf.workload} --sut {r.get('sut')} --scenario {scenario} --user-conf user.conf "
        f"--set round={opts.version} --mode AccuracyOnly",
        "```",
        "",
        "The performance run's full configuration (its `config.yaml`):",
        "",
        "```yaml",
        yaml.safe_dump(perf.config, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    return "\n".join(lines)
