#!/usr/bin/env bash
# Long runs that CI cannot afford, each watching the process's resident memory (VmRSS, from
# /proc) while it runs:
#
#   tools/long_runs.sh [TOKENS] [PROMPT_TOKENS]     default: 100000 and 1000000 (0 skips a run)
#
# 1. generate TOKENS tokens from the mamba1-tiny fixture (--prompt-ids, streamed to
#    /dev/null): memory must stay flat, the last tenth of the run within 16 MiB of the first
#    tenth's peak (the id history grows by 4 bytes a token);
# 2. prefill a text prompt of PROMPT_TOKENS words through a word-level tokenizer: the GPU
#    scratch is bounded by the prefill chunk and the text is tokenized a piece at a time, so
#    against a run on a tenth of the prompt the peak may grow only by the prompt itself (its
#    text and ids, a few copies: at most 64 bytes a token), not by activations or tokenizer
#    bookkeeping (hundreds of bytes a token).
# Linux only (/proc). Builds the release binary first.
set -euo pipefail
cd "$(dirname "$0")/.."
tokens=${1:-100000}
prompt_tokens=${2:-1000000}
cargo build --release --locked --quiet
bin=target/release/mamba-wgpu
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export XDG_RUNTIME_DIR="${XDG_RUNTIME_DIR:-$work}"

# Runs "$@" and samples its VmRSS (KiB) every 0.5 s into $work/rss; prints the samples' count.
watch_rss() {
  "$@" > /dev/null 2> "$work/stderr" &
  local pid=$!
  : > "$work/rss"
  while kill -0 "$pid" 2> /dev/null; do
    awk '/VmRSS/ { print $2 }' "/proc/$pid/status" 2> /dev/null >> "$work/rss" || true
    sleep 0.5
  done
  wait "$pid" || { cat "$work/stderr" >&2; return 1; }
  tail -1 "$work/stderr" >&2
}

if [ "$tokens" -gt 0 ]; then
  echo "== 1. generating $tokens tokens (mamba1-tiny)"
  watch_rss "$bin" generate --model tests/fixtures/mamba1-tiny --prompt-ids 1,2,3 --max-tokens "$tokens" --seed 1 --temperature 0.9
  n=$(wc -l < "$work/rss")
  first=$(head -n $((n / 10 + 1)) "$work/rss" | sort -n | tail -1)
  last=$(tail -n $((n / 10 + 1)) "$work/rss" | sort -n | tail -1)
  echo "RSS peak: first tenth $((first / 1024)) MiB, last tenth $((last / 1024)) MiB ($n samples)"
  if [ $((last - first)) -gt $((16 * 1024)) ]; then
    echo "FAIL: memory grew by $(((last - first) / 1024)) MiB over the run" >&2
    exit 1
  fi
fi

if [ "$prompt_tokens" -eq 0 ]; then echo "long runs: ok"; exit 0; fi
echo "== 2. prefilling $prompt_tokens tokens (mamba1-tiny, word tokenizer)"
model=$work/words
mkdir -p "$model"
cp tests/fixtures/mamba1-tiny/config.json tests/fixtures/mamba1-tiny/model.safetensors "$model"/
python3 - "$model" "$work" "$prompt_tokens" <<'PY'
import json, sys
model, work, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
vocab = {"<|endoftext|>": 0, **{f"t{i}": i for i in range(1, 512)}}
json.dump({"version": "1.0", "truncation": None, "padding": None, "added_tokens": [], "normalizer": None,
           "pre_tokenizer": {"type": "Whitespace"}, "post_processor": None, "decoder": None,
           "model": {"type": "WordLevel", "vocab": vocab, "unk_token": "<|endoftext|>"}}, open(f"{model}/tokenizer.json", "w"))
words = [f"t{1 + i % 500}" for i in range(n)]
open(f"{work}/prompt.txt", "w").write(" ".join(words))
open(f"{work}/prompt-tenth.txt", "w").write(" ".join(words[: n // 10]))
PY
watch_rss "$bin" generate --model "$model" --prompt-file "$work/prompt-tenth.txt" --max-tokens 1
small=$(sort -n "$work/rss" | tail -1)
watch_rss "$bin" generate --model "$model" --prompt-file "$work/prompt.txt" --max-tokens 1
big=$(sort -n "$work/rss" | tail -1)
echo "RSS peak: $((prompt_tokens / 10)) tokens $((small / 1024)) MiB, $prompt_tokens tokens $((big / 1024)) MiB"
if [ "$prompt_tokens" -gt 0 ] && [ $((big - small)) -gt $((prompt_tokens / 16)) ]; then
  echo "FAIL: the peak grew by $(((big - small) / 1024)) MiB with the prompt's length" >&2
  exit 1
fi
echo "long runs: ok"
