"""Launching raybench on a remote Ray cluster with Ray's job submission, and fetching results.

How a submitted run works (``raybench submit -- run ...``):

1. The client uploads the working directory (minus :data:`DEFAULT_EXCLUDES`, which keep
   credentials home, and after :func:`find_secrets` found no key-like file in what is left) as
   the job's ``runtime_env.working_dir`` and submits the entrypoint
   ``python -m raybench.ray.jobs exec --out <remote_out> [--pack] -- run ...``.
2. On the cluster, the job driver (on the head node) runs ``python -m raybench.cli run ...`` with
   ``--out <remote_out>`` so the run directory lands on the head's disk (default
   ``~/raybench-results/<submission id>``; put it on shared storage for large runs).
3. With ``--pack`` (set by ``--fetch``), the driver then prints every new run directory as a
   base64 ``.tar.gz`` between marker lines in the job's log. The client reads the log back over the
   same dashboard HTTP API it submitted through, checks the SHA-256, checks every tar member
   (:func:`unpack_results`: no absolute or ``..`` path, no link out, no device) and unpacks into
   ``--fetch``. No SSH, ``ray rsync`` or shared filesystem is needed; the cost is log size
   (records.npz of a long run can be tens of MB; ``--no-records`` leaves it on the head).

A bad dashboard ends :func:`submit` with a one-line :class:`SubmitError` that names the address:
exit 2 before the job was accepted (unreachable, 401/403, not a Ray dashboard),
:data:`EXIT_DASHBOARD_LOST` when it stopped answering after, :data:`EXIT_BAD_RESULTS` when the
fetched results were corrupt or unsafe.

Authentication (Ray >= 2.52 token auth, on by default in 2.60): the token is read from
``RAY_AUTH_TOKEN``, the file named by ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token`` and sent
as an ``Authorization: Bearer`` header. It is never printed, logged or put in the runtime_env.

Cluster conventions shared with ``cluster_configs/``: load-generator nodes carry the custom
resource :data:`LOADGEN_RESOURCE` and node label :data:`ROLE_LABEL` ``=`` :data:`LOADGEN_ROLE`;
GPU SUT nodes carry :data:`SUT_RESOURCE` and ``ROLE_LABEL=`` :data:`SUT_ROLE`.
"""

from __future__ import annotations

import base64
import contextlib
import fnmatch
import hashlib
import inspect
import io
import logging
import os
import re
import shlex
import subprocess
import sys
import tarfile
import time
import zlib
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "CLUSTER_SETTINGS",
    "DEFAULT_EXCLUDES",
    "EXIT_BAD_RESULTS",
    "EXIT_DASHBOARD_LOST",
    "EXIT_USAGE",
    "LOADGEN_RESOURCE",
    "LOADGEN_ROLE",
    "ROLE_LABEL",
    "SECRET_EXCLUDES",
    "SUT_RESOURCE",
    "SUT_ROLE",
    "SubmitError",
    "auth_headers",
    "build_entrypoint",
    "build_runtime_env",
    "exec_main",
    "extract_results",
    "find_secrets",
    "pack_dirs",
    "read_auth_token",
    "submit",
    "unpack_results",
    "upload_files",
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
SECRET_EXCLUDES = (
    ".ray/", ".env*", ".ssh/", "*.pem", "*.key", "id_rsa*", "id_dsa*", "id_ecdsa*", "id_ed25519*",
    "*.p12", "*.pfx", ".netrc", ".git-credentials", ".pgpass", ".aws/", "**/.config/gcloud/",
    ".kube/", ".docker/config.json", ".gnupg/",
)
"""Credentials never uploaded: the runtime_env package is stored on the cluster (GCS) with the job."""
DEFAULT_EXCLUDES = (
    ".git", ".venv", ".venv-*", ".cache", "results", "*.egg-info", "__pycache__", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", "*.npz", "*.pt", "*.safetensors", *SECRET_EXCLUDES,
)
"""Paths never uploaded with the working directory (gitignore syntax, as Ray's ``excludes``)."""
EXIT_USAGE = 2
"""A usage or config error: bad flag, key-like file in the upload, dashboard unreachable or 401/403."""
EXIT_DASHBOARD_LOST = 3
"""The job was submitted, then the dashboard stopped answering (the job may still be running)."""
EXIT_BAD_RESULTS = 4
"""The job's results block was corrupt or unsafe to unpack (nothing unsafe was written)."""
DEFAULT_REMOTE_OUT = "~/raybench-results"
_BEGIN = "=== RAYBENCH-RESULTS-BEGIN"
_END = "=== RAYBENCH-RESULTS-END ==="
_EXIT = "=== RAYBENCH-EXIT"
_LINE = 76


