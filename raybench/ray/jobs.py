"""Launching raybench on a remote Ray cluster with Ray's job submission, and fetching results.

How a submitted run works (``raybench submit -- run ...``):

1. The client uploads the working directory (minus :data:`DEFAULT_EXCLUDES`) as the job's
   ``runtime_env.working_dir`` and submits the entrypoint
   ``python -m raybench.ray.jobs exec --out <remote_out> [--pack] -- run ...``.
2. On the cluster, the job driver (on the head node) runs ``python -m raybench.cli run ...`` with
   ``--out <remote_out>`` so the run directory lands on the head's disk (default
   ``~/raybench-results/<submission id>``; put it on shared storage for large runs).
3. With ``--pack`` (set by ``--fetch``), the driver then prints every new run directory as a
   base64 ``.tar.gz`` between marker lines in the job's log. The client reads the log back over the
   same dashboard HTTP API it submitted through, checks the SHA-256 and unpacks into ``--fetch``.
   No SSH, ``ray rsync`` or shared filesystem is needed; the cost is log size (records.npz of a
   long run can be tens of MB; ``--no-records`` leaves it on the head).

Authentication (Ray >= 2.52 token auth, on by default in 2.60): the token is read from
``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` and sent
as an ``Authorization: Bearer`` header. It is never printed, logged or put in the runtime_env.

Cluster conventions shared with ``cluster_configs/``: load-generator nodes carry the custom
resource :data:`LOADGEN_RESOURCE` and node label :data:`ROLE_LABEL` ``=`` :data:`LOADGEN_ROLE`;
GPU SUT nodes carry :data:`SUT_RESOURCE` and ``ROLE_LABEL=`` :data:`SUT_ROLE`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import os
import shlex
import subprocess
import sys
import tarfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "CLUSTER_SETTINGS",
    "DEFAULT_EXCLUDES",
    "LOADGEN_RESOURCE",
    "LOADGEN_ROLE",
    "ROLE_LABEL",
    "SUT_RESOURCE",
    "SUT_ROLE",
    "auth_headers",
    "build_entrypoint",
    "build_runtime_env",
    "exec_main",
    "extract_results",
    "pack_dirs",
    "read_auth_token",
    "submit",
]

LOADGEN_RESOURCE = "loadgen"
"""Custom resource on load-generator nodes (``ray.shard_resources={loadgen: 1}``)."""
SUT_RESOURCE = "sut"
"""Custom resource on SUT (GPU) nodes (``ray.replica_resources={sut: 1}``)."""
ROLE_LABEL = "raybench.io/role"
"""Node label key naming a node's role (``ray.shard_label=raybench.io/role=loadgen``)."""
LOADGEN_ROLE = "loadgen"
SUT_ROLE = "sut"
CLUSTER_SETTINGS = (
    f"ray.shard_resources={{{LOADGEN_RESOURCE}: 1}}",
    f"ray.replica_resources={{{SUT_RESOURCE}: 1}}",
)
"""``--set`` overrides that place shards and replicas on the node types of ``cluster_configs/``."""
DEFAULT_EXCLUDES = (
    ".git", ".venv", ".venv-*", ".cache", "results", "*.egg-info", "__pycache__", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", "*.npz", "*.pt", "*.safetensors",
)
"""Paths never uploaded with the working directory (gitignore syntax, as Ray's ``excludes``)."""
DEFAULT_REMOTE_OUT = "~/raybench-results"
_BEGIN = "=== RAYBENCH-RESULTS-BEGIN"
_END = "=== RAYBENCH-RESULTS-END ==="
_EXIT = "=== RAYBENCH-EXIT"
_LINE = 76


# ----------------------------------------------------------------------------------- auth
def read_auth_token(env: Mapping[str, str] | None = None, home: Path | None = None) -> str | None:
    """The Ray auth token: ``RAY_AUTH_TOKEN``, else the ``RAY_AUTH_TOKEN_PATH`` file, else ``~/.ray/auth_token``."""
    env = os.environ if env is None else env
    if env.get("RAY_AUTH_TOKEN", "").strip():
        return env["RAY_AUTH_TOKEN"].strip()
    path = Path(env["RAY_AUTH_TOKEN_PATH"]) if env.get("RAY_AUTH_TOKEN_PATH") else (home or Path.home()) / ".ray" / "auth_token"
    try:
        tok = path.read_text().strip()
    except OSError:
        return None
    return tok or None


