"""Which shard-to-replica transport each cluster shape gets (Ray never started: a scripted node table)."""

from __future__ import annotations

from typing import Any

import pytest

from raybench.config import RayConfig
from raybench.ray import executor as executor_mod
from raybench.ray.executor import RayExecutor


def nodes(*addresses: str) -> list[dict[str, Any]]:
    return [{"NodeID": f"n{i}", "NodeManagerAddress": a, "Alive": True, "Resources": {"CPU": 1}}
            for i, a in enumerate(addresses)]


@pytest.mark.parametrize(
    ("transport", "addresses", "want"),
    [
        ("auto", ("10.0.0.1",), "127.0.0.1"),  # one node: loopback, unreachable from elsewhere
        ("auto", ("10.0.0.1", "10.0.0.1"), "127.0.0.1"),  # simulated nodes on one host (Cluster)
        ("auto", ("10.0.0.1", "10.0.0.2"), "node"),  # several machines: direct on the node IP
        ("direct", ("10.0.0.1",), "127.0.0.1"),
        ("direct", ("10.0.0.1", "10.0.0.2", "10.0.0.3"), "node"),
        ("ray", ("10.0.0.1",), None),  # forced actor calls
        ("ray", ("10.0.0.1", "10.0.0.2"), None),
    ],
)
def test_direct_is_the_default_on_every_shape(monkeypatch, transport: str, addresses: tuple[str, ...],
                                              want: str | None) -> None:
    monkeypatch.setattr(executor_mod, "_alive_nodes", lambda: nodes(*addresses))
    assert RayExecutor(RayConfig(transport=transport))._direct_host() == want


def test_result_extra_before_any_run_has_every_key() -> None:
    assert RayExecutor(RayConfig()).result_extra() == {"transport": {
        "kind": None, "bind": None, "authenticated": False, "rejected_connections": 0, "rejected_peers": [],
        "replicas": [], "unreported_replicas": []}}


def test_each_run_gets_a_fresh_32_byte_secret() -> None:
    a, b = executor_mod._new_run_secret(), executor_mod._new_run_secret()
    assert len(a) == len(b) == 32 and a != b