#: How long ``submit`` retries a head whose job agent has not registered yet.
AGENT_WAIT_S = 60.0


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


# ----------------------------------------------------------------------------------- secrets
# Content that marks a credential. Written so that this file does not match itself.
_SECRET_CONTENT = (
    (re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----"), "a private key"),
    (re.compile(rb"(?i:aws_secret_access_key)[\"']?\s*[=:]\s*[\"']?[A-Za-z0-9/+]{16,}"), "an AWS secret key"),
    (re.compile(rb"PuTTY-User-Key-File-\d+:"), "a PuTTY private key"),
)
_SCAN_BYTES = 1 << 20  # the head of each file: keys live in small files or at the top of big ones
_QUIET = logging.getLogger(__name__ + ".scan")


def upload_files(working_dir: str | Path, excludes: Iterable[str]) -> list[Path]:
    """The files Ray will pack for ``working_dir`` with these ``excludes``.

    Uses Ray's own traversal (``ray._private.runtime_env.packaging._dir_travel``: the excludes,
    ``.gitignore`` and ``.rayignore`` files, symlinks followed as the zip does), so the scan sees
    exactly what is uploaded. If that private helper changed, every file not under an excluded
    name is listed instead (a superset, never fewer).
    """
    wd = Path(working_dir).absolute()
    excludes = list(excludes)
    files: list[Path] = []

    def handler(path: Path) -> None:
        if path.is_file():
            files.append(path)

    try:
        from ray._private.runtime_env import packaging as pk

        params = inspect.signature(pk._dir_travel).parameters
        kw: dict[str, Any] = {"logger": _QUIET} if "logger" in params else {}
        if "include_gitignore" in params:  # newer Ray; RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 turns it off
            kw["include_gitignore"] = os.environ.get("RAY_RUNTIME_ENV_IGNORE_GITIGNORE", "0") != "1"
        pk._dir_travel(wd, [pk._get_excludes(wd, excludes)], handler, **kw)
        return files
    except (ImportError, AttributeError, TypeError, ValueError):
        files = []
    names = [e.strip("/").removeprefix("**/") for e in excludes if "/" not in e.strip("/").removeprefix("**/")]
    for root, dirs, fnames in os.walk(wd):
        dirs[:] = [d for d in dirs if not any(fnmatch.fnmatch(d, n) for n in names)]
        files += [Path(root) / f for f in fnames if not any(fnmatch.fnmatch(f, n) for n in names)]
    return [f for f in files if f.is_file()]


def find_secrets(files: Iterable[Path]) -> list[tuple[Path, str]]:
    """``(file, what)`` for every file whose first MiB looks like a credential.

    Looks for a PEM/OpenSSH/PGP ``PRIVATE KEY`` header, an ``aws_secret_access_key = ...`` line
    and a PuTTY key header. Unreadable files are skipped (Ray would fail on them anyway).
    """
    found: list[tuple[Path, str]] = []
    for f in files:
        try:
            with open(f, "rb") as fh:
                head = fh.read(_SCAN_BYTES)
        except OSError:
            continue
        for pattern, what in _SECRET_CONTENT:
            if pattern.search(head):
                found.append((f, what))
                break
    return found


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
    """Unpack a results blob into ``dest``; returns the top-level run directories.

    The blob comes from a job log read over HTTP, so it is checked as hostile: every member is
    checked before anything is written (:func:`_unsafe_member`: relative path without ``..``,
    a regular file, directory, or a link that stays inside), then extracted with tarfile's
    ``data`` filter as a second guard.

    Raises:
        ValueError: one line naming the first unsafe member or what is wrong with the archive;
            nothing was written (except when the ``data`` filter refuses later, inside ``dest``).
    """
    try:
        with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
            members = tar.getmembers()
            for m in members:
                why = _unsafe_member(m)
                if why:
                    raise ValueError(f"unsafe tar member {m.name!r}: {why}")
            tops = sorted({PurePosixPath(m.name).parts[0] for m in members})
            dest.mkdir(parents=True, exist_ok=True)
            tar.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, EOFError, zlib.error) as exc:
        raise ValueError(f"not a valid tar.gz ({type(exc).__name__}: {_one_line(str(exc))})") from None
    return [dest / t for t in tops]


