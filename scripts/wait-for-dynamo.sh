#!/usr/bin/env bash
# Wait for the DGD, as a thin wrapper: gtcdemo watches the DGD's pods (selected by the operator's label
# nvidia.com/dynamo-graph-deployment-name; the operator never sets nvidia.com/dynamo-graph-deployment)
# until they are Running and Ready and the DGD is successful, fails fast on states that will not heal, and prints
# the DGDSA status on success or pods, events and logs on failure.
# Usage: scripts/wait-for-dynamo.sh [timeout-seconds, default 600]   (ENV=dev, TARGET=cluster by default)
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/gtcdemo wait --env "${ENV:-dev}" --target "${TARGET:-cluster}" --timeout "${1:-600}"
