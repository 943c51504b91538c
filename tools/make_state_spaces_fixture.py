#!/usr/bin/env python3
"""Convert a Hugging Face fixture folder into the layout of the original state-spaces
releases, and write the small PyTorch files that test the engine's `pytorch_model.bin` reader.

1. Fixture conversion (`SRC DST`): SRC is a folder of tests/fixtures in Hugging Face format
   (config.json + model.safetensors + expected.*).  DST gets what a state-spaces Hugging Face
   repository (e.g. state-spaces/mamba-130m) holds, for the same model:

     config.json           mamba_ssm's MambaConfig fields (d_model, n_layer, vocab_size,
                           ssm_cfg, rms_norm, residual_in_fp32, fused_add_norm,
                           pad_vocab_size_multiple, tie_embeddings, ...), nothing else, as
                           mamba_ssm builds its MambaConfig(**config) from it
     pytorch_model.bin     the state dict as mamba_ssm's save_pretrained writes it:
                           torch.save (zip format), mamba_ssm names, tensors in their stored
                           dtype, in mamba_ssm's module order; a tied model also stores
                           `lm_head.weight`, sharing the embedding's storage (one copy)
     expected.safetensors  copied: the outputs do not depend on the file format
     expected.json         copied
     README.md             what the folder is and how it was made

   The names are Hugging Face's except `backbone.embeddings.weight`, which mamba_ssm calls
   `backbone.embedding.weight`.  Mamba-1 (`model_type: mamba`) and Mamba-2
   (`model_type: mamba2`, ssm_cfg.layer = "Mamba2") configs are converted.  A config that
   mamba_ssm cannot express (an epsilon other than 1e-5, an intermediate size other than
   expand x hidden size, ...) is refused.  The written file is read back with
   torch.load(weights_only=True) and compared bit for bit with model.safetensors.

2. Reader test files (`--test-files DIR`, e.g. tests/data/torch_bin): small torch.save files
   with F16, BF16 and F32 tensors, storage offsets, names sharing one storage, a scalar, the
   same state dict with pickle protocol 4 and rewritten with zip64 records, a non-contiguous
   tensor, the legacy (pre-zip) format, a deflate-compressed copy, and hand-written pickles
   that name forbidden globals (`os.system`, `builtins.eval`; written byte by byte, never by
   pickling a callable, and never unpickled here).  expected.json records each tensor's
   dtype, shape, storage offset, which tensors share a storage and the values, as torch
   reads them.  A rebuild writes the same bytes, except legacy.bin (the legacy format keys
   its storages by object address).

Usage (with the venv of tools/requirements-fixtures.txt):
  python tools/make_state_spaces_fixture.py tests/fixtures/mamba1-tiny tests/fixtures/mamba1-tiny-state-spaces
  python tools/make_state_spaces_fixture.py --test-files tests/data/torch_bin
"""
import argparse
import json
import math
import os
import shutil
import struct
import sys
import zipfile
import zlib
from collections import OrderedDict

import torch
from safetensors.torch import load_file

EPS = 1e-5  # mamba_ssm's RMSNorm epsilon; its MambaConfig has no field for another one

# Per-layer tensors in mamba_ssm's state_dict order: a module's own parameters first, then its
# submodules' in registration order (Block: mixer, norm).
MIXER_ORDER = {
    "mamba": ["A_log", "D", "in_proj.weight", "in_proj.bias", "conv1d.weight", "conv1d.bias",
              "x_proj.weight", "dt_proj.weight", "dt_proj.bias", "out_proj.weight", "out_proj.bias"],
    "mamba2": ["dt_bias", "A_log", "D", "in_proj.weight", "in_proj.bias", "conv1d.weight",
               "conv1d.bias", "norm.weight", "out_proj.weight", "out_proj.bias"],
}


def fail(msg):
    sys.exit(f"make_state_spaces_fixture: {msg}")


def field(hf, key, default=None):
    return hf.get(key, default) if hf.get(key) is not None else default


def as_float(x):
    """A number of config.json; transformers writes infinities as {"__float__": "Infinity"}."""
    return float(x["__float__"]) if isinstance(x, dict) and "__float__" in x else float(x)


