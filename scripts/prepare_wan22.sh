#!/usr/bin/env bash
# Prompts, fixed latent and weights for the `wan22` workload (text-to-video). Run where internet exists.
#   scripts/prepare_wan22.sh /data/wan22 /models
set -euo pipefail
DATA=${1:-/data/wan22}; MODELS=${2:-/models}
mkdir -p "$DATA" "$MODELS"
mlcr get-dataset-mlperf-inference-text-to-video,_mlc,_r2-downloader --outdirname="$DATA"
# The revision MLPerf used (workloads/wan22/README.md).
hf download Wan-AI/Wan2.2-T2V-A14B-Diffusers --revision "${WAN_REVISION:-5be7df9619b54f4e2667b2755bc6a756675b5cd7}" --local-dir "$MODELS/Wan2.2-T2V-A14B-Diffusers"
echo "run with: --set workload.params.data_dir=$DATA --set sut.params.model=$MODELS/Wan2.2-T2V-A14B-Diffusers"
