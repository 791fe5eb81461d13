#!/usr/bin/env bash
# Set up (if needed), then run respira's main job: count the coughs in the bundled example
# night with the built-in `cough` model. Extra arguments go to `respira detect`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/respira detect examples/night.ogg --model cough -o night-report "$@"