def pad_multiple(vocab):
    """The largest of 8, 1 that divides the vocabulary, so that mamba_ssm pads nothing."""
    return 8 if vocab % 8 == 0 else 1


def common_checks(hf):
    eps = field(hf, "layer_norm_epsilon", 1e-5)
    if abs(eps - EPS) > 1e-12:
        fail(f"layer_norm_epsilon {eps}: mamba_ssm's config has no epsilon field (it uses {EPS})")
    if field(hf, "hidden_act", "silu") != "silu":
        fail(f"hidden_act {hf['hidden_act']}: mamba_ssm's blocks use silu")


def state_spaces_config(hf):
    """mamba_ssm's MambaConfig (as config.json) for a Hugging Face config."""
    common_checks(hf)
    kind = hf.get("model_type")
    d_model, vocab = hf["hidden_size"], hf["vocab_size"]
    expand = field(hf, "expand", 2)
    if kind == "mamba":
        inter = field(hf, "intermediate_size", expand * d_model)
        if inter != expand * d_model:
            fail(f"intermediate_size {inter} != expand x hidden_size; mamba_ssm's Mamba has no such field")
        ssm_cfg = {
            "layer": "Mamba1",
            "d_state": field(hf, "state_size", 16),
            "d_conv": field(hf, "conv_kernel", 4),
            "expand": expand,
            "dt_rank": field(hf, "time_step_rank", math.ceil(d_model / 16)),
            "conv_bias": field(hf, "use_conv_bias", True),
            "bias": field(hf, "use_bias", False),
        }
    elif kind == "mamba2":
        head_dim = field(hf, "head_dim", 64)
        heads = field(hf, "num_heads", expand * d_model // head_dim)
        if heads * head_dim != expand * d_model:
            fail(f"num_heads {heads} x head_dim {head_dim} != expand x hidden_size; mamba_ssm derives the heads")
        if not field(hf, "rms_norm", True):
            fail("rms_norm false: mamba_ssm's Mamba2 here is converted with its gated RMSNorm")
        ssm_cfg = {
            "layer": "Mamba2",
            "d_state": field(hf, "state_size", 128),
            "d_conv": field(hf, "conv_kernel", 4),
            "expand": expand,
            "headdim": head_dim,
            "ngroups": field(hf, "n_groups", 1),
            "rmsnorm": True,
            "norm_before_gate": False,
            "bias": field(hf, "use_bias", False),
            "conv_bias": field(hf, "use_conv_bias", True),
            "chunk_size": field(hf, "chunk_size", 256),
        }
        limit = [as_float(x) for x in field(hf, "time_step_limit", [0.0, math.inf])]
        if limit != [0.0, math.inf]:  # the default is not written: JSON has no infinity
            if not all(math.isfinite(x) for x in limit):
                fail(f"time_step_limit {limit}: JSON cannot hold it")
            ssm_cfg["dt_limit"] = limit
    else:
        fail(f"model_type {kind!r}: only mamba and mamba2 are converted")
    return {
        "d_model": d_model,
        "d_intermediate": 0,
        "n_layer": hf["num_hidden_layers"],
        "vocab_size": vocab,
        "ssm_cfg": ssm_cfg,
        "attn_layer_idx": [],
        "attn_cfg": {},
        "rms_norm": True,
        "residual_in_fp32": field(hf, "residual_in_fp32", True),
        "fused_add_norm": True,
        "pad_vocab_size_multiple": pad_multiple(vocab),
        "tie_embeddings": field(hf, "tie_word_embeddings", True),
    }


def state_spaces_state_dict(hf, tensors):
    """The tensors under mamba_ssm's names, in its state_dict order."""
    kind = hf["model_type"]
    n_layer = hf["num_hidden_layers"]
    tied = field(hf, "tie_word_embeddings", True)
    left = dict(tensors)
    sd = OrderedDict()

    def take(hf_name, ss_name):
        sd[ss_name] = left.pop(hf_name)

    take("backbone.embeddings.weight", "backbone.embedding.weight")
    for i in range(n_layer):
        for name in MIXER_ORDER[kind]:
            full = f"backbone.layers.{i}.mixer.{name}"
            if full in left:
                take(full, full)
        take(f"backbone.layers.{i}.norm.weight", f"backbone.layers.{i}.norm.weight")
    take("backbone.norm_f.weight", "backbone.norm_f.weight")
    if tied:
        left.pop("lm_head.weight", None)
        # mamba_ssm ties by sharing the Parameter: its state dict holds both names, and
        # torch.save writes the one storage once.
        sd["lm_head.weight"] = sd["backbone.embedding.weight"]
    else:
        take("lm_head.weight", "lm_head.weight")
    if left:
        fail(f"tensors not converted: {sorted(left)}")
    return sd


def readme(src_name, dst_name, hf, cfg, sd):
    rows = "\n".join(f"| `{k}` | {list(v.shape)} | {str(v.dtype).replace('torch.', '')} |" for k, v in sd.items())
    tied = cfg["tie_embeddings"]
    return f"""# Fixture `{dst_name}`: `{src_name}` as the state-spaces releases store it

The model of `tests/fixtures/{src_name}` ({hf['model_type']}, hidden {cfg['d_model']},
{cfg['n_layer']} layers, vocabulary {cfg['vocab_size']}), in the layout of the original
`mamba_ssm` checkpoints that the state-spaces repositories on Hugging Face publish
(e.g. `state-spaces/mamba-130m`): `config.json` in mamba_ssm's naming and the weights as
`pytorch_model.bin`, PyTorch's zip + pickle format.  Same weights, same outputs: the
`expected.safetensors` and `expected.json` of `{src_name}` are copied unchanged.

Written by `tools/make_state_spaces_fixture.py` (torch {torch.__version__}):

```sh
python tools/make_state_spaces_fixture.py tests/fixtures/{src_name} tests/fixtures/{dst_name}
```

## Files

- `config.json`: mamba_ssm's `MambaConfig` fields only (mamba_ssm builds `MambaConfig(**config)`).
  `pad_vocab_size_multiple` {cfg['pad_vocab_size_multiple']} divides the vocabulary, so no rows are padded.
- `pytorch_model.bin`: `torch.save` of the state dict (zip format, pickle protocol 2), tensors in
  their stored dtype, in mamba_ssm's module order. The names are Hugging Face's except the
  embedding, `backbone.embedding.weight` (Hugging Face: `backbone.embeddings.weight`).
  {"Tied embeddings: `lm_head.weight` is stored too, as mamba_ssm's state dict holds it, and shares the embedding's storage (the bytes are in the file once)." if tied else "Untied: `lm_head.weight` has its own storage."}
  The script reads the file back with `torch.load(weights_only=True)` and checks every tensor
  bit for bit against `{src_name}/model.safetensors`.
- `expected.safetensors`, `expected.json`: copied from `{src_name}` (see its README.md).

## pytorch_model.bin

| tensor | shape | dtype |
|---|---|---|
{rows}
"""


def convert(src, dst):
    with open(os.path.join(src, "config.json")) as f:
        hf = json.load(f)
    cfg = state_spaces_config(hf)
    tensors = load_file(os.path.join(src, "model.safetensors"))
    sd = state_spaces_state_dict(hf, tensors)
    os.makedirs(dst, exist_ok=True)
    with open(os.path.join(dst, "config.json"), "w") as f:
        json.dump(cfg, f, indent=2)
        f.write("\n")
    bin_path = os.path.join(dst, "pytorch_model.bin")
    torch.save(sd, bin_path)
    back = torch.load(bin_path, weights_only=True)
    if list(back) != list(sd):
        fail("pytorch_model.bin read back with other names")
    hf_names = {"backbone.embedding.weight": "backbone.embeddings.weight"}
    for name, t in back.items():
        if name == "lm_head.weight" and cfg["tie_embeddings"]:
            if t.untyped_storage().data_ptr() != back["backbone.embedding.weight"].untyped_storage().data_ptr():
                fail("tied lm_head.weight does not share the embedding's storage")
            continue
        want = tensors[hf_names.get(name, name)]
        if t.dtype != want.dtype or t.shape != want.shape or not torch.equal(t.view(-1).view(torch.uint8), want.reshape(-1).view(torch.uint8)):
            fail(f"{name} differs after the round trip")
    for name in ("expected.safetensors", "expected.json"):
        shutil.copyfile(os.path.join(src, name), os.path.join(dst, name))
    with open(os.path.join(dst, "README.md"), "w") as f:
        f.write(readme(os.path.basename(os.path.normpath(src)), os.path.basename(os.path.normpath(dst)), hf, cfg, sd))
    print(f"{dst}: {len(sd)} tensors, {os.path.getsize(bin_path)} bytes of pytorch_model.bin")


# ---------------------------------------------------------------------------------------------
# Reader test files


def describe(sd):
    """What torch reads from a state dict: per tensor dtype, shape, storage offset, storage
    group (tensors with the same group share one storage) and the values as floats."""
    groups, out = {}, OrderedDict()
    for name, t in sd.items():
        ptr = t.untyped_storage().data_ptr()
        groups.setdefault(ptr, len(groups))
        out[name] = {
            "dtype": {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}[t.dtype],
            "shape": list(t.shape),
            "storage_offset": t.storage_offset(),
            "storage_group": groups[ptr],
            "values": t.float().reshape(-1).tolist(),
        }
    return out


def reader_state_dict():
    g = torch.Generator().manual_seed(7)
    matrix = torch.randn(3, 4, generator=g)
    half = torch.tensor([[0.5, -1.25, 3.0], [65504.0, -6.103515625e-05, 0.0]], dtype=torch.float16)
    bfloat = torch.tensor([1.0, -2.5, 3.0e38, 1.0e-38], dtype=torch.bfloat16)
    tied = torch.randn(5, generator=g)
    sd = OrderedDict()
    sd["half"] = half
    sd["bfloat"] = bfloat
    sd["matrix"] = matrix
    sd["row"] = matrix[1]        # storage offset 4, shares matrix's storage
    sd["rows"] = matrix[1:]      # storage offset 4, shape (2, 4)
    sd["tied_a"] = tied
    sd["tied_b"] = tied          # the same tensor under a second name
    sd["scalar"] = torch.tensor(2.5)
    sd["column"] = torch.randn(4, 1, generator=g)  # a size-1 dimension
    # An nn.Module state dict carries `_metadata`, which the pickle sets with BUILD.
    sd._metadata = OrderedDict([("", {"version": 1})])
    return sd


def zip_entries(path):
    with zipfile.ZipFile(path) as z:
        return [(i.filename, z.read(i.filename)) for i in z.infolist()]


def write_zip64(entries, path):
    """A stored zip where every size and offset is in zip64 extra fields (as a writer must for
    files past 4 GiB), with the zip64 end records and a saturated classic end record."""
    out, central = bytearray(), bytearray()
    for name, data in entries:
        name_b, crc, offset = name.encode(), zlib.crc32(data), len(out)
        extra = struct.pack("<HHQQ", 1, 16, len(data), len(data))
        out += struct.pack("<IHHHHHIIIHH", 0x04034B50, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF, len(name_b), len(extra))
        out += name_b + extra + data
        cextra = struct.pack("<HHQQQ", 1, 24, len(data), len(data), offset)
        central += struct.pack("<IHHHHHHIIIHHHHHII", 0x02014B50, 45, 45, 0, 0, 0, 0x21, crc, 0xFFFFFFFF, 0xFFFFFFFF,
                               len(name_b), len(cextra), 0, 0, 0, 0, 0xFFFFFFFF)
        central += name_b + cextra
    cd_offset = len(out)
    out += central
    z64_offset = len(out)
    out += struct.pack("<IQHHIIQQQQ", 0x06064B50, 44, 45, 45, 0, 0, len(entries), len(entries), len(central), cd_offset)
    out += struct.pack("<IIQI", 0x07064B50, 0, z64_offset, 1)
    out += struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, 0xFFFF, 0xFFFF, 0xFFFFFFFF, 0xFFFFFFFF, 0)
    with open(path, "wb") as f:
        f.write(out)


