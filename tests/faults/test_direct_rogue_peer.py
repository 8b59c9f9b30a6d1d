"""A rogue peer on a replica's direct-channel port during a real run on local Ray.

The frame is the one that used to run ``os.mkdir`` inside a replica while the run stayed VALID:
now the replica drops it unread, the run is unaffected, and the executor reports the attempt.
(Not named ``test_direct_auth.py``: without ``__init__.py`` two test modules may not share a name.)
"""

from __future__ import annotations

import base64
import json
import os
import pickle
import socket
import struct
from pathlib import Path
from typing import Any

import pytest

from raybench.testing import ray_run

pytestmark = pytest.mark.ray

SERVER_OK = ("scenario=Server", "sut.params.latency={dist: constant, ms: 3}",
             "settings.server_target_qps=200", "settings.min_duration_ms=3000",
             "settings.server_target_latency_ns=100000000", "lateness_p99_ms=100")
KEY = b"raybench-test-run-secret-0123456"  # a recognisable 32-byte key, to search the run directory for


class _Mkdir:
    """Unpickling this object calls ``os.mkdir(path)`` (inside whichever process loads it)."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[Any, tuple[str]]:
        return (os.mkdir, (self.path,))


def _evil_frame(marker: Path) -> bytes:
    body = pickle.dumps((7, [0], [_Mkdir(marker)], False), protocol=5)
    return struct.pack("!IQB", len(body), 1, 0) + body  # a request frame, as the channel frames them


def _send_rogue_frame(host: str, port: int, frame: bytes) -> bytes:
    """Connect, send the frame without any handshake, return what came back before the close."""
    got = b""
    with socket.create_connection((host, port), timeout=5.0) as s:
        s.sendall(frame)
        try:
            while chunk := s.recv(4096):
                got += chunk
        except ConnectionResetError:
            pass
    return got


def test_rogue_pickle_frame_is_rejected_during_a_valid_run(ray_local, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("raybench.ray.executor._new_run_secret", lambda: KEY)
    marker = tmp_path / "pwned"
    rogue: dict[str, Any] = {}

    def attack(ex: Any, k: int, snap: dict[str, Any]) -> None:
        if not rogue:  # once, mid-run (the first progress snapshot comes about 1 s in)
            host, port = ex.replica_infos[0]["direct"]
            rogue["addr"] = (host, port)
            rogue["got"] = _send_rogue_frame(host, port, _evil_frame(marker))

    out, ex = ray_run(tmp_path / "run", *SERVER_OK, progress=attack)
    m = out.metrics
    assert rogue, "the rogue connection was never made"
    assert rogue["addr"][0] == "127.0.0.1"  # a one-node cluster binds loopback
    assert m.validity == "VALID", m.invalid_reasons
    assert m.num_errors == 0 and m.samples_completed == m.samples_issued
    assert not marker.exists()
    assert len(rogue["got"]) in (0, 36)  # at most the greeting; never a proof or a response

    t = ex.result_extra()["transport"]
    assert (t["kind"], t["bind"], t["authenticated"]) == ("direct", "127.0.0.1", True)
    assert t["rejected_connections"] == 1
    assert len(t["rejected_peers"]) == 1 and t["rejected_peers"][0].startswith("replica 0: 127.0.0.1:")
    assert t["replicas"] == [{"replica": 0, "node": ex.replica_infos[0]["node"], "accepted_connections": 1,
                              "rejected_connections": 1}]
    assert t["unreported_replicas"] == []
    # The composition root writes the same figures into result.json.
    written = json.loads((out.run_dir / "result.json").read_text())["transport"]
    assert written["rejected_connections"] == 1 and written["kind"] == "direct"

    # The run secret reached the actors (the run worked) but no file of the run and no info kept
    # by the executor: not raw, not hex, not base64.
    forms = [KEY, KEY.hex().encode(), base64.b64encode(KEY), base64.urlsafe_b64encode(KEY)]
    files = [p for p in out.run_dir.rglob("*") if p.is_file()]
    assert files
    for p in files:
        data = p.read_bytes()
        assert not any(f in data for f in forms), p.name
    kept = repr((ex.replica_infos, ex.placements, ex.result_extra(), ex.system_extra())).encode()
    assert not any(f in kept for f in forms)
