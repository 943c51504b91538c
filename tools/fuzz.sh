#!/usr/bin/env bash
# Fuzzes the parsers a user feeds the engine with cargo-fuzz (libFuzzer), each for a while:
#
#   tools/fuzz.sh [SECONDS] [TARGET]...      default: 600 seconds each, every target
#
# Targets (fuzz/fuzz_targets/): config (config.json), safetensors (a model file's header and
# tensors), shard_index (model.safetensors.index.json), state_file (--load-state files),
# torch_bin (pytorch_model.bin: the zip container and the restricted pickle machine), gguf (a
# GGUF file: header, config, tensors, embedded tokenizer).
# Each corpus (fuzz/corpus/TARGET, not in git) starts from the repository's fixtures and
# fuzz/seeds/TARGET. A crash leaves its input in fuzz/artifacts/TARGET and fails the script.
#
# Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly --profile minimal && cargo install cargo-fuzz
set -euo pipefail
cd "$(dirname "$0")/.."
seconds=${1:-600}
shift || true
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then targets=(config safetensors shard_index state_file torch_bin gguf); fi

for target in "${targets[@]}"; do
  corpus=fuzz/corpus/$target
  mkdir -p "$corpus"
  if [ -d "fuzz/seeds/$target" ]; then cp -n fuzz/seeds/"$target"/* "$corpus"/ 2>/dev/null || true; fi
  case $target in
    config) for f in tests/fixtures/*/config.json models/*/config.json; do cp -n "$f" "$corpus/$(echo "$f" | tr / _)"; done ;;
    safetensors) cp -n tests/fixtures/mamba1-tiny/model.safetensors "$corpus/mamba1-tiny.safetensors" ;;
  esac
  echo "== fuzzing $target for ${seconds}s"
  cargo +nightly fuzz run "$target" "$corpus" -- -max_total_time="$seconds" -rss_limit_mb=2048 -print_final_stats=1
done
