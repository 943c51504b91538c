#!/usr/bin/env python3
"""Convert a Hugging Face Mamba folder to a GGUF file the way llama.cpp's converter does.

    python3 tools/make_gguf.py MODEL_DIR OUT.gguf [--outtype f32|f16] [--quant q8_0|q4_0]
                               [--no-tokenizer | --vocab-from TOKENIZER.json] [-v]

MODEL_DIR holds config.json, model.safetensors (or model-*.safetensors shards, with or without
model.safetensors.index.json) and, usually, tokenizer.json. The output is what llama.cpp's
`convert_hf_to_gguf.py` writes for the same folder (its `MambaModel` class for
MambaForCausalLM / FalconMambaForCausalLM, arch "mamba"; `Mamba2Model` for Mamba2ForCausalLM,
arch "mamba2"): the same metadata keys, values and order, tensor names, shapes, types and order,
and vocabulary. It needs only the `gguf` package (llama.cpp's gguf-py, which also supplies the
tensor-name map, the GGUF writer, the general.* metadata heuristics, the special-token and merges
reader and the quantizers) and numpy; not torch or transformers.

What the converter does, and so this script:

* Tensors are visited file by file (shards sorted by name), each file's tensors sorted by name;
  BF16/F64 become F32 first. Names map through gguf's tensor map: backbone.embeddings ->
  token_embd, layers.N.norm -> blk.N.attn_norm, mixer.in_proj -> blk.N.ssm_in, mixer.conv1d ->
  blk.N.ssm_conv1d (weight and bias), mixer.x_proj -> blk.N.ssm_x, mixer.dt_proj -> blk.N.ssm_dt
  (weight and bias; Mamba-2's dt_bias is renamed to dt_proj.bias first), mixer.A_log ->
  blk.N.ssm_a, mixer.D -> blk.N.ssm_d, mixer.out_proj -> blk.N.ssm_out, Mamba-2's gated
  mixer.norm -> blk.N.ssm_norm, backbone.norm_f -> output_norm, lm_head -> output. A_log and D
  are parameters without a ".weight" suffix, so `blk.N.ssm_a` and `blk.N.ssm_d` have none either.
* ssm_a holds A = -exp(A_log). The conv weight [C, 1, K] is squeezed to [C, K]. Mamba-1 drops
  `output.weight` when it equals token_embd bit for bit (Mamba-2 keeps it). Mamba-2 stores
  ssm_a and ssm_d as [n_head, 1] (A "unsqueezed to use similar shape semantics as Mamba-1") and
  ssm_norm as [n_group, d_inner / n_group]. (Shapes here are NumPy / PyTorch order; GGUF lists
  the dimensions reversed, e.g. ssm_a of Mamba-2 has ne = [1, n_head].)
* Types: 1-D tensors, `*_norm.weight` (ssm_norm included, though 2-D), ssm_conv1d.weight and
  every tensor whose name does not end in ".weight" (ssm_a, ssm_d) are F32; the other (2-D)
  weights take the output type: F32 with `--outtype f32`, F16 with `--outtype f16` (the
  converter's default, and this script's).
* Metadata: general.architecture, general.type "model", general.name etc. from gguf.Metadata
  (model card, config.json and folder name heuristics, as the converter), general.size_label,
  then the family's keys: {arch}.context_length = 2^20 (arbitrary), embedding_length,
  feed_forward_length = 0 and attention.head_count = 0 ("unused, but seemingly required"),
  block_count, ssm.conv_kernel, ssm.inner_size, ssm.state_size, ssm.time_step_rank
  (Mamba-2: d_inner / head_dim, i.e. the number of heads), ssm.group_count (Mamba-2 only),
  attention.layer_norm_rms_epsilon, ssm.dt_b_c_rms (Mamba-1 only: true for model_type
  "falcon_mamba"), general.file_type, general.quantization_version = 2; then the tokenizer.
  Not carried: FalconMamba's mixer_rms_eps (llama.cpp's dt/B/C norms use
  layer_norm_rms_epsilon), Mamba-2's time_step_limit, use_bias/use_conv_bias (seen from which
  tensors exist), vocab_size (the number of tokens is the vocabulary's length).
* Vocabulary (`_set_vocab_gpt2`): hparams["vocab_size"] is first rounded up to a multiple of
  pad_vocab_size_multiple (default 8 for Mamba-1, 16 for Mamba-2); the token list has exactly
  that many entries, ids missing from the tokenizer becoming "[PAD{id}]" of type UNUSED. The
  tensors are NOT padded: token_embd and output keep the checkpoint's rows. Keys:
  tokenizer.ggml.model "gpt2", tokenizer.ggml.pre, tokenizer.ggml.tokens, tokenizer.ggml.token_type
  (1 normal, 3 control = an added token marked special or looking like <|...|>, 4 user-defined =
  other added tokens, 5 unused), then gguf.SpecialVocab's tokenizer.ggml.merges ("a b" strings),
  bos/eos/unknown/seperator/padding token ids (tokenizer_config.json, then config.json's
  *_token_id) and add_*_token flags.
* tokenizer.ggml.pre: the converter names the pre-tokenizer by hashing the token ids of a fixed
  test string and refuses tokenizers whose hash it does not know, which is every tokenizer
  trained for a small model (the shipped model's included). This script does not hash (that
  needs a tokenizer implementation): it writes "gpt-2" when tokenizer.json's pre-tokenizer is
  ByteLevel with the GPT-2 split regex (use_regex true, add_prefix_space false, or a Split on
  that regex followed by a regex-less ByteLevel), which is what llama.cpp's "gpt-2"
  pre-tokenizer implements, and refuses anything else. A non-special added token is assumed to
  encode and decode to itself (the converter re-encodes those marked normalized=false).
* The converter reads the vocabulary through transformers' AutoTokenizer. For a folder without
  tokenizer_config.json, transformers 5 picks the class of config.json's model_type
  (GPTNeoXTokenizer for mamba), which adds a "<|padding|>" pad token after the vocabulary (id
  4096 for the shipped model), and the converter's check that every id is below vocab_size
  fails. This script reads tokenizer.json as it is, which is what the converter gets from a
  tokenizer that adds nothing (checked against transformers' PreTrainedTokenizerFast: same
  tokens and types).

Beyond the converter:

* `--quant q8_0|q4_0` writes the 2-D weights that llama.cpp's `llama-quantize` would quantize
  (name ending in ".weight", not `*_norm.weight`, not ssm_conv1d: token_embd, output, ssm_in,
  ssm_x, ssm_dt, ssm_out) as Q8_0 or Q4_0 with gguf.quants.quantize (NumPy ports of ggml's
  reference quantizers), general.file_type 7 (MOSTLY_Q8_0) or 2 (MOSTLY_Q4_0). One type for all
  of them (llama-quantize would give `output` Q6_K under Q4_0). A weight whose rows are not a
  multiple of 32 (ssm_dt: rows of dt_rank) cannot be quantized and takes `--outtype` instead.
  The other tensors are as without --quant. (The converter's own `--outtype q8_0` is the same for
  Q8_0, except that it falls back to F16 rather than to --outtype.)
* `--no-tokenizer` writes no tokenizer.* keys. Without it a folder with no tokenizer.json is an
  error (the converter would embed llama.cpp's bundled GPT-NeoX vocabulary instead).
* `--vocab-from FILE` embeds another tokenizer.json as if it were in MODEL_DIR (for the tiny test
  models, which have none): it is trimmed to the model's vocab_size (the embedding rows) by
  dropping the ids >= vocab_size (vocab entries and added tokens) and every merge whose parts
  or result were dropped; a shorter vocabulary is padded by the converter's rule above. Special
  token ids come from MODEL_DIR's config.json (and a tokenizer_config.json beside FILE), as the
  converter would read them.
* -exp(A_log) is computed in float64 and rounded to the checkpoint's dtype (correctly rounded).
  The converter uses torch's exp, whose float32 result depends on the CPU's vector code and is
  1 ulp away from that for about 1% of the values (41 of 4096 for tests/fixtures/mamba1-tiny on
  an AVX-512 machine); for the float16 shipped model they agree on all 32768 values.

As a library:

    sys.path.insert(0, "tools"); import make_gguf
    info = make_gguf.convert("tests/fixtures/mamba2-tiny", "target/m2.gguf", outtype="f32",
                             vocab_from="models/shakespeare-mamba/tokenizer.json")
    info["tensors"]  # [(name, ggml type name, shape in GGUF order (ne)), ...]

convert() raises ConversionError for what it cannot convert.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from gguf import LlamaFileType as FT

ARCHITECTURES = {
    "MambaForCausalLM": gguf.MODEL_ARCH.MAMBA,
    "MambaLMHeadModel": gguf.MODEL_ARCH.MAMBA,
    "FalconMambaForCausalLM": gguf.MODEL_ARCH.MAMBA,
    "Mamba2ForCausalLM": gguf.MODEL_ARCH.MAMBA2,
}
OUTTYPES = {"f32": (FT.ALL_F32, QT.F32), "f16": (FT.MOSTLY_F16, QT.F16)}
QUANTS = {"q8_0": (FT.MOSTLY_Q8_0, QT.Q8_0), "q4_0": (FT.MOSTLY_Q4_0, QT.Q4_0)}

# safetensors dtypes the converter reads (everything not F16/F32 is converted to F32)
ST_DTYPES = {"F16": np.dtype("<f2"), "F32": np.dtype("<f4"), "F64": np.dtype("<f8")}

# The split regex of GPT-2's pre-tokenizer (what ByteLevel with use_regex applies)
GPT2_REGEX = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)"

log = logging.getLogger("make_gguf")


class ConversionError(Exception):
    pass


# --------------------------------------------------------------------------
# hyperparameters
# --------------------------------------------------------------------------
def load_hparams(model_dir: Path) -> dict:
    with open(model_dir / "config.json", encoding="utf-8") as f:
        hparams = json.load(f)
    if "llm_config" in hparams:
        hparams["text_config"] = hparams["llm_config"]
    if "text_config" in hparams:
        hparams = {**hparams, **hparams["text_config"]}
    return hparams


def find_hparam(hparams: dict, keys, optional: bool = False):
    key = next((k for k in keys if k in hparams), None)
    if key is not None:
        return hparams[key]
    if optional:
        return None
    raise ConversionError(f"config.json has none of {list(keys)}")


def model_arch(hparams: dict) -> gguf.MODEL_ARCH:
    archs = hparams.get("architectures") or []
    for a in archs:
        if a in ARCHITECTURES:
            return ARCHITECTURES[a]
    raise ConversionError(f"not a Mamba checkpoint: architectures {archs}; supported: {sorted(ARCHITECTURES)}")


def set_mamba_parameters(w: gguf.GGUFWriter, hp: dict, block_count: int, ftype: FT) -> None:
    """MambaModel.set_gguf_parameters."""
    d_model = find_hparam(hp, ["hidden_size", "d_model"])
    d_conv = find_hparam(hp, ["conv_kernel", "d_conv"], optional=True) or 4
    d_inner = find_hparam(hp, ["intermediate_size", "d_inner"], optional=True) or 2 * d_model
    d_state = find_hparam(hp, ["state_size", "d_state"], optional=True) or 16
    dt_rank = find_hparam(hp, ["time_step_rank", "dt_rank"], optional=True) or -(d_model // -16)
    rms_norm_eps = find_hparam(hp, ["layer_norm_epsilon", "rms_norm_eps"], optional=True) or 1e-5
    use_dt_b_c_norm = find_hparam(hp, ["model_type"], optional=True) in ("falcon_mamba",)
    if d_inner != 2 * d_model:
        raise ConversionError(f"d_inner {d_inner} != 2 * d_model {d_model} (the converter asserts expand 2)")
    w.add_context_length(2**20)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(block_count)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(dt_rank)
    w.add_layer_norm_rms_eps(rms_norm_eps)
    w.add_ssm_dt_b_c_rms(use_dt_b_c_norm)
    w.add_file_type(ftype)


def mamba2_dims(hp: dict) -> tuple[int, int, int]:
    d_model = find_hparam(hp, ["hidden_size", "d_model", "dim"])
    d_inner = find_hparam(hp, ["mamba_d_ssm", "intermediate_size", "d_inner"], optional=True) or 2 * d_model
    n_group = find_hparam(hp, ["n_groups"], optional=True) or 1
    return d_model, d_inner, n_group


def set_mamba2_parameters(w: gguf.GGUFWriter, hp: dict, block_count: int, ftype: FT) -> None:
    """Mamba2Model.set_gguf_parameters."""
    d_model, d_inner, n_group = mamba2_dims(hp)
    d_conv = find_hparam(hp, ["conv_kernel", "d_conv"], optional=True) or 4
    d_state = find_hparam(hp, ["state_size", "d_state"], optional=True) or 128
    head_dim = find_hparam(hp, ["mamba_d_head", "head_dim"], optional=True) or 64
    rms_norm_eps = find_hparam(hp, ["layer_norm_epsilon", "rms_norm_eps"], optional=True) or 1e-5
    if d_inner != 2 * d_model or d_inner % head_dim != 0:
        raise ConversionError(f"d_inner {d_inner}, d_model {d_model}, head_dim {head_dim}: the converter "
                              "asserts d_inner == 2 * d_model and d_inner % head_dim == 0")
    w.add_context_length(2**20)
    w.add_embedding_length(d_model)
    w.add_feed_forward_length(0)
    w.add_head_count(0)
    w.add_block_count(block_count)
    w.add_ssm_conv_kernel(d_conv)
    w.add_ssm_inner_size(d_inner)
    w.add_ssm_state_size(d_state)
    w.add_ssm_time_step_rank(d_inner // head_dim)
    w.add_ssm_group_count(n_group)
    w.add_layer_norm_rms_eps(rms_norm_eps)
    w.add_file_type(ftype)


# --------------------------------------------------------------------------
# tensors
# --------------------------------------------------------------------------
def part_names(model_dir: Path) -> list[str]:
    """ModelBase.get_model_part_names / the index's files, sorted."""
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        with open(index, encoding="utf-8") as f:
            weight_map = json.load(f).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ConversionError(f"{index}: no weight_map")
        return sorted(dict.fromkeys(weight_map.values()))
    parts = sorted(n for n in os.listdir(model_dir) if n.startswith("model") and n.endswith(".safetensors"))
    if not parts:
        raise ConversionError(f"{model_dir}: no model*.safetensors")
    return parts


