"""Generic chat/prompt workload: any JSONL of prompts, chat messages or multi-turn conversations, optional
expected outputs."""

from __future__ import annotations

from raybench.core.spec import WorkloadSpec
from workloads.chat.params import ChatParams

WORKLOAD = WorkloadSpec(
    name="chat",
    description="Any JSONL of {prompt}, {messages} or multi-turn conversations (optional expected) against an "
                "OpenAI-compatible endpoint",
    library="workloads.chat.dataset:load_library",
    default_sut="openai_endpoint",
    scenarios=("Server", "Offline", "SingleStream", "Concurrency"),
    accuracy="workloads.chat.accuracy:score",
    mlperf_model=None,
    params_model=ChatParams,
    token_latencies=True,
    sut_params={
        "openai_endpoint": {"api": "chat", "response_format": "text"},
        "vllm": {"api": "chat", "response_format": "text"},
    },
)