def auth_headers(mode: str = "auto", env: Mapping[str, str] | None = None, home: Path | None = None) -> dict[str, str]:
    """HTTP headers for the job API.

    Args:
        mode: ``token`` (a token is required), ``none`` (send nothing) or ``auto`` (send the
            token when one is found, unless ``RAY_AUTH_MODE=disabled``). A cluster without token
            auth ignores the header, so ``auto`` is safe.

    Raises:
        ValueError: ``mode=token`` and no token was found, or an unknown mode.
    """
    env = os.environ if env is None else env
    if mode not in ("auto", "token", "none"):
        raise ValueError(f"--auth: must be auto, token or none, got {mode!r}")
    if mode == "none" or (mode == "auto" and env.get("RAY_AUTH_MODE", "").lower() == "disabled"):
        return {}
    tok = read_auth_token(env, home)
    if tok is None:
        if mode == "token":
            raise ValueError("--auth token: no token in RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
        return {}
    return {"Authorization": f"Bearer {tok}"}


# ----------------------------------------------------------------------------------- building
def _split_out(args: Sequence[str]) -> tuple[list[str], str | None]:
    """``args`` without ``--out/-o X`` and the value given (``None`` if absent)."""
    rest: list[str] = []
    out = None
    it = iter(range(len(args)))
    for i in it:
        a = args[i]
        if a in ("--out", "-o") and i + 1 < len(args):
            out = args[i + 1]
            next(it, None)
        elif a.startswith("--out="):
            out = a.split("=", 1)[1]
        else:
            rest.append(a)
    return rest, out


def build_entrypoint(raybench_args: Sequence[str], remote_out: str, pack: bool, no_records: bool = False, python: str = "python") -> str:
    """The job's shell command: the ``exec`` wrapper around ``raybench <raybench_args>``.

    Raises:
        ValueError: when ``raybench_args`` is empty.
    """
    if not raybench_args:
        raise ValueError("submit: give the raybench command after --, e.g. -- run --workload synthetic")
    cmd = [python, "-m", "raybench.ray.jobs", "exec", "--out", remote_out]
    if pack:
        cmd.append("--pack")
    if no_records:
        cmd.append("--no-records")
    return shlex.join([*cmd, "--", *raybench_args])


def build_runtime_env(
    working_dir: str | Path | None,
    excludes: Iterable[str] = DEFAULT_EXCLUDES,
    env_vars: Mapping[str, str] | None = None,
    pip: Sequence[str] = (),
    extra: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The job's runtime_env: working dir + excludes, env vars (never the auth token), pip.

    Raises:
        ValueError: when ``working_dir`` is not a directory or an env var would carry the token.
    """
    env: dict[str, Any] = dict(extra or {})
    if working_dir is not None:
        wd = Path(working_dir)
        if not wd.is_dir():
            raise ValueError(f"--working-dir: {wd} is not a directory")
        env["working_dir"] = str(wd.resolve())
        env["excludes"] = list(dict.fromkeys([*env.get("excludes", []), *excludes]))
    if env_vars:
        if "RAY_AUTH_TOKEN" in env_vars:
            raise ValueError("--env: RAY_AUTH_TOKEN must not go into the runtime_env (it is stored with the job)")
        env["env_vars"] = {**env.get("env_vars", {}), **{k: str(v) for k, v in env_vars.items()}}
    if pip:
        env["pip"] = list(pip)
    return env


# ----------------------------------------------------------------------------------- results
def pack_dirs(dirs: Sequence[Path], root: Path, exclude: Sequence[str] = ()) -> bytes:
    """A ``.tar.gz`` of ``dirs`` with names relative to ``root``, leaving out file names in ``exclude``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for d in dirs:
            tar.add(d, arcname=str(d.relative_to(root)), filter=lambda ti: None if Path(ti.name).name in exclude else ti)
    return buf.getvalue()


def emit_results(blob: bytes, write: Callable[[str], None]) -> None:
    """Print ``blob`` as marker-framed base64 lines: ``BEGIN <sha256> <nbytes>``, data, ``END``."""
    digest = hashlib.sha256(blob).hexdigest()
    b64 = base64.b64encode(blob).decode("ascii")
    write(f"{_BEGIN} {digest} {len(blob)} ===")
    for i in range(0, len(b64), _LINE):
        write(b64[i : i + _LINE])
    write(_END)


def extract_results(logs: str) -> bytes | None:
    """The last marker-framed blob in a job's logs (``None`` if there is none).

    Raises:
        ValueError: when the blob is truncated or its SHA-256 does not match.
    """
    start = logs.rfind(_BEGIN)
    if start < 0:
        return None
    header, _, rest = logs[start:].partition("\n")
    parts = header.split()
    end = rest.find(_END)
    if end < 0 or len(parts) < 4:
        raise ValueError("job logs: the results block is truncated (the job was killed while printing it?)")
    blob = base64.b64decode("".join(ln.strip() for ln in rest[:end].splitlines()))
    digest, size = parts[2], int(parts[3])
    if len(blob) != size or hashlib.sha256(blob).hexdigest() != digest:
        raise ValueError("job logs: the results block is corrupt (checksum mismatch)")
    return blob


def unpack_results(blob: bytes, dest: Path) -> list[Path]:
    """Unpack a results blob into ``dest``; returns the top-level run directories."""
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        tops = sorted({Path(m.name).parts[0] for m in tar.getmembers() if m.name})
        tar.extractall(dest, filter="data")
    return [dest / t for t in tops]


def exit_code_from_logs(logs: str) -> int | None:
    """The raybench exit code the ``exec`` wrapper printed (``None`` if absent)."""
    i = logs.rfind(_EXIT)
    if i < 0:
        return None
    try:
        return int(logs[i:].split()[2])
    except (IndexError, ValueError):
        return None


def exec_main(argv: Sequence[str], write: Callable[[str], None] = print) -> int:
    """The job-side wrapper: ``exec --out DIR [--pack] [--no-records] -- <raybench args>``.

    Runs ``python -m raybench.cli <args> --out DIR`` (an ``--out`` in the args wins), then, with
    ``--pack``, prints every directory that appeared under the results root, and finally the
    exit code line. Returns raybench's exit code.
    """
    argv = list(argv)
    sep = argv.index("--") if "--" in argv else len(argv)
    opts, args = argv[:sep], argv[sep + 1 :]
    pack = "--pack" in opts
    no_records = "--no-records" in opts
    out = opts[opts.index("--out") + 1] if "--out" in opts else DEFAULT_REMOTE_OUT
    args, user_out = _split_out(args)
    root = Path(os.path.expanduser(user_out or out))
    root.mkdir(parents=True, exist_ok=True)
    if args and args[0] in ("run", "sweep"):
        args = [*args, "--out", str(root)]
    before = {p.name for p in root.iterdir()}
    t0 = time.time()
    code = subprocess.call([sys.executable, "-m", "raybench.cli", *args])
    sys.stdout.flush()
    new = sorted(p for p in root.iterdir() if p.is_dir() and (p.name not in before or p.stat().st_mtime >= t0))
    write(f"raybench: results on {os.uname().nodename}:{root}: {', '.join(p.name for p in new) or '(none)'}")
    if pack and new:
        emit_results(pack_dirs(new, root, exclude=("records.npz",) if no_records else ()), write)
    write(f"{_EXIT} {code} ===")
    return code


# ----------------------------------------------------------------------------------- client
def _client(address: str | None, headers: dict[str, str]) -> Any:
    from ray.job_submission import JobSubmissionClient

    return JobSubmissionClient(address, headers=headers or None)


def _print_logs(text: str, echo: Callable[[str], None]) -> None:
    """Echo job logs, hiding the base64 results block."""
    inside = False
    for line in text.splitlines():
        if line.startswith(_BEGIN):
            inside = True
            echo("raybench: (results block received)")
        elif line.startswith(_END):
            inside = False
        elif not inside:
            echo(line)


def submit(
    raybench_args: Sequence[str],
    *,
    address: str | None = None,
    working_dir: str | Path | None = ".",
    fetch: str | Path | None = None,
    remote_out: str | None = None,
    no_records: bool = False,
    env_vars: Mapping[str, str] | None = None,
    pip: Sequence[str] = (),
    auth: str = "auto",
    wait: bool = True,
    poll_s: float = 2.0,
    echo: Callable[[str], None] = print,
    client_factory: Callable[[str | None, dict[str, str]], Any] = _client,
) -> tuple[str, int, list[Path]]:
    """Submit ``raybench <raybench_args>`` as a Ray job; optionally wait and fetch the run dirs.

    Returns:
        ``(submission_id, exit_code, fetched_run_dirs)``; ``exit_code`` is raybench's (0 VALID,
        1 INVALID, 2 usage error) when the job printed it, else 0 for SUCCEEDED and 1 otherwise;
        ``-1`` without ``wait``.
    """
    headers = auth_headers(auth)
    sid = f"raybench-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.urandom(3).hex()}"
    out = remote_out or f"{DEFAULT_REMOTE_OUT}/{sid}"
    entry = build_entrypoint(raybench_args, out, pack=fetch is not None, no_records=no_records)
    runtime_env = build_runtime_env(working_dir, env_vars=env_vars, pip=pip)
    client = client_factory(address, headers)
    sid = client.submit_job(entrypoint=entry, runtime_env=runtime_env, submission_id=sid, metadata={"tool": "raybench"})
    echo(f"raybench: submitted job {sid}; results go to {out} on the head node")
    if not wait:
        return sid, -1, []
    terminal = {"SUCCEEDED", "FAILED", "STOPPED"}
    status = ""
    while status not in terminal:
        time.sleep(poll_s)
        st = client.get_job_status(sid)
        status = str(getattr(st, "value", st))
    logs = client.get_job_logs(sid)
    _print_logs(logs, echo)
    code = exit_code_from_logs(logs)
    if code is None:
        code = 0 if status == "SUCCEEDED" else 1
    fetched: list[Path] = []
    if fetch is not None:
        blob = extract_results(logs)
        if blob is None:
            echo("raybench: no results block in the job logs (the run wrote no run directory?)")
        else:
            fetched = unpack_results(blob, Path(fetch))
            echo("raybench: fetched " + ", ".join(str(p) for p in fetched))
    echo(f"raybench: job {sid} {status}")
    return sid, code, fetched


if __name__ == "__main__":  # the job-side entrypoint: python -m raybench.ray.jobs exec ...
    if len(sys.argv) < 2 or sys.argv[1] != "exec":
        sys.exit("usage: python -m raybench.ray.jobs exec --out DIR [--pack] [--no-records] -- <raybench args>")
    sys.exit(exec_main(sys.argv[2:], write=lambda s: print(s, flush=True)))