def read_tensor(t) -> np.ndarray:
    """A gguf.utility.LocalTensor as the converter sees it: F16 and F32 as they are, the rest F32."""
    raw = t.mmap_bytes()
    if t.dtype == "BF16":
        arr = (raw.view("<u2").astype(np.uint32) << 16).view(np.float32)
    elif t.dtype in ST_DTYPES:
        arr = raw.view(ST_DTYPES[t.dtype])
    else:
        raise ConversionError(f"unsupported safetensors dtype {t.dtype}")
    arr = np.array(arr.reshape(t.shape))  # a copy, not a view of the file
    if arr.dtype not in (np.float16, np.float32):
        arr = arr.astype(np.float32)
    return arr.astype(arr.dtype.newbyteorder("="), copy=False)


def iter_tensors(model_dir: Path):
    for part in part_names(model_dir):
        with gguf.utility.SafetensorsLocal(model_dir / part) as tensors:  # sorted by name
            for name, t in tensors.items():
                yield name, t


def neg_exp(a: np.ndarray) -> np.ndarray:
    """-exp(a), correctly rounded to a's dtype."""
    return (-np.exp(a.astype(np.float64))).astype(a.dtype)


def first_block_id(name: str) -> int | None:
    for part in name.split("."):
        if part.isdecimal():
            return int(part)
    return None


