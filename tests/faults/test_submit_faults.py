"""``raybench submit`` keeps secrets home and fails in one line on a bad dashboard.

The real ``JobSubmissionClient`` talks HTTP to the fake dashboard of ``conftest.py``; no Ray
cluster is started. The CLI runs as a subprocess where the exact stderr matters (one line, no
traceback), in-process (``CliRunner``) for the many hostile-archive variants.
"""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import tarfile
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from raybench.ray import jobs

ROOT = Path(__file__).resolve().parents[2]
# Built at run time so that this file itself does not look like a key to the upload scan.
KEY = "-----BEGIN " + "OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n-----END " + "OPENSSH PRIVATE KEY-----\n"
AWS = "[default]\naws_access_key_id = AKIAEXAMPLE\naws_secret" + "_access_key = " + "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY\n"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_ADDRESS", "RAY_AUTH_TOKEN", "RAY_API_SERVER"))}
    env.update(PYTHONPATH=str(ROOT), HOME=str(home), RAY_AUTH_MODE="disabled", **extra)
    return env


def _submit(tmp_path: Path, url: str, *opts: str, **env: str) -> subprocess.CompletedProcess[str]:
    """``raybench submit`` as a user runs it (a subprocess: real stderr, real exit code)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "raybench.cli", "submit", "--address", url, *opts, "--", "run", "--workload", "synthetic"]
    return subprocess.run(cmd, capture_output=True, text=True, env=_env(home, **env), cwd=tmp_path, timeout=60)


def _one_error_line(res: subprocess.CompletedProcess[str]) -> str:
    assert "Traceback" not in res.stdout + res.stderr, res.stderr
    lines = res.stderr.splitlines()
    assert len(lines) == 1, res.stderr
    return lines[0]


def _write(root: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        p = root / name
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root


# ------------------------------------------------------------------------------------ secrets
def test_credentials_are_never_uploaded(tmp_path: Path, dashboard: Any) -> None:
    wd = _write(tmp_path / "wd", {
        "bench.yaml": "workload: synthetic\n", "notes.md": "hello\n",
        ".ray/auth_token": "tok", ".env": "OPENAI_API_KEY=sk-x\n", ".env.local": "A=1\n", "sub/.env": "B=2\n",
        ".ssh/id_ed25519": KEY, "id_rsa": KEY, "id_rsa.pub": "ssh-rsa AAAA\n", "id_ecdsa": KEY,
        "certs/server.pem": KEY, "certs/tls.key": KEY, "cert.p12": "x", "cert.pfx": "x",
        ".netrc": "machine h login u password p\n", ".git-credentials": "https://u:p@h\n",
        ".aws/credentials": AWS, ".config/gcloud/application_default_credentials.json": KEY,
    })
    with dashboard() as dash:
        res = _submit(tmp_path, dash.url, "--working-dir", str(wd))
        assert res.returncode == 0, res.stderr
        assert dash.uploaded_names() == {"bench.yaml", "notes.md"}
        assert {".ray/", ".env*", ".ssh/", "*.pem"} <= set(dash.jobs[0]["runtime_env"]["excludes"])
    assert "uploading" in res.stdout and "(2 file(s)," in res.stdout


def test_key_found_by_content_is_refused_in_one_line_before_any_request(tmp_path: Path, dashboard: Any) -> None:
    (tmp_path / "outside").mkdir()
    (tmp_path / "outside" / "k.txt").write_text(KEY)
    wd = _write(tmp_path / "wd", {"bench.yaml": "x: 1\n", "notes/deploy.txt": KEY, "creds.ini": AWS})
    (wd / "linked.txt").symlink_to(tmp_path / "outside" / "k.txt")  # Ray zips what a symlink points to
    with dashboard() as dash:
        res = _submit(tmp_path, dash.url, "--working-dir", str(wd))
        assert dash.requests == []  # refused before the dashboard heard anything
        allowed = _submit(tmp_path, dash.url, "--working-dir", str(wd), "--allow-secrets")
        uploaded = dash.uploaded_names()
    assert res.returncode == 2
    assert _one_error_line(res) == (
        "raybench: error: --working-dir: creds.ini looks like an AWS secret key (and 2 more: linked.txt, "
        "notes/deploy.txt); it would be uploaded and stored with the job: move it out, list it in .rayignore, "
        "or pass --allow-secrets")
    assert allowed.returncode == 0, allowed.stderr
    assert uploaded == {"bench.yaml", "notes/deploy.txt", "creds.ini", "linked.txt"}


def test_secret_named_env_var_is_refused_unless_allowed(tmp_path: Path, dashboard: Any,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    from raybench.cli import app

    wd = _write(tmp_path / "wd", {"a.yaml": "x"})
    args = ["--working-dir", str(wd), "--env", "TOKENIZERS_PARALLELISM=false", "--env", "OPENAI_API_KEY=sk-live-123"]
    with dashboard() as dash:
        res = CliRunner().invoke(app, ["submit", "--address", dash.url, *args, "--", "run"])
        assert dash.requests == []
        ok = CliRunner().invoke(app, ["submit", "--address", dash.url, *args, "--allow-secrets", "--", "run"])
    assert res.exit_code == 2 and "sk-live-123" not in res.output
    assert res.stderr.splitlines() == [
        "raybench: error: --env OPENAI_API_KEY: looks like a secret, and env vars are stored with the job (ray job "
        "list shows them): set it in the cluster's environment (e.g. a Kubernetes Secret) and name it with "
        "sut.params.api_key_env, or pass --allow-secrets"]
    assert ok.exit_code == 0, ok.output
    assert dash.jobs[0]["runtime_env"]["env_vars"]["OPENAI_API_KEY"] == "sk-live-123"


def test_raybench_own_tree_passes_the_scan() -> None:
    """Submitting from the repository must work: no file here (tests included) looks like a key."""
    files = jobs.upload_files(ROOT, jobs.DEFAULT_EXCLUDES)
    assert any(f.name == "jobs.py" for f in files)
    assert jobs.find_secrets(files) == []


# ------------------------------------------------------------------------------ bad dashboard
def test_dashboard_401_without_a_token(tmp_path: Path, dashboard: Any) -> None:
    with dashboard(token="right-token") as dash:
        res = _submit(tmp_path, dash.url, "--working-dir", str(_write(tmp_path / "wd", {"a.yaml": "x"})), "--auth", "none")
        sent = list(dash.requests)
    assert res.returncode == 2
    assert _one_error_line(res) == (
        f"raybench: error: dashboard {dash.url} refused GET /api/version: HTTP 401 (token authentication is on "
        "and no token was sent: set RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token)")
    assert sent == [("GET", "/api/version")]  # nothing uploaded, nothing submitted


def test_dashboard_403_with_a_wrong_token(tmp_path: Path, dashboard: Any) -> None:
    with dashboard(token="right-token") as dash:
        res = _submit(tmp_path, dash.url, "--working-dir", str(_write(tmp_path / "wd", {"a.yaml": "x"})),
                      "--auth", "token", RAY_AUTH_TOKEN="wrong-token-4711")
    assert res.returncode == 2
    line = _one_error_line(res)
    assert line.startswith(f"raybench: error: dashboard {dash.url} refused GET /api/version: HTTP 403 (the token was rejected")
    assert "wrong-token-4711" not in res.stdout + res.stderr


def test_no_dashboard_at_the_address(tmp_path: Path, dashboard: Any) -> None:
    with dashboard() as dash:
        url = dash.url
    res = _submit(tmp_path, url, "--working-dir", str(_write(tmp_path / "wd", {"a.yaml": "x"})))
    assert res.returncode == 2
    assert _one_error_line(res) == f"raybench: error: cannot reach the Ray dashboard at {url} (GET /api/version): Connection refused"


def test_address_is_not_a_ray_dashboard(tmp_path: Path, dashboard: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    from raybench.cli import app

    with dashboard(not_ray=True) as dash:
        res = CliRunner().invoke(app, ["submit", "--address", dash.url, "--working-dir",
                                       str(_write(tmp_path / "wd", {"a.yaml": "x"})), "--", "run"])
    assert res.exit_code == 2
    assert res.stderr.splitlines() == [f"raybench: error: {dash.url} is not a Ray dashboard (GET /api/version: HTTP 404); "
                                       "check the address (the dashboard port is usually 8265)"]


def test_dashboard_vanishes_after_the_job_is_submitted(tmp_path: Path, dashboard: Any) -> None:
    with dashboard(vanish_after_submit=True) as dash:
        res = _submit(tmp_path, dash.url, "--working-dir", str(_write(tmp_path / "wd", {"a.yaml": "x"})),
                      "--lost-after", "0")
        assert len(dash.jobs) == 1
    sid = dash.jobs[0]["submission_id"]
    assert res.returncode == jobs.EXIT_DASHBOARD_LOST == 3
    line = _one_error_line(res)
    assert re.fullmatch(
        rf"raybench: error: lost the Ray dashboard at {re.escape(dash.url)} after submitting job {sid}: "
        rf"(Connection refused|connection closed without a response); the job may still be running "
        rf"\(results stay on the head in ~/raybench-results/{sid}\)", line), line


# ------------------------------------------------------------------------------- hostile tar
def _tar(*members: tuple[tarfile.TarInfo, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        ok = tarfile.TarInfo("run/result.json")
        ok.size = 2
        tar.addfile(ok, io.BytesIO(b"{}"))  # a harmless member first: it must not be written either
        for info, data in members:
            info.size = len(data) if info.isfile() else 0
            tar.addfile(info, io.BytesIO(data) if info.isfile() else None)
    return buf.getvalue()


def _member(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tuple[tarfile.TarInfo, bytes]:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    if kind == tarfile.CHRTYPE:
        info.devmajor, info.devminor = 1, 3
    return info, b"pwned" if kind == tarfile.REGTYPE else b""


HOSTILE = {
    "dotdot": (lambda t: _tar(_member("../escaped.txt")), "unsafe tar member '../escaped.txt': path escapes the destination"),
    "nested_dotdot": (lambda t: _tar(_member("run/../../escaped.txt")),
                      "unsafe tar member 'run/../../escaped.txt': path escapes the destination"),
    "absolute": (lambda t: _tar(_member(str(t / "abs.txt"))), "absolute path"),
    "symlink_out": (lambda t: _tar(_member("run/link", tarfile.SYMTYPE, "../../outside")),
                    "unsafe tar member 'run/link': symlink points outside the destination ('../../outside')"),
    "symlink_abs": (lambda t: _tar(_member("run/link", tarfile.SYMTYPE, str(t / "target"))), "symlink to an absolute path"),
    "symlink_then_write": (lambda t: _tar(_member("run/d", tarfile.SYMTYPE, str(t)), _member("run/d/through.txt")),
                           "symlink to an absolute path"),
    "hardlink_out": (lambda t: _tar(_member("run/hard", tarfile.LNKTYPE, "../outside.txt")),
                     "unsafe tar member 'run/hard': hard link points outside the destination ('../outside.txt')"),
    "device": (lambda t: _tar(_member("run/null", tarfile.CHRTYPE)),
               "unsafe tar member 'run/null': device, fifo or other special file"),
    "fifo": (lambda t: _tar(_member("run/pipe", tarfile.FIFOTYPE)),
             "unsafe tar member 'run/pipe': device, fifo or other special file"),
    "not_a_tar": (lambda t: b"this is not gzip", "not a valid tar.gz (ReadError"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_hostile_results_are_refused_and_nothing_is_written(case: str, tmp_path: Path, dashboard: Any,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    make, reason = HOSTILE[case]
    box = tmp_path / "box"  # everything the archive aims at lives in here
    box.mkdir()
    blob = make(box)
    lines = ["job output \x1b]0;title\x07 with a terminal escape"]
    jobs.emit_results(blob, lines.append)
    lines.append("=== RAYBENCH-EXIT 0 ===")
    wd = _write(tmp_path / "wd", {"a.yaml": "x"})
    dest = box / "a" / "b" / "fetched"
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    for var in ("RAY_ADDRESS", "RAY_AUTH_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    from raybench.cli import app

    with dashboard(logs="\n".join(lines) + "\n") as dash:
        res = CliRunner().invoke(app, ["submit", "--address", dash.url, "--working-dir", str(wd), "--fetch", str(dest),
                                       "--", "run", "--workload", "synthetic"])
    sid = dash.jobs[0]["submission_id"]
    assert res.exit_code == jobs.EXIT_BAD_RESULTS == 4, res.output
    err = res.stderr.splitlines()
    assert len(err) == 1 and "Traceback" not in res.output
    assert err[0].startswith(f"raybench: error: results of job {sid} from {dash.url} rejected: "), err[0]
    assert reason in err[0] and err[0].endswith(f"; nothing unsafe written to {dest}")
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before  # not one file, anywhere
    assert "\x1b" not in res.stdout and "job output" in res.stdout


def test_safe_results_still_unpack(tmp_path: Path) -> None:
    run = tmp_path / "remote" / "20260101T000000-synthetic-Offline"
    (run / "plots").mkdir(parents=True)
    (run / "result.json").write_text("{}")
    (run / "plots" / "a.png").write_bytes(b"png")
    (run / "latest").symlink_to("result.json")  # a link that stays inside is fine
    got = jobs.unpack_results(jobs.pack_dirs([run], run.parent), tmp_path / "local")
    assert [p.name for p in got] == [run.name]
    assert (got[0] / "plots" / "a.png").read_bytes() == b"png" and (got[0] / "latest").read_text() == "{}"
