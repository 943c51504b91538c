#!/usr/bin/env bash
# Builds the browser demo into web/dist/: the `mamba-wgpu` npm package in web/dist/npm/ (the
# wasm engine, its wasm-bindgen glue, the wrapper, types and README from web/npm/, and a
# package.json with Cargo.toml's version), the page, which imports that package, the shipped
# model (models/shakespeare-mamba) and, for the browser test, a fixture of each model family.
# Any static file server over web/dist serves the whole demo (see web/serve.sh);
# `npm pack ./web/dist/npm` makes the package's tarball.
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
NPM="$DIST/npm"
mkdir -p "$NPM"
# The glue (mamba_wgpu.js + .d.ts) and the wasm (mamba_wgpu_bg.wasm + .d.ts), wrapped by
# web/npm/index.js, whose index.d.ts types the whole public API.
wasm-bindgen --target web --out-dir "$NPM" \
  "$TARGET_DIR/wasm32-unknown-unknown/release/mamba_wgpu.wasm"
cp web/npm/index.js web/npm/index.d.ts web/npm/README.md "$NPM/"

# package.json: name, version and description from Cargo.toml's [package].
cargo_field() {
  awk -v key="$1" '/^\[package\]/ { p = 1; next } /^\[/ { p = 0 }
    p && $1 == key { sub(/^[^=]*= *"/, ""); sub(/" *$/, ""); print; exit }' Cargo.toml
}
json_string() { printf '"%s"' "$(printf '%s' "$1" | sed 's/\\/\\\\/g; s/"/\\"/g')"; }
VERSION="$(cargo_field version)"
[ -n "$VERSION" ] || { echo "build.sh: no version in Cargo.toml's [package]" >&2; exit 1; }
DESCRIPTION="$(cargo_field description)"
cat > "$NPM/package.json" <<JSON
{
  "name": "mamba-wgpu",
  "version": $(json_string "$VERSION"),
  "description": $(json_string "${DESCRIPTION:-Mamba language models on WebGPU}, in the browser (WebAssembly + WebGPU)"),
  "license": "MIT OR Apache-2.0",
  "keywords": ["mamba", "state-space-model", "language-model", "text-generation", "webgpu", "wgpu", "wasm"],
  "type": "module",
  "main": "./index.js",
  "module": "./index.js",
  "types": "./index.d.ts",
  "exports": {
    ".": {
      "types": "./index.d.ts",
      "import": "./index.js",
      "default": "./index.js"
    },
    "./mamba_wgpu_bg.wasm": "./mamba_wgpu_bg.wasm",
    "./package.json": "./package.json"
  },
  "files": [
    "index.js",
    "index.d.ts",
    "mamba_wgpu.js",
    "mamba_wgpu.d.ts",
    "mamba_wgpu_bg.wasm",
    "mamba_wgpu_bg.wasm.d.ts",
    "README.md"
  ]
}
JSON

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

WASM="$NPM/mamba_wgpu_bg.wasm"
RAW=$(wc -c < "$WASM")
GZ=$(gzip -9 -c "$WASM" | wc -c)
echo "build.sh: $WASM: $((RAW / 1024)) KiB raw, $((GZ / 1024)) KiB gzip -9"
echo "build.sh: npm package mamba-wgpu@$VERSION in $NPM (npm pack ./$NPM makes its tarball)"
echo "build.sh: done; serve with: python3 -m http.server 8080 --bind 127.0.0.1 --directory $DIST"
