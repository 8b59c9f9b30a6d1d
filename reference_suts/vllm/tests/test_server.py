"""vLLM server mode without vLLM: the command line, and supervision of a scripted stand-in server.

``fake_vllm/`` holds a stdlib ``vllm.entrypoints.openai.api_server`` that streams one-token SSE
chunks and can fail on cue; putting it on the server's PYTHONPATH exercises the real launch,
health wait, HTTP path, death detection and SIGTERM/SIGKILL logic in about a second.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from raybench.core.clock import MonotonicClock
from raybench.core.protocols import Query, SUTContext
from reference_suts.vllm import SUT_SPEC, create_sut
from reference_suts.vllm.server import ServerDiedError, VllmExternalSUT, VllmServer, VllmServerSUT, free_port

FAKE = str(Path(__file__).parent / "fake_vllm")
CTX = SUTContext(workload="llm", scenario="Server", mode="PerformanceOnly")


def fake_params(tmp_path: Path, **env: str) -> dict[str, Any]:
    return {
        "model": "/models/tiny",
        "served_model_name": "tiny",
        "python": sys.executable,
        "env": {"PYTHONPATH": FAKE, **env},
        "startup_timeout_s": 20.0,
        "stop_grace_s": 5.0,
        "log_dir": str(tmp_path),
    }


def test_command_line_is_exact() -> None:
    srv = VllmServer(
        {
            "model": "meta-llama/Llama-3.1-8B-Instruct",
            "python": ".venv-vllm/bin/python",
            "tensor_parallel_size": 2,
            "max_model_len": 4096,
            "dtype": "bfloat16",
            "served_model_name": "llama",
            "enable_prefix_caching": False,
            "max_num_seqs": 256,
            "extra_args": ["--kv-cache-dtype", "fp8"],
            "port": 8123,
        }
    )
    assert srv.command() == [
        ".venv-vllm/bin/python", "-m", "vllm.entrypoints.openai.api_server",
        "--model", "meta-llama/Llama-3.1-8B-Instruct", "--host", "127.0.0.1", "--port", "8123",
        "--tensor-parallel-size", "2", "--max-model-len", "4096", "--dtype", "bfloat16",
        "--served-model-name", "llama", "--no-enable-prefix-caching", "--max-num-seqs", "256",
        "--kv-cache-dtype", "fp8",
    ]  # fmt: skip
    assert srv.url == "http://127.0.0.1:8123" and srv.model_name == "llama"
    minimal = VllmServer({"model": "m", "enforce_eager": True, "enable_prefix_caching": True, "dtype": None})
    assert minimal.command()[1:] == [
        "-m", "vllm.entrypoints.openai.api_server", "--model", "m", "--host", "127.0.0.1", "--port", "0",
        "--tensor-parallel-size", "1", "--enforce-eager", "--enable-prefix-caching",
    ]  # fmt: skip
    assert minimal.command()[0] == sys.executable and minimal.model_name == "m"
    env = VllmServer({"model": "m", "env": {"A": 1}}).environment()
    assert env["A"] == "1" and env["VLLM_CPU_KVCACHE_SPACE"] == "1"
    assert 0 < free_port() < 65536


def test_bad_params_are_named() -> None:
    with pytest.raises(ValueError, match="model: required"):
        VllmServer({})
    with pytest.raises(ValueError, match=r"^sut\.params\.gpus: unknown field$"):
        VllmServer({"model": "m", "gpus": 2})
    with pytest.raises(ValueError, match="^sut\\.params\\.extra_args: Input should be a valid list$"):
        VllmServer({"model": "m", "extra_args": "--foo"})
    with pytest.raises(ValueError, match="urls: set by the vllm SUT"):
        VllmServerSUT({"model": "m", "urls": ["http://x"]})
    with pytest.raises(ValueError, match=r"^sut\.params\.nope: unknown field$"):
        VllmServerSUT({"model": "m", "nope": 1})
    with pytest.raises(ValueError, match="^sut\\.params\\.mode: Input should be 'server', 'external' or 'engine'$"):
        create_sut({"mode": "remote", "model": "m"})
    # external mode: the openai_endpoint client's keys, no server keys
    ext = create_sut({"mode": "external", "url": "http://10.0.0.5:8000/v1", "model": "q", "api_key_env": "K"})
    assert isinstance(ext, VllmExternalSUT) and ext.name == "vllm"
    assert ext.params["urls"] == ["http://10.0.0.5:8000/v1"] and ext.params["api_key_env"] == "K"
    assert "mode" not in ext.params and ext.params["api"] == "completions"
    with pytest.raises(ValueError, match=r"^sut\.params\.python: unknown field$"):
        create_sut({"mode": "external", "python": "/usr/bin/python3"})
    with pytest.raises(ValueError, match=r"^sut\.params\.urls: 'gpu-0:8000' is not an http\(s\) URL$"):
        create_sut({"mode": "external", "urls": ["gpu-0:8000"]})
    assert SUT_SPEC.entry == "reference_suts.vllm:create_sut"
    sut = create_sut({**SUT_SPEC.params, "model": "m", "api": "chat"})
    assert isinstance(sut, VllmServerSUT) and sut.client_params["api"] == "chat" and sut.streaming


def _query(qid: int, prompt: str) -> Query:
    return Query(id=qid, indices=[qid], samples=[{"prompt": prompt}], clock=MonotonicClock())


def test_server_sut_serves_streams_and_stops(tmp_path: Path) -> None:
    async def main() -> tuple[Any, ...]:
        sut = VllmServerSUT({**fake_params(tmp_path, FAKE_VLLM_TOKENS="5", FAKE_VLLM_ITL_MS="2"), "max_tokens": 8})
        await sut.start(CTX)
        try:
            q = _query(0, "hello")
            [r] = await sut.issue(q)
            alive = sut.server.poll()
            url = sut.url
        finally:
            await sut.stop()
        return q, r, alive, url, sut.server.poll()

    q, r, alive, url, rc = asyncio.run(main())
    assert r.error is None and r.n_tokens == 5 and r.data == b"t0 t1 t2 t3 t4 "
    assert q.token_ns is not None and len(q.token_ns) == 5 and 0 < q.first_token_ns <= q.token_ns[0]
    assert alive is None and url.startswith("http://127.0.0.1:")
    assert rc == -15  # SIGTERM ended it
    log = next(tmp_path.glob("vllm-*.log")).read_text()
    assert "-m vllm.entrypoints.openai.api_server --model /models/tiny" in log and "fake vllm serving tiny" in log


def test_server_death_fails_inflight_and_later_queries(tmp_path: Path) -> None:
    async def main() -> tuple[str, str, int | None]:
        sut = VllmServerSUT({**fake_params(tmp_path, FAKE_VLLM_ITL_MS="50"), "max_tokens": 4})
        await sut.start(CTX)
        try:
            slow = asyncio.ensure_future(sut.issue(_query(1, "a long answer")))
            await asyncio.sleep(0.02)
            with pytest.raises(ServerDiedError) as killer:
                await sut.issue(_query(2, "please die"))
            with pytest.raises(ServerDiedError) as inflight:
                await slow
            with pytest.raises(ServerDiedError):
                await sut.issue(_query(3, "anything"))
            return str(killer.value), str(inflight.value), sut.server.poll()
        finally:
            await sut.stop()

    killer, inflight, rc = asyncio.run(main())
    assert rc == 3 and ServerDiedError.fatal
    for msg in (killer, inflight):
        assert "exited (exit code 3); last log line: fake vllm: engine core died (scripted)" in msg


def test_startup_failure_and_timeout_are_reported(tmp_path: Path) -> None:
    srv = VllmServer(fake_params(tmp_path, FAKE_VLLM_FAIL_START="1"))
    with pytest.raises(RuntimeError, match=r"exited \(exit code 1\).*CUDA out of memory \(scripted\)"):
        srv.start()
    slow = VllmServer({**fake_params(tmp_path, FAKE_VLLM_STARTUP_S="60"), "startup_timeout_s": 0.5})
    t0 = time.monotonic()
    with pytest.raises(RuntimeError, match=r"startup_timeout_s: vllm server at http://127.0.0.1:\d+ not healthy after 0.5 s"):
        slow.start()
    assert time.monotonic() - t0 < 10 and slow.proc is None and slow.poll() == -15


def test_stop_escalates_to_sigkill(tmp_path: Path) -> None:
    srv = VllmServer({**fake_params(tmp_path, FAKE_VLLM_IGNORE_TERM="1"), "stop_grace_s": 0.3})
    assert srv.start() < 20 and srv.healthy()
    t0 = time.monotonic()
    assert srv.stop() == -9
    assert 0.3 <= time.monotonic() - t0 < 5 and not srv.healthy(0.5)


def test_qwen3_vl_run_through_a_launched_server(tmp_path: Path) -> None:
    """``--workload qwen3_vl --sut vllm`` (server mode): chat requests with images reach the server.

    The stand-in answers 400 to a /v1/completions request without ``prompt`` (the old failure of
    every qwen3_vl sample); here all 32 demo products go to /v1/chat/completions and complete.
    Its answers ("t0 t1 t2 t3 ") are not JSON, so all are unparsable: F1 exactly 0.
    """
    import json

    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark

    p = fake_params(tmp_path)
    cfg = load_run_config(
        None,
        ["workload=qwen3_vl", "sut=vllm", "scenario=Offline", "mode=AccuracyOnly", "executor=inprocess",
         f"out={tmp_path / 'out'}", "report=false", f"sut.params.model={p['model']}",
         f"sut.params.served_model_name={p['served_model_name']}", f"sut.params.python={p['python']}",
         f"sut.params.env={json.dumps(p['env'])}", f"sut.params.log_dir={p['log_dir']}",
         "sut.params.enable_prefix_caching=false", "sut.params.connections=2"],
    )  # fmt: skip
    out = run_benchmark(cfg, InProcessExecutor())
    m = out.metrics
    assert m.num_errors == 0 and m.samples_issued == m.samples_completed == 32
    assert m.total_tokens == 4 * 32  # the stand-in's usage: 4 tokens each (no max_tokens sent)
    acc = out.accuracy
    assert acc is not None and acc.metrics["responses"] == 32.0 and acc.metrics["unparsable"] == 32.0
    assert acc.metrics["f1"] == 0.0 and acc.passed is False
    [log] = list(tmp_path.glob("vllm-*.log"))
    assert "--no-enable-prefix-caching" in log.read_text().splitlines()[0]
