#!/usr/bin/env bash
# Builds the browser demo into web/dist/: the wasm engine + its JS glue, the page, the shipped
# model (models/shakespeare-mamba) and, for the browser test, a fixture of each model family.
# Any static file server over web/dist serves the whole demo (see web/serve.sh).
#
# Needs: rustup's wasm32-unknown-unknown target and wasm-bindgen-cli of the same version as the
# wasm-bindgen crate in Cargo.lock (installed here with `cargo install` when missing, ~2.5 min).
set -euo pipefail
cd "$(dirname "$0")/.."

DIST=web/dist
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
FIXTURES=tests/fixtures
MODEL=models/shakespeare-mamba

# wasm-bindgen-cli must match the crate version exactly, or the glue and the wasm disagree.
WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
if [ -z "$WB_VERSION" ]; then
  # No lock entry yet (fresh checkout without Cargo.lock): let cargo resolve it.
  cargo generate-lockfile
  WB_VERSION="$(awk '/^name = "wasm-bindgen"$/ { getline; gsub(/version = |"/, ""); print; exit }' Cargo.lock)"
fi
if [ "$(wasm-bindgen --version 2>/dev/null | awk '{print $2}')" != "$WB_VERSION" ]; then
  echo "build.sh: installing wasm-bindgen-cli $WB_VERSION (takes a few minutes)" >&2
  cargo install wasm-bindgen-cli --version "$WB_VERSION" --force
fi
if command -v rustup >/dev/null && ! rustup target list --installed | grep -qx wasm32-unknown-unknown; then
  rustup target add wasm32-unknown-unknown
fi

cargo build --target wasm32-unknown-unknown --release --lib ${CARGO_BUILD_FLAGS:-}

rm -rf "$DIST"
mkdir -p "$DIST/pkg"
wasm-bindgen --target web --no-typescript --out-dir "$DIST/pkg" \
  "$TARGET_DIR/wasm32-unknown-unknown/release/mamba_wgpu.wasm"
cp web/index.html web/main.js web/style.css "$DIST/"

if [ -f "$MODEL/model.safetensors" ]; then
  mkdir -p "$DIST/$MODEL"
  for f in config.json model.safetensors tokenizer.json; do
    [ -f "$MODEL/$f" ] && cp "$MODEL/$f" "$DIST/$MODEL/"
  done
else
  echo "build.sh: warning: $MODEL/model.safetensors is missing; the page's default model will not load" >&2
fi

# One fixture of each model family, for the browser test.
for fixture in mamba1-tiny falcon-mamba-tiny mamba2-tiny; do
  if [ -f "$FIXTURES/$fixture/model.safetensors" ]; then
    mkdir -p "$DIST/fixtures/$fixture"
    cp "$FIXTURES/$fixture/config.json" "$FIXTURES/$fixture/model.safetensors" \
       "$FIXTURES/$fixture/expected.json" "$DIST/fixtures/$fixture/"
  else
    echo "build.sh: warning: no fixture at $FIXTURES/$fixture; the browser test needs it" >&2
  fi
done

WASM="$DIST/pkg/mamba_wgpu_bg.wasm"
RAW=$(wc -c < "$WASM")
GZ=$(gzip -9 -c "$WASM" | wc -c)
echo "build.sh: $WASM: $((RAW / 1024)) KiB raw, $((GZ / 1024)) KiB gzip -9"
echo "build.sh: done; serve with: python3 -m http.server 8080 --bind 127.0.0.1 --directory $DIST"
