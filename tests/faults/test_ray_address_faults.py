"""A wrong ``--address`` fails within seconds (exit 2, one line naming ray.address and the address).

It used to keep ``ray.init`` retrying for minutes. Each case runs the real CLI in a subprocess
against something that is not a Ray cluster: a closed port, a port that accepts and says nothing,
a port that speaks HTTP/1.1, and an unroutable address. No Ray is started.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from raybench.ray.startup import probe_address


def _run(tmp_path: Path, address: str | None, env_address: str | None = None) -> tuple[int, str, float]:
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    env.pop("RAY_ADDRESS", None)
    if env_address:
        env["RAY_ADDRESS"] = env_address
    cmd = [sys.executable, "-m", "raybench.cli", "run", "--workload", "synthetic", "--sut", "null", "--scenario",
           "Server", "--out", str(tmp_path), "--quiet", "--no-report"]
    if address:
        cmd += ["--address", address]
    t = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=60)
    return proc.returncode, proc.stderr, time.monotonic() - t


def _error_line(stderr: str) -> str:
    (line,) = [ln for ln in stderr.splitlines() if ln.startswith("raybench: error:")]
    return line


@pytest.fixture
def server() -> Iterator[callable]:
    """``server(reply)``: a TCP server on 127.0.0.1 that accepts and sends ``reply`` (or nothing)."""
    socks: list[socket.socket] = []
    stop = threading.Event()

    def start(reply: bytes | None) -> int:
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(8)
        srv.settimeout(0.2)
        socks.append(srv)

        def loop() -> None:
            held = []
            while not stop.is_set():
                try:
                    conn, _ = srv.accept()
                except OSError:
                    continue
                held.append(conn)  # keep it open: silence, not a reset
                if reply is not None:
                    conn.sendall(reply)
            for c in held:
                c.close()

        threading.Thread(target=loop, daemon=True).start()
        return srv.getsockname()[1]

    yield start
    stop.set()
    for s in socks:
        s.close()


def test_closed_port(tmp_path: Path) -> None:
    code, err, took = _run(tmp_path, "127.0.0.1:1")
    assert code == 2, err
    assert _error_line(err) == "raybench: error: ray.address: no Ray cluster at 127.0.0.1:1 (connection refused)"
    assert took < 20


def test_silent_port(tmp_path: Path, server) -> None:
    port = server(None)
    code, err, took = _run(tmp_path, f"127.0.0.1:{port}")
    assert code == 2, err
    assert _error_line(err) == (f"raybench: error: ray.address: 127.0.0.1:{port} accepts connections but does not "
                                f"answer like a Ray GCS (no gRPC reply within 5 s)")
    assert took < 20


def test_not_grpc(tmp_path: Path, server) -> None:
    port = server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    code, err, took = _run(tmp_path, f"127.0.0.1:{port}")
    assert code == 2, err
    line = _error_line(err)
    assert line.startswith(f"raybench: error: ray.address: 127.0.0.1:{port} is not a Ray GCS (it does not speak gRPC"), line
    assert took < 20


def test_wrong_ray_address_env_is_named(tmp_path: Path) -> None:
    code, err, took = _run(tmp_path, None, env_address="127.0.0.1:1")
    assert code == 2, err
    assert _error_line(err) == ("raybench: error: ray.address (from RAY_ADDRESS): no Ray cluster at 127.0.0.1:1 "
                                "(connection refused)")


def test_unroutable_address(tmp_path: Path) -> None:
    """10.255.255.1 usually swallows SYNs (TCP timeout); some sandboxes answer for it instead, in
    which case ``ray.init`` runs with its connect attempts capped. Either way: < 20 s, one line."""
    code, err, took = _run(tmp_path, "10.255.255.1:6379")
    assert code == 2, err
    line = _error_line(err)
    assert line.startswith("raybench: error: ray.address: ") and "10.255.255.1:6379" in line, line
    assert took < 20, (took, err[-2000:])


def test_probe_leaves_other_shapes_to_ray() -> None:
    probe_address("auto")
    probe_address("local")
    with pytest.raises(ValueError, match=r"^ray.address: no Ray cluster at ray://127.0.0.1:1 \(connection refused\)$"):
        probe_address("ray://127.0.0.1:1")
