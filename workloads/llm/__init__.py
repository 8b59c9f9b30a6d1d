"""Llama 3.1 8B summarization on CNN/DailyMail (MLPerf ``llama3.1-8b``), see README.md."""

from __future__ import annotations

from raybench.core.spec import WorkloadSpec
from workloads.llm.params import LLMParams

LATENCY_BOUNDS_MS = {"Server": (2000, 100), "Interactive": (500, 30)}
"""p99 (TTFT, TPOT) bounds in ms: Server = ``llama3_1-8b``, Interactive = ``llama3_1-8b-interactive``."""

WORKLOAD = WorkloadSpec(
    name="llm",
    description="Llama 3.1 8B summarization, CNN/DailyMail (MLPerf llama3.1-8b), ROUGE, TTFT/TPOT",
    library="workloads.llm.dataset:load_library",
    default_sut="openai_endpoint",
    scenarios=("Offline", "Server", "SingleStream", "Concurrency"),
    accuracy="workloads.llm.accuracy:score",
    mlperf_model="llama3_1-8b",
    params_model=LLMParams,
    # TTFT/TPOT bounds come from mlperf.conf for the model key: ``llama3_1-8b`` (Server) or,
    # with ``--set model=llama3_1-8b-interactive``, MLPerf's "Interactive" Server run. Setting
    # them here would override the interactive ones.
    settings={
        "Server": {"use_token_latencies": 1},
        "Offline": {"use_token_latencies": 1},
        "SingleStream": {"use_token_latencies": 1},
    },
    token_latencies=True,
    sut_params={
        "openai_endpoint": {
            "api": "completions",
            "max_tokens": 128,
            "temperature": 0.0,
            "response_format": "token_ids",
            "extra_body": {"min_tokens": 1, "return_token_ids": True},
        },
        "vllm": {
            "api": "completions",
            "max_tokens": 128,
            "temperature": 0.0,
            "response_format": "token_ids",
            "extra_body": {"min_tokens": 1, "return_token_ids": True},
        },
    },
)
