#!/usr/bin/env bash
# The test command: installs what the tests need where it may, then runs every test.
#
#   ./tools/test.sh
#
# Needs a Rust toolchain (rustup's, for the wasm target). On Debian or Ubuntu as root it
# installs what is missing: a software Vulkan device (mesa-vulkan-drivers: lavapipe), Mesa's
# EGL/GL driver (the GL backend run below), Chromium (the browser test's WebGPU, through
# SwiftShader), Node and npm (playwright-core, which never downloads a browser), Python's venv
# (the server test installs the `openai` client from PyPI into target/test-venv). It adds the
# wasm target; web/build.sh installs wasm-bindgen-cli at Cargo.lock's version. Elsewhere, or
# without root, it says what to install and stops.
#
# Then: every test on the default adapter (one test thread: GPU tests contend), the ops and
# parity tests and the quantized-weight kernels once more on wgpu's GL backend (WGPU_BACKEND=gl), which is what a machine
# without a Vulkan driver gets, and `cargo check` of the library, its C API and the CLI for
# macOS, iOS, Windows and Android, so a change that breaks a platform is caught here.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v cargo >/dev/null || ! command -v rustup >/dev/null; then
  echo "tools/test.sh: needs a Rust toolchain installed with rustup (https://rustup.rs)" >&2
  exit 1
fi

# Debian packages the tests need, each with a file that shows it is there.
packages=()
have_vulkan_icd() { compgen -G "/usr/share/vulkan/icd.d/*.json" >/dev/null || compgen -G "/etc/vulkan/icd.d/*.json" >/dev/null; }
have_vulkan_icd || packages+=(mesa-vulkan-drivers)
compgen -G "/usr/lib/*/libEGL_mesa.so.0" >/dev/null || compgen -G "/usr/lib*/libEGL_mesa.so.0" >/dev/null || packages+=(libegl1 libegl-mesa0 libgl1-mesa-dri)
[ -x /usr/bin/chromium ] || [ -n "${CHROMIUM:-}" ] || packages+=(chromium)
{ command -v node >/dev/null && command -v npm >/dev/null; } || packages+=(nodejs npm)
# Python with venv: the server test's `openai` client (tools/requirements-tests.txt).
{ command -v python3 >/dev/null && python3 -c "import venv, ensurepip" 2>/dev/null; } || packages+=(python3 python3-venv)

if [ ${#packages[@]} -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update
    # chromium with its recommends: chromium-common brings SwiftShader, headless WebGPU's device.
    apt-get install -y "${packages[@]}"
  else
    echo "tools/test.sh: missing: ${packages[*]}" >&2
    echo "  on Debian or Ubuntu: sudo apt-get install -y ${packages[*]}" >&2
    echo "  elsewhere: a Vulkan driver (or Mesa's lavapipe), Mesa's EGL, Chromium (or set CHROMIUM), Node.js and npm" >&2
    exit 1
  fi
fi

# wasm for the browser; the platforms apps live on for the cross-platform check below.
PLATFORMS=(x86_64-apple-darwin aarch64-apple-ios x86_64-pc-windows-msvc aarch64-linux-android)
rustup target add wasm32-unknown-unknown "${PLATFORMS[@]}"
npm ci --prefix web --no-audit --no-fund
# The `openai` client for tests/serve.rs, in a venv under target/ (kept between runs).
[ -x target/test-venv/bin/python ] || python3 -m venv target/test-venv
target/test-venv/bin/pip install --quiet --disable-pip-version-check -r tools/requirements-tests.txt
export MAMBA_TEST_PYTHON="$PWD/target/test-venv/bin/python"

# lavapipe looks for a runtime dir (wayland); without one it prints a warning per device.
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$(mktemp -d)}"

cargo build --release --locked
./target/release/mamba-wgpu info
cargo test --release --locked -- --test-threads=1
echo "== the page's benchmark mode in headless Chromium (written by web/test/e2e.mjs)"
cat target/browser-bench.json
echo "== the ops, parity and quantized-weight tests on wgpu's GL backend"
WGPU_BACKEND=gl cargo test --release --locked --test ops --test parity -- --test-threads=1
WGPU_BACKEND=gl cargo test --release --locked --test quant -- --test-threads=1 quantized_linear quantized_embedding dequantization
echo "== the library (with its C API) and the CLI for macOS, iOS (Metal), Windows (DX12) and Android (Vulkan)"
cargo check --locked --lib --bins $(printf -- '--target %s ' "${PLATFORMS[@]}")
