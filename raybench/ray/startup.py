"""Starting and stopping Ray without hanging, segfaulting or leaving processes behind.

Three guards the executor uses around ``ray.init``/``ray.shutdown``:

- :func:`probe_address`: a wrong ``ray.address`` used to keep ``ray.init`` retrying for minutes
  (each GCS connect attempt blocks ~35 s and Ray makes 20 of them). A plain TCP connect plus an
  HTTP/2 preface (a Ray GCS is a gRPC server: it answers with a SETTINGS frame at once) tells
  within seconds whether anything Ray-like listens there; ``ray.init`` then runs with
  ``RAY_gcs_server_port_wait_time_s`` capped, which only bounds its Python-side retry loop.
  (``RAY_gcs_rpc_server_reconnect_timeout_s`` would bound it too, but makes the C++ client abort
  the whole process when it expires.)
- :func:`deferred_signals`: a KeyboardInterrupt *inside* ``ray.init`` lands between Ray starting
  its processes and registering them (``ray._private.node.Node.__init__``), so nothing is left to
  stop them: ``ray::DashboardAgent`` and ``ray::RuntimeEnvAgent`` kept running after the driver
  exited, and an interrupt inside the core worker's C++ start-up could crash it. SIGINT/SIGTERM
  are therefore recorded during ``ray.init`` (and during shutdown) and acted on right after; a
  second one forces the interrupt at once.
- :func:`kill_descendants`: the last resort when Ray's own bookkeeping was cut short: the
  processes this driver started, found before anything is killed (orphans reparent to init).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from raybench.ray.placement import ClusterError
from raybench.signals import Interrupted, last_signal, note_signal, signum_of

__all__ = [
    "RunInterrupted",
    "deferred_signals",
    "kill_descendants",
    "probe_address",
    "ray_keeps_sigterm",
    "signal_name",
]

_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS
_H2_SETTINGS = 0x4


class RunInterrupted(Interrupted):
    """Ctrl-C or SIGTERM during start-up (or a second one while stopping), after everything
    started was stopped.

    Attributes:
        message: one line: what was going on and what was stopped.
        signum / reason / exit_code: as :class:`raybench.signals.Interrupted` (the CLI exits 130 / 143).
    """

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(signum)
        self.message = message
        self.args = (message,)


def signal_name(sig: int | BaseException | None) -> str:
    """``Ctrl-C`` or ``SIGTERM`` for a signal number or an interrupt exception."""
    num = sig if isinstance(sig, int) else signum_of(sig) if sig is not None else last_signal()
    return "SIGTERM" if num == signal.SIGTERM else "Ctrl-C"


@contextlib.contextmanager
def ray_keeps_sigterm() -> Iterator[None]:
    """Stop ``ray.init`` from replacing our SIGTERM handler for the duration of the block.

    ``ray.init`` first installs ``sys.exit(signum)`` as the driver's SIGTERM handler, which would
    end the process in the middle of starting Ray (leaving its agents behind) and override
    :func:`deferred_signals`. Ray's handler is only there so that atexit shuts Ray down; where
    nobody handles SIGTERM (SIG_DFL) the same handler is installed after the block.
    """
    try:
        import ray._private.utils as ray_utils
    except ImportError:  # pragma: no cover - Ray layout changed: keep Ray's behaviour
        yield
        return
    original = getattr(ray_utils, "set_sigterm_handler", None)
    if original is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    before = signal.getsignal(signal.SIGTERM)
    ray_utils.set_sigterm_handler = lambda handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = original
        if before in (signal.SIG_DFL, None):
            original(lambda signum, frame: sys.exit(signum))


def _split(address: str) -> tuple[str, str, int] | None:
    """(scheme, host, port) of ``host:port`` / ``ray://host:port``; ``None`` when not that shape."""
    scheme = ""
    rest = address
    if "://" in address:
        scheme, _, rest = address.partition("://")
    rest = rest.rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return scheme, host.strip("[]"), int(port)