def _unsafe_member(m: tarfile.TarInfo) -> str | None:
    """Why ``m`` must not be extracted (``None`` when it is a plain file, directory or inner link)."""
    if not (m.isfile() or m.isdir() or m.issym() or m.islnk()):
        return "device, fifo or other special file"
    name = PurePosixPath(m.name)
    if not name.parts:
        return "empty name"
    if m.name.startswith(("/", "\\")) or "\\" in m.name or re.match(r"[A-Za-z]:", m.name):
        return "absolute path"
    if ".." in name.parts:
        return "path escapes the destination"
    if m.issym():
        target = PurePosixPath(m.linkname)
        if target.is_absolute() or m.linkname.startswith("\\"):
            return f"symlink to an absolute path {m.linkname!r}"
        resolved = os.path.normpath(name.parent / target)
        if resolved == ".." or resolved.startswith("../"):
            return f"symlink points outside the destination ({m.linkname!r})"
    if m.islnk():
        target = PurePosixPath(m.linkname)
        if target.is_absolute() or ".." in target.parts:
            return f"hard link points outside the destination ({m.linkname!r})"
    return None


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
class SubmitError(Exception):
    """``raybench submit`` failed; the message is one line naming the problem (and the address).

    Attributes:
        code: the exit code (:data:`EXIT_USAGE`, :data:`EXIT_DASHBOARD_LOST`, :data:`EXIT_BAD_RESULTS`).
        unreachable: ``None``, or why the dashboard could not be reached (e.g. ``Connection refused``).
    """

    def __init__(self, message: str, code: int = EXIT_USAGE, unreachable: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.unreachable = unreachable


def _client(address: str | None, headers: dict[str, str]) -> Any:
    from ray.job_submission import JobSubmissionClient

    # Ray logs each upload step at INFO on stderr; we print our own line, and stderr stays for errors.
    for name in ("ray.dashboard.modules.dashboard_sdk", "ray._private.runtime_env.packaging"):
        logging.getLogger(name).setLevel(logging.WARNING)
    return JobSubmissionClient(address, headers=headers or None)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def _one_line(text: str, limit: int = 200, secret: str | None = None) -> str:
    """The first non-empty line of ``text``, without control characters, at most ``limit`` chars."""
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    if secret:
        line = line.replace(secret, "***")
    line = _CONTROL.sub("?", line)
    return line if len(line) <= limit else line[: limit - 3] + "..."


def _dashboard_name(address: str | None) -> str:
    """The dashboard address as the client will resolve it, without any user:password@ part."""
    a = address or os.environ.get("RAY_API_SERVER_ADDRESS") or os.environ.get("RAY_ADDRESS") or "(local Ray)"
    u = urlsplit(a)
    if u.netloc and "@" in u.netloc:
        a = u._replace(netloc=u.netloc.rsplit("@", 1)[1]).geturl()
    return a


def _is_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    try:
        import requests
    except ImportError:  # pragma: no cover - ray[default] brings requests
        return False
    return isinstance(exc, requests.exceptions.ConnectionError | requests.exceptions.Timeout)


def _dashboard_error(exc: BaseException, where: str, doing: str, token: str | None, code: int) -> SubmitError:
    """One line for a failed dashboard call: refused (401/403), unreachable, HTTP error, garbage."""
    text = str(exc)
    status: int | None = getattr(getattr(exc, "response", None), "status_code", None)
    m = re.search(r"status code (\d{3})|returned (\d{3})", text)
    if m:
        status = int(m.group(1) or m.group(2))
    if type(exc).__name__ == "AuthenticationError":  # ray.exceptions: Ray's own 401/403 check
        status = 401 if text.startswith("Authentication required") else 403
    if status == 401:
        hint = ("the token was not accepted" if token else
                "token authentication is on and no token was sent: set RAY_AUTH_TOKEN, "
                "RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token")
        return SubmitError(f"dashboard {where} refused {doing}: HTTP 401 ({hint})", code)
    if status == 403:
        return SubmitError(f"dashboard {where} refused {doing}: HTTP 403 (the token was rejected: "
                           "RAY_AUTH_TOKEN or ~/.ray/auth_token holds another cluster's token?)", code)
    if status == 404 and doing == "GET /api/version":
        return SubmitError(f"{where} is not a Ray dashboard (GET /api/version: HTTP 404); "
                           "check the address (the dashboard port is usually 8265)", code)
    if _is_unreachable(exc):
        text += f" {exc.__context__}"  # Ray re-raises requests' error as "Failed to connect to Ray ..."
        errno = re.search(r"\[Errno -?\d+\] ([^'\")]+)", text)
        why = errno.group(1).strip() if errno else (
            "connection closed without a response" if "Connection aborted" in text or "RemoteDisconnected" in text
            else "no answer")
        return SubmitError(f"cannot reach the Ray dashboard at {where} ({doing}): {why}", code, unreachable=why)
    if status is not None:
        return SubmitError(f"dashboard {where} answered HTTP {status} to {doing}: {_one_line(text, secret=token)}", code)
    return SubmitError(f"{doing} at {where} failed: {type(exc).__name__}: {_one_line(text, secret=token)}", code)


@contextlib.contextmanager
def _dashboard_call(where: str, doing: str, token: str | None, code: int = EXIT_USAGE) -> Iterator[None]:
    """Turn whatever a dashboard call raises into a one-line :class:`SubmitError`."""
    try:
        yield
    except SubmitError:
        raise
    except Exception as exc:  # noqa: BLE001 - requests, Ray and pydantic errors alike; one line each
        raise _dashboard_error(exc, where, doing, token, code) from None


def _print_logs(text: str, echo: Callable[[str], None]) -> None:
    """Echo job logs, hiding the base64 results block and any terminal control characters."""
    inside = False
    for line in text.splitlines():
        if line.startswith(_BEGIN):
            inside = True
            echo("raybench: (results block received)")
        elif line.startswith(_END):
            inside = False
        elif not inside:
            echo(_CONTROL.sub("?", line))


_SECRET_WORDS = {"KEY", "APIKEY", "TOKEN", "SECRET", "PASSWORD", "PASSWD", "CREDENTIALS", "CREDENTIAL"}


def _check_env_vars(env_vars: Mapping[str, str] | None) -> None:
    """Refuse (one line) ``--env`` names that look like secrets: the runtime_env is stored with the job."""
    for name in env_vars or {}:
        if _SECRET_WORDS & set(name.upper().split("_")):
            raise SubmitError(
                f"--env {name}: looks like a secret, and env vars are stored with the job (ray job list shows "
                "them): set it in the cluster's environment (e.g. a Kubernetes Secret) and name it with "
                "sut.params.api_key_env, or pass --allow-secrets", EXIT_USAGE)


def _check_upload(runtime_env: Mapping[str, Any], allow_secrets: bool) -> str:
    """Refuse (one line) when a file about to be uploaded looks like a credential; else a summary line."""
    wd = Path(runtime_env["working_dir"])
    files = upload_files(wd, runtime_env.get("excludes", ()))
    found = sorted(find_secrets(files), key=lambda f: str(f[0]))
    if found and not allow_secrets:
        (first, what), more = found[0], len(found) - 1
        also = f" (and {more} more: {', '.join(str(f.relative_to(wd)) for f, _ in found[1:4])})" if more else ""
        raise SubmitError(
            f"--working-dir: {first.relative_to(wd)} looks like {what}{also}; it would be uploaded and stored "
            "with the job: move it out, list it in .rayignore, or pass --allow-secrets", EXIT_USAGE)
    size = sum(f.stat().st_size for f in files)
    note = f"; {len(found)} key-like file(s) allowed by --allow-secrets" if found else ""
    return f"raybench: uploading {wd} ({len(files)} file(s), {size / 1e6:.1f} MB; credentials excluded{note})"


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
    lost_after_s: float = 30.0,
    allow_secrets: bool = False,
    echo: Callable[[str], None] = print,
    client_factory: Callable[[str | None, dict[str, str]], Any] = _client,
) -> tuple[str, int, list[Path]]:
    """Submit ``raybench <raybench_args>`` as a Ray job; optionally wait and fetch the run dirs.

    Args:
        lost_after_s: give up (:data:`EXIT_DASHBOARD_LOST`) once the dashboard has been
            unreachable this long while waiting (the job itself keeps running).
        allow_secrets: upload files that look like keys (:func:`find_secrets`), and pass env vars
            named like secrets (``*_KEY``, ``*_TOKEN``, ``*_SECRET``, ``*_PASSWORD``), anyway.

    Returns:
        ``(submission_id, exit_code, fetched_run_dirs)``; ``exit_code`` is raybench's (0 VALID,
        1 INVALID, 2 usage error) when the job printed it, else 0 for SUCCEEDED and 1 otherwise;
        ``-1`` without ``wait``.

    Raises:
        SubmitError: one line naming the problem and the dashboard address, with its exit code.
        ValueError: a bad argument (no command, bad ``--auth``, working dir not a directory).
    """
    headers = auth_headers(auth)
    token = headers.get("Authorization", "").removeprefix("Bearer ") or None
    where = _dashboard_name(address)
    sid = f"raybench-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{os.urandom(3).hex()}"
    out = remote_out or f"{DEFAULT_REMOTE_OUT}/{sid}"
    entry = build_entrypoint(raybench_args, out, pack=fetch is not None, no_records=no_records)
    runtime_env = build_runtime_env(working_dir, env_vars=env_vars, pip=pip)
    # Checked before any byte goes to the dashboard.
    if not allow_secrets:
        _check_env_vars(env_vars)
    upload = _check_upload(runtime_env, allow_secrets) if "working_dir" in runtime_env else None
    with _dashboard_call(where, "GET /api/version", token):
        client = client_factory(address, headers)
    if upload:
        echo(upload)
    # A head started moments ago answers 500 "No available agent" until its job agent registers:
    # no job was created, so the same submission id is retried for up to AGENT_WAIT_S.
    agent_wait_until = time.monotonic() + AGENT_WAIT_S
    while True:
        try:
            with _dashboard_call(where, "the upload and job submission", token):
                sid = client.submit_job(entrypoint=entry, runtime_env=runtime_env, submission_id=sid,
                                        metadata={"tool": "raybench"})
            break
        except SubmitError as exc:
            if "No available agent" not in str(exc) or time.monotonic() >= agent_wait_until:
                raise
            echo(f"raybench: the head's job agent is not ready yet; retrying (up to {AGENT_WAIT_S:g} s)")
            time.sleep(3.0)
    echo(f"raybench: submitted job {sid}; results go to {out} on the head node")
    if not wait:
        return sid, -1, []
    status, down_since = "", None
    try:
        while True:
            try:
                with _dashboard_call(where, f"job {sid} status", token, EXIT_DASHBOARD_LOST):
                    st = client.get_job_status(sid)
                down_since = None
            except SubmitError as exc:
                if exc.unreachable is None:
                    raise
                down_since = down_since or time.monotonic()
                if time.monotonic() - down_since >= lost_after_s:
                    raise SubmitError(f"lost the Ray dashboard at {where} after submitting job {sid}: "
                                      f"{exc.unreachable}; the job may still be running (results stay on the "
                                      f"head in {out})", EXIT_DASHBOARD_LOST) from None
                st = status
            status = str(getattr(st, "value", st))
            if status in ("SUCCEEDED", "FAILED", "STOPPED"):
                break
            time.sleep(poll_s)
    except KeyboardInterrupt:
        echo(f"raybench: stopped waiting; job {sid} keeps running (ray job stop {sid} --address {where})")
        raise
    with _dashboard_call(where, f"job {sid} logs", token, EXIT_DASHBOARD_LOST):
        logs = client.get_job_logs(sid)
    _print_logs(logs, echo)
    code = exit_code_from_logs(logs)
    if code is None or code < 0:  # no exit line, or raybench killed by a signal
        code = 0 if status == "SUCCEEDED" and code is None else 1
    fetched: list[Path] = []
    if fetch is not None:
        dest = Path(fetch)
        try:
            blob = extract_results(logs)
            if blob is None:
                echo("raybench: no results block in the job logs (the run wrote no run directory?)")
            else:
                fetched = unpack_results(blob, dest)
                echo("raybench: fetched " + ", ".join(str(p) for p in fetched))
        except ValueError as exc:
            raise SubmitError(f"results of job {sid} from {where} rejected: {_one_line(str(exc))}; "
                              f"nothing unsafe written to {dest}", EXIT_BAD_RESULTS) from None
        except OSError as exc:
            raise SubmitError(f"cannot write the results of job {sid} to {dest}: "
                              f"{exc.strerror or _one_line(str(exc))}", EXIT_BAD_RESULTS) from None
    echo(f"raybench: job {sid} {status}")
    return sid, code, fetched


if __name__ == "__main__":  # the job-side entrypoint: python -m raybench.ray.jobs exec ...
    if len(sys.argv) < 2 or sys.argv[1] != "exec":
        sys.exit("usage: python -m raybench.ray.jobs exec --out DIR [--pack] [--no-records] -- <raybench args>")
    sys.exit(exec_main(sys.argv[2:], write=lambda s: print(s, flush=True)))
