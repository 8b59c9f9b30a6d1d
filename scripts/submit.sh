#!/usr/bin/env bash
# Submit a raybench command to a Ray cluster as a job and fetch its run directories.
#
#   scripts/submit.sh [--address http://HEAD:8265] [--fetch results] -- run --workload synthetic --scenario Server
#
# A thin wrapper over `raybench submit` (raybench/ray/jobs.py): the working directory is this
# repository (.git, .venv, results excluded); results land in ~/raybench-results/<job id> on the
# head and, with --fetch, come back through the job log. Token auth: the token is read from
# RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or ~/.ray/auth_token and never printed.
#
# The same with Ray's own CLI (no fetching):
#   RAY_AUTH_MODE=token ray job submit --address http://HEAD:8265 --working-dir . \
#     --runtime-env-json '{"excludes": [".git", ".venv", "results"]}' -- raybench run ...
set -euo pipefail
cd "$(dirname "$0")/.."
exec "${PYTHON:-python3}" -m raybench.cli submit --working-dir . "$@"
