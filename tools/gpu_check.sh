#!/usr/bin/env bash
# The GPU checks as one prepared command, for a machine with a real GPU and no Rust toolchain
# (such as the H200 of BENCHMARKS.md). Two steps:
#
#   tools/gpu_check.sh prepare            where cargo is: builds the release binary,
#                                         kernel_times and the GPU test binaries (ops, parity,
#                                         model) and strips them into .devbin/ (the tests read
#                                         tests/fixtures from the checkout)
#   tools/gpu_check.sh run OUT [PART...]  on the GPU machine, from the repository root with
#                                         .devbin/ (and, where the machine has no Vulkan
#                                         loader, .gl/*.deb) beside it: each PART under a time
#                                         limit, the output in OUT/log.txt and the benchmark's
#                                         JSON in OUT/*.json
#
# PARTs, in the order given (default: all but big32, at most 580 s, so a whole run fits in ten
# minutes with the loader and `info`; where a host allows less per command, run the parts in
# several commands):
#   tests    the ops, parity, model and differential tests  (at most 90 s)
#   kernels  examples/kernel_times.rs                       (at most 60 s)
#   small    bench, mamba-130m and 370m, f16 and f32, batch 1 and 8, prompts 128-8192
#                                                           (at most 150 s)
#   big16    bench, mamba-790m, 1.4b and 2.8b, f16          (at most 140 s)
#   mamba2   bench, mamba2-130m, 780m and 2.7b, f16, and the SSD scan's ratio at L=4096
#                                                           (at most 140 s)
#   big32    bench, mamba-790m, 1.4b and 2.8b, f32          (at most 140 s)
#   quant    bench, mamba-1.4b and 2.8b, batch 1, f16 beside q8_0 and q4_k (the speed targets
#            of quantized weights; not in the default run)   (at most 140 s)
# A part that runs out of time is cut off and reported; the next one still runs.
# .devbin/ and .gl/ are build output: keep them out of git (.git/info/exclude).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=.devbin

prepare() {
    cargo build --release --locked --bin mamba-wgpu --example kernel_times
    local tests
    tests=$(cargo test --release --locked --no-run --test ops --test parity --test model --test differential 2>&1 |
        grep -o 'target/release/deps/[a-z_]*-[0-9a-f]*')
    if [ -d "$bin" ]; then chmod -R u+w "$bin" && rm -rf "$bin"; fi
    mkdir -p "$bin"
    strip -o "$bin/mamba-wgpu" target/release/mamba-wgpu
    strip -o "$bin/kernel_times" target/release/examples/kernel_times
    for t in $tests; do
        local name
        name=$(basename "$t")
        strip -o "$bin/${name%-*}" "$t"
    done
    du -sh "$bin"
}

# Runs "$@" under a limit of $1 seconds, its output into the log.
limited() {
    local seconds=$1
    shift
    echo "== [$(($(date +%s) - start)) s] $*"
    if timeout "$seconds" "$@" 2>&1; then :; else echo "== exit $? (124: cut off after $seconds s)"; fi
}

run_part() {
    case $1 in
    tests)
        for t in ops parity model; do limited 25 "$bin/$t" --test-threads=4; done
        limited 15 "$bin/differential"
        ;;
    kernels) limited 60 "$bin/kernel_times" ;;
    small) limited 150 "$bin/mamba-wgpu" bench --shape mamba-130m --shape mamba-370m --json "$out/small.json" ;;
    big16) limited 140 "$bin/mamba-wgpu" bench --dtype f16 --shape mamba-790m --shape mamba-1.4b --shape mamba-2.8b --json "$out/big16.json" ;;
    mamba2) limited 140 "$bin/mamba-wgpu" bench --dtype f16 --batch 1 --shape mamba2-130m --shape mamba2-780m --shape mamba2-2.7b --json "$out/mamba2.json" ;;
    big32) limited 140 "$bin/mamba-wgpu" bench --dtype f32 --shape mamba-790m --shape mamba-1.4b --shape mamba-2.8b --json "$out/big32.json" ;;
    quant) limited 140 "$bin/mamba-wgpu" bench --dtype f16 --dtype q8_0 --dtype q4_k --batch 1 --prompt-len 512 --shape mamba-1.4b --shape mamba-2.8b --json "$out/quant.json" ;;
    esac
}

known_part() {
    case $1 in tests | kernels | small | big16 | mamba2 | big32 | quant) return 0 ;; *) return 1 ;; esac
}

run() {
    out=${1:?usage: tools/gpu_check.sh run OUT [PART...]}
    shift
    local parts=("$@")
    if [ ${#parts[@]} -eq 0 ]; then parts=(tests kernels small big16 mamba2); fi
    for part in "${parts[@]}"; do
        known_part "$part" || { echo "unknown part $part (tests, kernels, small, big16, mamba2, big32)" >&2 && exit 2; }
    done
    if [ ! -x "$bin/mamba-wgpu" ]; then
        echo "no $bin/mamba-wgpu here: run tools/gpu_check.sh prepare first, and carry $bin along" >&2 && exit 2
    fi
    mkdir -p "$out"
    # A bare machine may lack the Vulkan loader: unpack Debian's from .gl/*.deb (packages put
    # there beside .devbin/) and point it at NVIDIA's driver where that is installed outside
    # the usual places.
    # (grep reads all of ldconfig's output: with -q, an early exit could fail the pipe.)
    if ! ldconfig -p | grep libvulkan.so.1 >/dev/null && compgen -G ".gl/*.deb" >/dev/null; then
        for f in .gl/*.deb; do dpkg -x "$f" /; done
        ldconfig
    fi
    local icd=/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json
    if [ -f "$icd" ]; then export VK_DRIVER_FILES=$icd; fi
    # The test binaries look for the checkout they were built in (/work/main) and its
    # tests/fixtures.
    if [ ! -e /work/main ]; then mkdir -p /work && ln -s "$PWD" /work/main; fi
    start=$(date +%s)
    {
        "$bin/mamba-wgpu" info || echo "== mamba-wgpu info failed (exit $?): no adapter?"
        for part in "${parts[@]}"; do run_part "$part"; done
        echo "== done after $(($(date +%s) - start)) s"
    } 2>&1 | tee "$out/log.txt"
}

case "${1:-}" in
prepare) prepare ;;
run) shift && run "$@" ;;
*) echo "usage: tools/gpu_check.sh prepare | run OUT [tests|kernels|small|big16|big32]..." >&2 && exit 2 ;;
esac