def tensor_type(new_name: str, bid: int | None, n_dims: int, want: QT) -> QT:
    """The F32 rules of the converter's prepare_tensors (which llama-quantize shares for these)."""
    if n_dims <= 1 or new_name.endswith("_norm.weight"):
        return QT.F32
    if (bid is not None and new_name == f"blk.{bid}.ssm_conv1d.weight") or new_name[-7:] not in (".weight", ".lora_a", ".lora_b"):
        return QT.F32
    return want


def converted_tensors(model_dir: Path, arch: gguf.MODEL_ARCH, hp: dict, block_count: int):
    """Yield (gguf name, array) in the converter's order, after its transformations."""
    tmap = gguf.get_tensor_name_map(arch, block_count)
    tok_embd = None
    if arch == gguf.MODEL_ARCH.MAMBA2:
        _, d_inner, n_group = mamba2_dims(hp)
    for name, t in iter_tensors(model_dir):
        if arch == gguf.MODEL_ARCH.MAMBA2:  # Mamba2Model.filter_tensors
            if name.startswith(("model.backbone", "model.lm_head")):
                name = name.removeprefix("model.")
            if name.endswith(".dt_bias"):
                name = name.rpartition(".dt_bias")[0] + ".dt_proj.bias"
        if name.endswith((".attention.masked_bias", ".attention.bias", ".rotary_emb.inv_freq")):
            continue
        data = read_tensor(t)
        bid = first_block_id(name)
        new_name = tmap.get_name(key=name, try_suffixes=(".weight", ".bias"))
        if new_name is None:
            raise ConversionError(f"Can not map tensor {name!r}")
        if arch == gguf.MODEL_ARCH.MAMBA:  # MambaModel.modify_tensors
            if name.endswith(".A_log"):
                data = neg_exp(data)
            if bid is not None and new_name == f"blk.{bid}.ssm_conv1d.weight":
                data = data.squeeze()
            if tok_embd is not None and new_name == "output.weight":
                if tok_embd.shape == data.shape and np.array_equal(tok_embd, data):
                    log.info("output.weight is equivalent to token_embd.weight, omitting")
                    continue
            elif new_name == "token_embd.weight":
                tok_embd = data
        else:  # Mamba2Model.modify_tensors
            if bid is not None and new_name == f"blk.{bid}.ssm_conv1d.weight":
                data = data.squeeze()
            elif bid is not None and new_name in (f"blk.{bid}.ssm_a", f"blk.{bid}.ssm_d"):
                data = data.reshape((*data.shape, 1))
            elif bid is not None and new_name == f"blk.{bid}.ssm_norm.weight":
                data = data.reshape((n_group, d_inner // n_group))
            if name.endswith(".A_log"):
                data = neg_exp(data)
        yield new_name, bid, data


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------
def pre_tokenizer_name(tok: dict) -> str:
    """tokenizer.ggml.pre for a tokenizer.json (see the module docstring)."""

    def is_gpt2(pre) -> bool:
        if not isinstance(pre, dict):
            return False
        kind = pre.get("type")
        if kind == "ByteLevel":
            return bool(pre.get("use_regex", True)) and not pre.get("add_prefix_space", False)
        if kind == "Sequence":
            ps = pre.get("pretokenizers") or []
            if len(ps) == 1:
                return is_gpt2(ps[0])
            if len(ps) == 2:
                split, bl = ps
                return (split.get("type") == "Split" and (split.get("pattern") or {}).get("Regex") == GPT2_REGEX
                        and split.get("behavior") == "Isolated" and not split.get("invert", False)
                        and bl.get("type") == "ByteLevel" and not bl.get("use_regex", True)
                        and not bl.get("add_prefix_space", False))
        return False

    if is_gpt2(tok.get("pre_tokenizer")):
        # The converter would look this tokenizer up by a hash of its token ids; for one it does
        # not know (any custom vocabulary) it stops. ByteLevel with GPT-2's regex is exactly
        # llama.cpp's "gpt-2" pre-tokenizer, so that is what is written.
        return "gpt-2"
    raise ConversionError(f"pre-tokenizer {json.dumps(tok.get('pre_tokenizer'))} is not ByteLevel with "
                          "GPT-2's regex; no tokenizer.ggml.pre for it")


def looks_special(token: str) -> bool:
    """TextModel.does_token_look_special."""
    seems = token in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
    seems = seems or (token.startswith("<|") and token.endswith("|>"))
    seems = seems or (token.startswith("<\uff5c") and token.endswith("\uff5c>"))
    seems = seems or (token.startswith("<unused") and token.endswith(">"))
    return seems


def vocab_tokens(tok: dict, vocab_size: int) -> tuple[list[str], list[int]]:
    """TextModel.get_vocab_base for a tokenizer.json: (tokens, token types)."""
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise ConversionError(f"tokenizer model {model.get('type')!r}: only BPE (GPT-2 style) is supported")
    full = dict(model["vocab"])
    added = tok.get("added_tokens") or []
    for a in added:
        full[a["content"]] = a["id"]
    if full and max(full.values()) >= vocab_size:
        raise ConversionError(f"tokenizer has id {max(full.values())} >= vocab size {vocab_size}")
    reverse = {i: t for t, i in full.items()}
    added_contents = {a["content"] for a in added}
    added_by_id = {a["id"]: a for a in added}
    tokens, types = [], []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(gguf.TokenType.UNUSED)
            continue
        token = reverse[i]
        if token in added_contents:
            if added_by_id[i].get("special") or looks_special(token):
                types.append(gguf.TokenType.CONTROL)
            else:
                token = token.replace("\u2581", " ")  # pre-normalize user-defined spaces
                types.append(gguf.TokenType.USER_DEFINED)
        else:
            types.append(gguf.TokenType.NORMAL)
        tokens.append(token)
    return tokens, types


def trim_tokenizer(tok: dict, n: int) -> dict:
    """tokenizer.json without ids >= n: vocab entries, added tokens, and the merges that need them."""
    tok = json.loads(json.dumps(tok))
    model = tok.get("model") or {}
    if model.get("type") != "BPE":
        raise ConversionError(f"tokenizer model {model.get('type')!r}: only BPE can be trimmed")
    vocab = {t: i for t, i in model["vocab"].items() if i < n}
    merges = []
    for m in model.get("merges") or []:
        a, b = m.split(" ", 1) if isinstance(m, str) else m
        if a in vocab and b in vocab and a + b in vocab:
            merges.append(m)
    model["vocab"] = vocab
    model["merges"] = merges
    tok["added_tokens"] = [a for a in tok.get("added_tokens") or [] if a["id"] < n]
    return tok


def set_vocab(w: gguf.GGUFWriter, tokenizer_dir: Path, vocab_size: int) -> int:
    """TextModel._set_vocab_gpt2 reading tokenizer_dir; returns the number of tokens."""
    with open(tokenizer_dir / "tokenizer.json", encoding="utf-8") as f:
        tok = json.load(f)
    tokens, types = vocab_tokens(tok, vocab_size)
    pre = pre_tokenizer_name(tok)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre(pre)
    w.add_token_list(tokens)
    w.add_token_types(types)
    special = gguf.SpecialVocab(tokenizer_dir, load_merges=True)
    special.add_to_gguf(w, quiet=True)
    return len(tokens)


# --------------------------------------------------------------------------
# conversion
# --------------------------------------------------------------------------
def convert(model_dir, out_path, *, outtype: str = "f16", quant: str | None = None, tokenizer: bool = True,
            vocab_from=None) -> dict:
    """Write OUT_PATH from MODEL_DIR (see the module docstring). Returns a summary:
    {"path", "arch", "file_type", "n_tokens" (None without tokenizer), "kv" (keys in file order),
     "tensors" [(name, type name, GGUF shape (ne, innermost first)), ...]}."""
    model_dir, out_path = Path(model_dir), Path(out_path)
    if outtype not in OUTTYPES:
        raise ConversionError(f"outtype {outtype!r}: one of {sorted(OUTTYPES)}")
    if quant is not None and quant not in QUANTS:
        raise ConversionError(f"quant {quant!r}: one of {sorted(QUANTS)}")
    if vocab_from is not None and not tokenizer:
        raise ConversionError("vocab_from and tokenizer=False exclude each other")
    hp = load_hparams(model_dir)
    arch = model_arch(hp)
    block_count = find_hparam(hp, ["n_layers", "num_hidden_layers", "n_layer", "num_layers"])
    ftype, out_qtype = OUTTYPES[outtype]
    want = out_qtype
    if quant is not None:
        ftype, want = QUANTS[quant]

    # the tokenizer is checked before anything is written
    tokenizer_dir, tmp = None, None
    if tokenizer:
        if vocab_from is not None:
            vocab_from = Path(vocab_from)
            with open(vocab_from, encoding="utf-8") as f:
                tok = json.load(f)
            tok = trim_tokenizer(tok, int(hp["vocab_size"]))
            tmp = tempfile.mkdtemp(prefix="make_gguf_")
            tokenizer_dir = Path(tmp)
            with open(tokenizer_dir / "tokenizer.json", "w", encoding="utf-8") as f:
                json.dump(tok, f, ensure_ascii=False)
            shutil.copy(model_dir / "config.json", tokenizer_dir / "config.json")
            if (vocab_from.parent / "tokenizer_config.json").is_file():
                shutil.copy(vocab_from.parent / "tokenizer_config.json", tokenizer_dir / "tokenizer_config.json")
        elif arch == gguf.MODEL_ARCH.MAMBA2 and (model_dir / "tokenizer.model").is_file():
            raise ConversionError("tokenizer.model (SentencePiece): not supported; use --no-tokenizer")
        elif (model_dir / "tokenizer.json").is_file():
            tokenizer_dir = model_dir
        elif (model_dir / "tokenizer.model").is_file():
            raise ConversionError("tokenizer.model (SentencePiece): not supported; use --no-tokenizer")
        else:
            raise ConversionError(f"{model_dir} has no tokenizer.json (the converter would embed llama.cpp's "
                                  "GPT-NeoX vocabulary): use --no-tokenizer or --vocab-from")

    try:
        w = gguf.GGUFWriter(path=None, arch=gguf.MODEL_ARCH_NAMES[arch])
        tensors = []
        for new_name, bid, data in converted_tensors(model_dir, arch, hp, block_count):
            qtype = tensor_type(new_name, bid, data.ndim, want)
            try:
                q = gguf.quants.quantize(data, qtype)
            except gguf.QuantError:
                qtype = out_qtype
                q = gguf.quants.quantize(data, qtype)
            w.add_tensor(new_name, q, raw_dtype=qtype)
            tensors.append((new_name, qtype.name, tuple(reversed(data.shape))))

        # ModelBase.prepare_metadata
        total_params, shared_params, expert_params, expert_count = w.get_total_parameter_count()
        metadata = gguf.Metadata.load(None, model_dir, None, total_params)
        if metadata.name is None:
            metadata.name = model_dir.name
        if metadata.size_label is None and total_params > 0:
            metadata.size_label = gguf.size_label(total_params, shared_params, expert_params, expert_count)
        w.add_type(gguf.GGUFType.MODEL)
        metadata.set_gguf_meta_model(w)
        if arch == gguf.MODEL_ARCH.MAMBA:
            set_mamba_parameters(w, hp, block_count, ftype)
        else:
            set_mamba2_parameters(w, hp, block_count, ftype)
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)

        # TextModel.prepare_metadata -> set_vocab: the vocab size rounded up first
        vocab_size = int(hp["vocab_size"])
        pad = hp.get("pad_vocab_size_multiple", 8 if arch == gguf.MODEL_ARCH.MAMBA else 16)
        vocab_size = -(vocab_size // -pad) * pad
        n_tokens = set_vocab(w, tokenizer_dir, vocab_size) if tokenizer_dir is not None else None

        out_path.parent.mkdir(parents=True, exist_ok=True)
        w.write_header_to_file(path=out_path)
        w.write_kv_data_to_file()
        w.write_tensors_to_file(progress=False)
        w.close()
        kv = [k for kvs in w.kv_data for k in kvs]
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
    return {"path": str(out_path), "arch": gguf.MODEL_ARCH_NAMES[arch], "file_type": int(ftype),
            "n_tokens": n_tokens, "kv": kv, "tensors": tensors}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 epilog="See the top of tools/make_gguf.py for what is written.")
    ap.add_argument("model_dir", type=Path, help="Hugging Face folder: config.json, model.safetensors, tokenizer.json")
    ap.add_argument("out", type=Path, help="the .gguf file to write")
    ap.add_argument("--outtype", choices=sorted(OUTTYPES), default="f16",
                    help="type of the 2-D weights (default f16, as the converter)")
    ap.add_argument("--quant", choices=sorted(QUANTS), help="quantize the 2-D weights llama-quantize would")
    g = ap.add_mutually_exclusive_group()
    g.add_argument("--no-tokenizer", action="store_true", help="write no tokenizer.* keys")
    g.add_argument("--vocab-from", type=Path, metavar="TOKENIZER.json",
                   help="embed this tokenizer.json, trimmed to the model's vocab_size")
    ap.add_argument("-v", "--verbose", action="store_true")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(name)s: %(message)s")
    try:
        info = convert(args.model_dir, args.out, outtype=args.outtype, quant=args.quant,
                       tokenizer=not args.no_tokenizer, vocab_from=args.vocab_from)
    except ConversionError as e:
        print(f"make_gguf: {e}", file=sys.stderr)
        return 1
    print(f"{info['path']}: arch {info['arch']}, file_type {info['file_type']}, {len(info['tensors'])} tensors, "
          f"{info['n_tokens'] if info['n_tokens'] is not None else 'no'} tokens, {os.path.getsize(info['path'])} bytes")
    if args.verbose:
        for name, qtype, shape in info["tensors"]:
            print(f"  {name:28s} {qtype:5s} {list(shape)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
