"""cluster_configs/ agree with what raybench places by, and the job submission path (no cluster)."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from raybench.config import RayConfig, load_run_config
from raybench.ray import jobs
from raybench.ray.jobs import (
    CLUSTER_SETTINGS,
    LOADGEN_RESOURCE,
    LOADGEN_ROLE,
    ROLE_LABEL,
    SUT_RESOURCE,
    SUT_ROLE,
    auth_headers,
    build_entrypoint,
    build_runtime_env,
    extract_results,
    read_auth_token,
)

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "cluster_configs"
LAUNCHER = ("aws.yaml", "gcp.yaml", "local.yaml")
KUBERAY = ("kuberay-raycluster.yaml", "kuberay-rayjob.yaml")


def _load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((CONFIGS / name).read_text()) if d]


def test_every_file_loads_and_is_documented() -> None:
    files = sorted(p.name for p in CONFIGS.glob("*.yaml"))
    assert files == sorted(LAUNCHER + KUBERAY)
    readme = (CONFIGS / "README.md").read_text()
    for f in files:
        assert _load(f), f
        assert f in readme, f
    for field in ("shard_resources", "replica_resources", "replica_num_gpus", "shard_label"):
        assert field in RayConfig.model_fields  # the README's settings exist
        assert f"ray.{field}" in readme


@pytest.mark.parametrize("name", ["aws.yaml", "gcp.yaml"])
def test_cloud_launcher_node_types(name: str) -> None:
    (cfg,) = _load(name)
    types = cfg["available_node_types"]
    head = types[cfg["head_node_type"]]
    assert head["resources"] == {"CPU": 0}  # nothing of a benchmark runs on the head
    load = [t for t in types.values() if t.get("resources", {}).get(LOADGEN_RESOURCE) == 1]
    sut = [t for t in types.values() if t.get("resources", {}).get(SUT_RESOURCE) == 1]
    assert len(load) == 1 and len(sut) == 1
    assert load[0]["labels"] == {ROLE_LABEL: LOADGEN_ROLE}
    assert sut[0]["labels"] == {ROLE_LABEL: SUT_ROLE}
    gpu_type = sut[0]["node_config"].get("InstanceType") or sut[0]["node_config"].get("machineType")
    assert gpu_type == {"aws.yaml": "p5.48xlarge", "gcp.yaml": "a3-highgpu-8g"}[name]
    assert cfg["file_mounts"] == {"~/.ray/auth_token": "~/.ray/raybench_cluster_token"}


def test_launcher_files_match_rays_schema() -> None:
    ray = pytest.importorskip("ray")
    jsonschema = pytest.importorskip("jsonschema")
    schema = json.loads((Path(ray.__file__).parent / "autoscaler" / "ray-schema.json").read_text())
    for name in LAUNCHER:
        jsonschema.validate(_load(name)[0], schema)


def test_local_provider_assigns_roles_at_start() -> None:
    (cfg,) = _load("local.yaml")
    assert cfg["provider"]["type"] == "local"
    cmd = " ".join(cfg["worker_start_ray_commands"])
    assert f"--resources='{{\"{SUT_RESOURCE}\": 1}}' --labels={ROLE_LABEL}={SUT_ROLE}" in cmd
    assert f"--resources='{{\"{LOADGEN_RESOURCE}\": 1}}' --labels={ROLE_LABEL}={LOADGEN_ROLE}" in cmd


def _groups(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    spec = doc["spec"].get("rayClusterSpec", doc["spec"])
    return {g["groupName"]: g for g in spec["workerGroupSpecs"]}


@pytest.mark.parametrize("name", KUBERAY)
def test_kuberay_worker_groups(name: str) -> None:
    (doc,) = _load(name)
    assert doc["apiVersion"] == "ray.io/v1" and doc["kind"] == {"kuberay-raycluster.yaml": "RayCluster", "kuberay-rayjob.yaml": "RayJob"}[name]
    groups = _groups(doc)
    assert set(groups) == {"loadgen", "sut-h100"}
    assert json.loads(json.loads(groups["loadgen"]["rayStartParams"]["resources"])) == {LOADGEN_RESOURCE: 1}
    assert json.loads(json.loads(groups["sut-h100"]["rayStartParams"]["resources"])) == {SUT_RESOURCE: 1}
    assert groups["loadgen"]["labels"] == {ROLE_LABEL: LOADGEN_ROLE}
    assert groups["sut-h100"]["labels"] == {ROLE_LABEL: SUT_ROLE}
    limits = groups["sut-h100"]["template"]["spec"]["containers"][0]["resources"]["limits"]
    assert limits["nvidia.com/gpu"] == "8"
    assert "nvidia.com/gpu" not in groups["loadgen"]["template"]["spec"]["containers"][0]["resources"]["limits"]


def test_labels_are_valid_ray_labels() -> None:
    label_utils = pytest.importorskip("ray._private.label_utils")
    assert label_utils.parse_node_labels_string(f"{ROLE_LABEL}={SUT_ROLE}") == {ROLE_LABEL: SUT_ROLE}
    assert label_utils.validate_label_key(ROLE_LABEL) is None


def test_rayjob_entrypoint_is_a_valid_raybench_run() -> None:
    (doc,) = _load("kuberay-rayjob.yaml")
    argv = shlex.split(doc["spec"]["entrypoint"])
    assert argv[:4] == ["python", "-m", "raybench.ray.jobs", "exec"]
    run = argv[argv.index("--") + 1 :]
    assert run[0] == "run"
    sets = [run[i + 1] for i, a in enumerate(run) if a == "--set"]
    cfg = load_run_config(None, [f"workload={run[run.index('--workload') + 1]}", f"sut={run[run.index('--sut') + 1]}", *sets])
    assert cfg.workload.name == "yolo11" and cfg.sut is not None and cfg.sut.params["device"] == "cuda"
    assert cfg.ray.shard_resources == {LOADGEN_RESOURCE: 1.0}
    assert cfg.ray.replica_resources == {SUT_RESOURCE: 1.0}


def test_cluster_settings_parse_to_the_resources() -> None:
    cfg = load_run_config(None, ["workload=synthetic", *CLUSTER_SETTINGS, f"ray.shard_label={ROLE_LABEL}={LOADGEN_ROLE}"])
    assert cfg.ray.shard_resources == {"loadgen": 1.0} and cfg.ray.replica_resources == {"sut": 1.0}
    assert cfg.ray.shard_label == "raybench.io/role=loadgen"


# ---------------------------------------------------------------------------------- submission
def test_auth_token_sources(tmp_path: Path) -> None:
    (tmp_path / ".ray").mkdir()
    (tmp_path / ".ray" / "auth_token").write_text("tok-home\n")
    (tmp_path / "t").write_text("tok-path")
    assert read_auth_token({}, tmp_path) == "tok-home"
    assert read_auth_token({"RAY_AUTH_TOKEN_PATH": str(tmp_path / "t")}, tmp_path) == "tok-path"
    assert read_auth_token({"RAY_AUTH_TOKEN": "tok-env", "RAY_AUTH_TOKEN_PATH": str(tmp_path / "t")}, tmp_path) == "tok-env"
    assert auth_headers("auto", {}, tmp_path) == {"Authorization": "Bearer tok-home"}
    assert auth_headers("auto", {"RAY_AUTH_MODE": "disabled"}, tmp_path) == {}
    assert auth_headers("none", {}, tmp_path) == {}
    assert auth_headers("auto", {}, tmp_path / "empty") == {}
    with pytest.raises(ValueError, match="--auth token: no token"):
        auth_headers("token", {}, tmp_path / "empty")


def test_entrypoint_and_runtime_env(tmp_path: Path) -> None:
    entry = build_entrypoint(["run", "--workload", "synthetic", "--set", "sut.params={a: 1}"], "~/r/x", pack=True, no_records=True)
    assert shlex.split(entry) == ["python", "-m", "raybench.ray.jobs", "exec", "--out", "~/r/x", "--pack", "--no-records", "--",
                                  "run", "--workload", "synthetic", "--set", "sut.params={a: 1}"]
    with pytest.raises(ValueError, match="give the raybench command"):
        build_entrypoint([], "x", pack=False)
    env = build_runtime_env(tmp_path, env_vars={"A": "1"}, pip=["httpx"])
    assert env["working_dir"] == str(tmp_path.resolve())
    assert {".git", ".venv", "results"} <= set(env["excludes"])
    assert env["env_vars"] == {"A": "1"} and env["pip"] == ["httpx"]
    with pytest.raises(ValueError, match="RAY_AUTH_TOKEN must not"):
        build_runtime_env(tmp_path, env_vars={"RAY_AUTH_TOKEN": "x"})
    with pytest.raises(ValueError, match="--working-dir"):
        build_runtime_env(tmp_path / "nope")


def test_exec_wrapper_packs_results_that_the_client_unpacks(tmp_path: Path) -> None:
    """The job side for real (a quick in-process run), then the client side from its log."""
    out = tmp_path / "remote"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    cmd = [sys.executable, "-m", "raybench.ray.jobs", "exec", "--out", str(out), "--pack", "--",
           "run", "--workload", "synthetic", "--sut", "fake", "--scenario", "Offline", "--executor", "inprocess",
           "--set", "workload.params.count=64", "--set", "workload.params.performance_count=64",
           "--set", "settings.min_duration_ms=0", "--set", "settings.min_query_count=1", "--quiet", "--no-report"]
    res = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert res.returncode in (0, 1), res.stderr[-2000:]
    assert jobs.exit_code_from_logs(res.stdout) == res.returncode
    blob = extract_results(res.stdout)
    assert blob is not None
    (remote_run,) = list(out.iterdir())
    got = jobs.unpack_results(blob, tmp_path / "local")
    assert [p.name for p in got] == [remote_run.name]
    assert (got[0] / "result.json").read_bytes() == (remote_run / "result.json").read_bytes()
    log = res.stdout.split("\n")
    first = next(i for i, ln in enumerate(log) if ln.startswith("=== RAYBENCH-RESULTS-BEGIN")) + 1
    log[first] = ("B" if log[first][0] != "B" else "C") + log[first][1:]
    corrupt = "\n".join(log)
    with pytest.raises(ValueError, match="corrupt"):
        extract_results(corrupt)


class _FakeClient:
    """Stands in for JobSubmissionClient: records the submission, replays a canned log."""

    def __init__(self, logs: str) -> None:
        self.logs = logs
        self.submitted: dict[str, Any] = {}
        self.headers: dict[str, str] = {}

    def submit_job(self, **kw: Any) -> str:
        self.submitted = kw
        return kw["submission_id"]

    def get_job_status(self, sid: str) -> str:
        return "FAILED"

    def get_job_logs(self, sid: str) -> str:
        return self.logs


def test_submit_builds_the_job_and_fetches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run_dir = tmp_path / "remote" / "20260101T000000-synthetic-Offline"
    run_dir.mkdir(parents=True)
    (run_dir / "result.json").write_text('{"validity": "INVALID"}')
    lines: list[str] = ["hello from the job"]
    jobs.emit_results(jobs.pack_dirs([run_dir], run_dir.parent), lines.append)
    lines.append("=== RAYBENCH-EXIT 1 ===")
    fake = _FakeClient("\n".join(lines) + "\n")

    def factory(address: str | None, headers: dict[str, str]) -> _FakeClient:
        fake.headers = headers
        return fake

    monkeypatch.setenv("RAY_AUTH_TOKEN", "s3cret-token")
    monkeypatch.delenv("RAY_AUTH_MODE", raising=False)
    echoed: list[str] = []
    sid, code, fetched = jobs.submit(["run", "--workload", "synthetic"], address="http://h:8265", working_dir=tmp_path,
                                     fetch=tmp_path / "back", poll_s=0, echo=echoed.append, client_factory=factory)
    assert code == 1  # raybench's own exit code (INVALID), not just the job status
    assert fake.headers == {"Authorization": "Bearer s3cret-token"}
    assert "s3cret-token" not in json.dumps(fake.submitted) and not any("s3cret" in e for e in echoed)
    argv = shlex.split(fake.submitted["entrypoint"])
    assert argv[argv.index("--out") + 1] == f"~/raybench-results/{sid}" and "--pack" in argv
    assert fake.submitted["runtime_env"]["working_dir"] == str(tmp_path.resolve())
    assert [p.name for p in fetched] == [run_dir.name]
    assert json.loads((tmp_path / "back" / run_dir.name / "result.json").read_text()) == {"validity": "INVALID"}
    assert "hello from the job" in echoed and not any(e.startswith("=== RAYBENCH-RESULTS-BEGIN") for e in echoed)


def test_cli_submit_usage_errors() -> None:
    runner = CliRunner()
    res = runner.invoke(app_(), ["submit", "--env", "NOEQUALS", "--", "run"])
    assert res.exit_code == 2 and "--env 'NOEQUALS': expected KEY=VALUE" in res.output
    res = runner.invoke(app_(), ["submit", "--working-dir", "/nonexistent-dir", "--", "run"])
    assert res.exit_code == 2 and "--working-dir: /nonexistent-dir is not a directory" in res.output


def app_() -> Any:
    from raybench.cli import app

    return app


class _AgentNotReady(_FakeClient):
    """A head whose job agent registers after ``fails`` submissions (HTTP 500 until then)."""

    def __init__(self, fails: int) -> None:
        super().__init__("=== RAYBENCH-EXIT 0 ===\n")
        self.fails, self.calls = fails, 0

    def submit_job(self, **kw: Any) -> str:
        self.calls += 1
        if self.calls <= self.fails:
            raise RuntimeError("Request failed with status code 500: No available agent to submit job, "
                               "please try again later..")
        return super().submit_job(**kw)


def test_submit_waits_for_a_fresh_heads_job_agent(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jobs.time, "sleep", lambda s: None)
    fake = _AgentNotReady(fails=2)
    echoed: list[str] = []
    sid, code, _ = jobs.submit(["run"], address="http://h:8265", working_dir=None, wait=False, auth="none",
                               echo=echoed.append, client_factory=lambda a, h: fake)
    assert fake.calls == 3 and fake.submitted["submission_id"] == sid and code == -1
    assert sum("job agent is not ready yet" in e for e in echoed) == 2
    # Past AGENT_WAIT_S the error is the dashboard's, in one line.
    monkeypatch.setattr(jobs, "AGENT_WAIT_S", 0.0)
    with pytest.raises(jobs.SubmitError, match="No available agent") as err:
        jobs.submit(["run"], address="http://h:8265", working_dir=None, wait=False, auth="none",
                    echo=echoed.append, client_factory=lambda a, h: _AgentNotReady(fails=5))
    assert "\n" not in str(err.value)