def probe_address(address: str, field: str = "ray.address", timeout_s: float = 5.0) -> None:
    """Fail fast, naming ``field`` and the address, when no Ray cluster can be there.

    ``host:port`` must accept a TCP connection and answer an HTTP/2 preface like a gRPC server
    (skipped with ``RAY_USE_TLS``); ``ray://host:port`` (Ray Client) must accept a TCP connection.
    ``auto``/``local`` and other shapes are left to Ray.

    Raises:
        ClusterError: e.g. ``ray.address: no Ray cluster at 127.0.0.1:1 (connection refused)``.
    """
    parts = _split(address)
    if parts is None:
        return
    scheme, host, port = parts
    start = time.monotonic()
    try:
        sock = socket.create_connection((host, port), timeout=timeout_s)
    except TimeoutError:
        raise ClusterError(f"{field}: no Ray cluster at {address} (no answer within {timeout_s:g} s)") from None
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        if isinstance(exc, socket.gaierror):
            why = f"cannot resolve {host}"
        raise ClusterError(f"{field}: no Ray cluster at {address} ({why.lower() if why[0].isupper() else why})") from None
    with sock:
        if scheme == "ray" or os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
            return
        try:
            sock.settimeout(max(0.5, timeout_s - (time.monotonic() - start)))
            sock.sendall(_H2_PREFACE)
            head = b""
            while len(head) < 9:
                chunk = sock.recv(9 - len(head))
                if not chunk:
                    break
                head += chunk
        except TimeoutError:
            raise ClusterError(f"{field}: {address} accepts connections but does not answer like a Ray GCS "
                               f"(no gRPC reply within {timeout_s:g} s)") from None
        except OSError as exc:
            raise ClusterError(f"{field}: {address} accepts connections but does not answer like a Ray GCS "
                               f"({exc.strerror or type(exc).__name__})") from None
        if len(head) < 9 or head[3] != _H2_SETTINGS:
            raise ClusterError(f"{field}: {address} is not a Ray GCS (it does not speak gRPC; "
                               f"the GCS port is 6379 unless `ray start --port` said otherwise)")


@contextlib.contextmanager
def deferred_signals(on_first: Callable[[int], None] | None = None, redeliver: bool = True) -> Iterator[list[int]]:
    """Hold SIGINT/SIGTERM for the duration of the block, then re-deliver the first one.

    Yields the list of signals received (so the block's owner can tell it was interrupted).
    On leaving, the previous handlers come back and the first recorded signal is raised again
    with :func:`signal.raise_signal`, so whatever the program does for it (KeyboardInterrupt,
    the CLI's SIGTERM handler) happens right after the block. A second signal while deferred
    restores the handlers and re-delivers at once (a way out if the block hangs). With
    ``redeliver=False`` held signals are dropped (cleanup that must finish and then lets the
    program go on as it was going to).
    Outside the main thread (no signal handlers there) it does nothing.
    """
    got: list[int] = []
    if threading.current_thread() is not threading.main_thread():
        yield got
        return
    sigs = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in sigs}
    restored = False

    def restore() -> None:
        nonlocal restored
        if not restored:
            restored = True
            for s, h in previous.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)

    def handler(signum: int, frame: Any) -> None:
        note_signal(signum)
        got.append(signum)
        if len(got) == 1:
            if on_first is not None:
                on_first(signum)
            return
        restore()  # second signal: stop deferring
        signal.raise_signal(got[0])

    for s in sigs:
        if previous[s] is signal.SIG_IGN:  # e.g. a background job: keep ignoring it
            continue
        signal.signal(s, handler)
    try:
        yield got
    finally:
        again = not restored
        restore()
        if got and again and redeliver:
            signal.raise_signal(got[0])


def descendants() -> list[Any]:
    """This process's descendants (psutil processes), found now."""
    try:
        import psutil

        return list(psutil.Process().children(recursive=True))
    except Exception:  # psutil missing or a race with exiting processes
        return []


def kill_descendants(procs: list[Any], timeout_s: float = 5.0) -> int:
    """Kill ``procs`` (from :func:`descendants`) that still run; returns how many were killed."""
    try:
        import psutil
    except ImportError:  # pragma: no cover - Ray depends on psutil
        return 0
    alive = [p for p in procs if p.is_running()]
    for p in alive:
        with contextlib.suppress(psutil.Error):
            p.terminate()
    _, still = psutil.wait_procs(alive, timeout=timeout_s / 2)
    for p in still:
        with contextlib.suppress(psutil.Error):
            p.kill()
    psutil.wait_procs(still, timeout=timeout_s / 2)
    return len(alive)
