#!/usr/bin/env bash
# Build and push the worker image for production work pools; a local deploy skips it.
set -euo pipefail
if [[ -z "${GREETINGS_WORKER_IMAGE:-}" ]]; then
  echo "GREETINGS_WORKER_IMAGE not set: no worker image built (local process pool)"
  exit 0
fi
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
docker build -f "$here/deployments/Dockerfile" -t "$GREETINGS_WORKER_IMAGE" "$here"
docker push "$GREETINGS_WORKER_IMAGE"