def write_zip(entries, path, compress=zipfile.ZIP_STORED):
    """A zip of `entries` with a fixed timestamp, so that a rebuild writes the same bytes."""
    with zipfile.ZipFile(path, "w") as z:
        for name, data in entries:
            z.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), data, compress_type=compress)


def u32(n):
    return struct.pack("<I", n)


def forbidden_pickles():
    """Pickles that would call a forbidden function, written opcode by opcode."""
    # protocol 2: GLOBAL 'os system', the argument 'echo', TUPLE1, REDUCE, STOP
    os_system = b"\x80\x02" + b"cos\nsystem\n" + b"q\x00" + b"X" + u32(4) + b"echo" + b"\x85" + b"R" + b"."
    # protocol 4: STACK_GLOBAL builtins.eval inside the value of a state dict entry
    eval_in_dict = (b"\x80\x04" + b"}" + b"\x94" + b"\x8c\x06weight" + b"\x8c\x08builtins" + b"\x8c\x04eval" + b"\x93"
                    + b"\x8c\x03" + b"1+1" + b"\x85" + b"R" + b"s" + b".")
    return {"forbidden_global.bin": (os_system, "os.system"), "forbidden_stack_global.bin": (eval_in_dict, "builtins.eval")}


def write_test_files(out):
    os.makedirs(out, exist_ok=True)
    expected = OrderedDict([("torch", torch.__version__), ("files", OrderedDict())])
    files = expected["files"]
    sd = reader_state_dict()
    desc = describe(sd)

    path = os.path.join(out, "state_dict.bin")
    torch.save(sd, path)
    files["state_dict.bin"] = {"tensors": desc}

    path4 = os.path.join(out, "state_dict_protocol4.bin")
    torch.save(sd, path4, pickle_protocol=4)
    files["state_dict_protocol4.bin"] = {"tensors": desc}

    path64 = os.path.join(out, "state_dict_zip64.bin")
    write_zip64(zip_entries(path), path64)
    files["state_dict_zip64.bin"] = {"tensors": desc}

    for name in ("state_dict.bin", "state_dict_protocol4.bin", "state_dict_zip64.bin"):
        # torch's weights_only unpickler has no FRAME opcode (protocol 4); that file was
        # written just above by torch.save, so reading it with the full unpickler is safe.
        back = torch.load(os.path.join(out, name), weights_only=name != "state_dict_protocol4.bin")
        if describe(back) != desc:
            fail(f"{name} does not read back as written")

    m = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    nc = OrderedDict([("fine", torch.ones(3)), ("transposed", m.t())])
    torch.save(nc, os.path.join(out, "non_contiguous.bin"))
    files["non_contiguous.bin"] = {"error_tensor": "transposed"}

    torch.save(OrderedDict([("w", torch.ones(2))]), os.path.join(out, "legacy.bin"), _use_new_zipfile_serialization=False)
    files["legacy.bin"] = {"error": "legacy"}

    write_zip(zip_entries(path), os.path.join(out, "compressed.bin"), zipfile.ZIP_DEFLATED)
    files["compressed.bin"] = {"error": "compressed"}

    # The torch layout around a hand-written data.pkl: archive/data.pkl, byteorder, version.
    for name, (pkl, refused) in forbidden_pickles().items():
        entries = [("archive/data.pkl", pkl), ("archive/byteorder", b"little"), ("archive/version", b"3\n")]
        write_zip(entries, os.path.join(out, name))
        files[name] = {"refused_global": refused}

    with open(os.path.join(out, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")
    for name in files:
        print(f"{os.path.join(out, name)}: {os.path.getsize(os.path.join(out, name))} bytes")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("src", nargs="?", help="Hugging Face fixture folder (config.json, model.safetensors, expected.*)")
    ap.add_argument("dst", nargs="?", help="folder to write in the state-spaces layout")
    ap.add_argument("--test-files", metavar="DIR", help="write the reader's test files (and expected.json) to DIR")
    args = ap.parse_args()
    if (args.src is None) != (args.dst is None) or (args.src is None and args.test_files is None):
        ap.error("give SRC and DST, or --test-files DIR, or both")
    torch.manual_seed(0)
    if args.src:
        convert(args.src, args.dst)
    if args.test_files:
        write_test_files(args.test_files)


if __name__ == "__main__":
    main()
