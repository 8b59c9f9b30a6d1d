#!/usr/bin/env bash
# Data and weights for the `llm` workload (Llama 3.1 8B on CNN/DailyMail). Run where internet exists,
# on shared storage or on every SUT node; never in tests.
#   scripts/prepare_llm.sh /data/llama3.1-8b /models
set -euo pipefail
DATA=${1:-/data/llama3.1-8b}; MODELS=${2:-/models}
mkdir -p "$DATA" "$MODELS"
# The MLCommons R2 downloader (see workloads/llm/README.md) fetches cnn_eval.json:
if command -v mlcr >/dev/null; then
  mlcr get-dataset-cnndm,_validation,_datacenter,_llama3,_mlc,_r2-downloader --outdirname="$DATA"
else
  echo "install the MLCommons automation (pip install mlc-scripts) to fetch cnn_eval.json into $DATA" >&2
fi
# Weights (gated on the Hugging Face hub: accept the licence and `hf auth login` first).
hf download meta-llama/Llama-3.1-8B-Instruct --local-dir "$MODELS/Llama-3.1-8B-Instruct"
# ROUGE needs NLTK's sentence tokenizer data:
python3 -m nltk.downloader punkt_tab
echo "run with: --set workload.params.data_dir=$DATA and serve $MODELS/Llama-3.1-8B-Instruct with vLLM"
