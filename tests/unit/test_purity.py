"""raybench.core imports neither ray nor torch (DESIGN.md: the kernel stays pure)."""

from __future__ import annotations

import subprocess
import sys

CORE_MODULES = [
    "raybench.core.clock",
    "raybench.core.config",
    "raybench.core.early_stopping",
    "raybench.core.histogram",
    "raybench.core.loadgen",
    "raybench.core.logs.mlperf",
    "raybench.core.metrics",
    "raybench.core.plan",
    "raybench.core.runner",
    "raybench.core.settings",
    "raybench.core.stats",
]


def test_core_imports_without_ray_or_torch() -> None:
    code = (
        "import sys\n"
        "for m in ('ray', 'torch', 'vllm', 'diffusers', 'ultralytics', 'transformers'):\n"
        "    sys.modules[m] = None\n"
        f"import importlib\nfor m in {CORE_MODULES!r}:\n    importlib.import_module(m)\n"
        "print('ok')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


def test_list_runs_without_optional_dependencies() -> None:
    code = (
        "import sys\n"
        "for m in ('ray', 'torch', 'vllm', 'diffusers', 'ultralytics', 'transformers', 'pycocotools', 'httpx', 'aiohttp'):\n"
        "    sys.modules[m] = None\n"
        "from raybench.registry import list_workloads, list_suts\n"
        "print(sorted(list_workloads())); print(sorted(list_suts()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "'synthetic'" in out.stdout and "'fake'" in out.stdout and "'null'" in out.stdout
