#!/usr/bin/env bash
# Data and weights for the `qwen3_vl` workload (Shopify product catalogue). Run where internet exists.
#   scripts/prepare_qwen3_vl.sh /data/product-catalogue /models
set -euo pipefail
DATA=${1:-/data/product-catalogue}; MODELS=${2:-/models}
pip install -U huggingface_hub
hf download Shopify/product-catalogue --repo-type dataset --local-dir "$DATA"
hf download Qwen/Qwen3-VL-235B-A22B-Instruct --revision 710c13861be6c466e66de3f484069440b8f31389 --local-dir "$MODELS/Qwen3-VL-235B-A22B-Instruct"
echo "run with: --set workload.params.data_dir=$DATA (see workloads/qwen3_vl/README.md)"
