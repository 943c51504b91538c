#!/usr/bin/env bash
# Serves the demo at http://127.0.0.1:${PORT:-8080}/ (builds web/dist first when it is missing;
# `web/serve.sh --build` rebuilds). WebGPU needs a secure context: localhost/127.0.0.1 is one.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--build" ] || [ ! -f web/dist/npm/mamba_wgpu_bg.wasm ]; then
  web/build.sh
fi
PORT="${PORT:-8080}"
echo "serving web/dist at http://127.0.0.1:$PORT/"
exec python3 -m http.server "$PORT" --bind 127.0.0.1 --directory web/dist
