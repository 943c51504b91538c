#!/usr/bin/env python3
"""Write tests/data/quant/vectors.safetensors: reference data for GGUF block quantization.

For each of Q8_0, Q4_0, Q4_K, Q5_K, Q6_K, Q5_0, Q5_1 and Q4_1 (llama.cpp / ggml block formats) the file holds

  {T}.source   F32 [n_blocks, block_size]   values to quantize (fixed seed; see SOURCES)
  {T}.blocks   U8  [n_blocks, type_size]    raw GGUF blocks, exactly as they sit in a .gguf file
  {T}.values   F32 [n_blocks, block_size]   gguf.quants.dequantize({T}.blocks, T)

The 32-value types: `{T}.blocks` = gguf.quants.quantize({T}.source, T) (the gguf package's NumPy
port of ggml's reference quantizer), so a quantizer can be compared byte for byte. The
K-quants: the gguf package has no quantizer for them (only dequantize), so `{T}.blocks` are
random valid blocks (random bytes, the f16 scale fields set to finite values of moderate size)
and are NOT quantizations of `{T}.source`; `{T}.source` is there for error-bound tests of a
K-quantizer. The file's metadata says this too (`blocks_from`).

The 32-value types also have

  {T}.random_blocks  U8  [n, type_size]   random blocks: every byte value 0..255 occurs in the
                                          quant bytes, the f16 scale is finite and moderate
  {T}.random_values  F32 [n, block_size]  gguf.quants.dequantize({T}.random_blocks, T)

so a dequantizer is checked on every bit pattern of the quants.

    python3 tools/make_quant_vectors.py [OUT]      (default tests/data/quant/vectors.safetensors)

Needs numpy, gguf and safetensors (tools/requirements-tests.txt). Deterministic: the same
package versions write the same bytes.
"""

import argparse
import json
import os
import struct

import numpy as np
import gguf
from gguf import GGMLQuantizationType as QT
from safetensors.numpy import load_file

SEED = 20240611
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "tests", "data", "quant", "vectors.safetensors")

TYPES = ["Q8_0", "Q4_0", "Q4_K", "Q5_K", "Q6_K", "Q5_0", "Q5_1", "Q4_1"]
QUANTIZED = ("Q8_0", "Q4_0", "Q5_0", "Q5_1", "Q4_1")  # gguf.quants.quantize is implemented for these (checked below)

# Where each f16 scale sits in a block (byte offset), per type: the fields a random block
# must have finite. Q4_K/Q5_K: d, dmin first; Q6_K: d last (after ql, qh, scales).
F16_FIELDS = {"Q8_0": [0], "Q4_0": [0], "Q4_K": [0, 2], "Q5_K": [0, 2], "Q6_K": [208], "Q5_0": [0], "Q5_1": [0, 2], "Q4_1": [0, 2]}


def legacy_source(rng):
    """6 blocks of 32 for Q8_0 / Q4_0."""
    b = np.empty((6, 32), np.float32)
    b[0] = rng.standard_normal(32)  # ordinary
    b[1] = 0.0  # all zeros: scale 0
    b[2] = 0.01 * rng.standard_normal(32)  # one large positive outlier
    b[2, 7] = 50.0
    b[3] = 3.0 * rng.standard_normal(32)  # one large negative outlier (Q4_0 takes the signed max)
    b[3, 20] = -50.0
    b[4] = 1e-6 * rng.standard_normal(32)  # tiny: the f16 scale is subnormal
    b[5] = rng.integers(-16, 17, 32) / 4.0  # quarter steps: many x / d land on .5 (rounding ties)
    return b


def k_source(rng):
    """3 super-blocks of 256 for the K-quants."""
    b = np.empty((3, 256), np.float32)
    # ordinary, with a different spread in each of the 8 sub-blocks of 32 and a mean offset
    b[0] = (rng.standard_normal((8, 32)) * np.exp(rng.uniform(-2, 1, (8, 1))) + 0.3).reshape(256)
    b[1] = 0.0  # all zeros
    b[2] = 0.01 * rng.standard_normal(256)  # one large outlier
    b[2, 100] = -40.0
    return b


def random_f16(rng, n):
    """Finite f16 scales of moderate size: +-2^[-12, 1], as raw little-endian bytes."""
    mag = np.exp2(rng.uniform(-12.0, 1.0, n))
    sign = np.where(rng.random(n) < 0.25, -1.0, 1.0)
    return (sign * mag).astype(np.float16).view(np.uint8).reshape(n, 2)


def random_blocks(rng, name, n):
    _, type_size = gguf.GGML_QUANT_SIZES[QT[name]]
    blocks = rng.integers(0, 256, (n, type_size), dtype=np.uint8)
    if name in QUANTIZED:
        # quant bytes: every value 0..255 at least once (n * (type_size - 2) >= 256)
        quant = blocks[:, 2:].reshape(-1)
        assert quant.size >= 256
        quant[:256] = rng.permutation(256).astype(np.uint8)
        quant[:] = quant[rng.permutation(quant.size)]
        blocks[:, 2:] = quant.reshape(n, type_size - 2)
    for off in F16_FIELDS[name]:
        blocks[:, off:off + 2] = random_f16(rng, n)
    return blocks


def build():
    rng = np.random.default_rng(SEED)
    tensors = {}
    for name in TYPES:
        qt = QT[name]
        block_size, type_size = gguf.GGML_QUANT_SIZES[qt]
        source = legacy_source(rng) if block_size == 32 else k_source(rng)
        if name in QUANTIZED:
            blocks = gguf.quants.quantize(source, qt)
        else:
            try:
                gguf.quants.quantize(source, qt)
            except NotImplementedError:
                pass
            else:
                raise SystemExit(f"gguf {package_version('gguf')} can quantize {name}: "
                                 f"use that for {name}.blocks")
            blocks = random_blocks(rng, name, source.shape[0])
        assert blocks.dtype == np.uint8 and blocks.shape == (source.shape[0], type_size), blocks.shape
        values = gguf.quants.dequantize(blocks, qt).astype(np.float32)
        assert values.shape == source.shape and np.isfinite(values).all()
        tensors[f"{name}.source"] = np.ascontiguousarray(source)
        tensors[f"{name}.blocks"] = np.ascontiguousarray(blocks)
        tensors[f"{name}.values"] = np.ascontiguousarray(values)
        if name in QUANTIZED:
            n = 256 // (type_size - 2) + 1  # enough quant bytes for every byte value
            rb = random_blocks(rng, name, n)
            rv = gguf.quants.dequantize(rb, qt).astype(np.float32)
            assert np.isfinite(rv).all()
            tensors[f"{name}.random_blocks"] = rb
            tensors[f"{name}.random_values"] = rv
    return tensors


def save_sorted(tensors, path, metadata):
    """A safetensors file with its header in a fixed order (safetensors' own writer orders the
    metadata by a hash map, so its bytes change from run to run): tensors by dtype size (larger
    first) then name, as safetensors lays them out; metadata keys sorted."""
    names = sorted(tensors, key=lambda k: (-tensors[k].dtype.itemsize, k))
    dt = {np.dtype(np.float32): "F32", np.dtype(np.uint8): "U8"}
    header, offset = {"__metadata__": dict(sorted(metadata.items()))}, 0
    for k in names:
        n = tensors[k].nbytes
        header[k] = {"dtype": dt[tensors[k].dtype], "shape": list(tensors[k].shape), "data_offsets": [offset, offset + n]}
        offset += n
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for k in names:
            f.write(np.ascontiguousarray(tensors[k]).astype(tensors[k].dtype.newbyteorder("<"), copy=False).tobytes())
    back = load_file(path)
    assert back.keys() == tensors.keys()
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape and np.array_equal(back[k], v), k


def package_version(name):
    from importlib.metadata import version
    return version(name)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT)
    args = ap.parse_args()
    tensors = build()
    meta = {
        "generator": "tools/make_quant_vectors.py",
        "seed": str(SEED),
        "gguf": package_version("gguf"),
        "numpy": np.__version__,
        "types": ",".join(TYPES),
        "layout": "{T}.source F32 [n_blocks, block_size]; {T}.blocks U8 [n_blocks, type_size] raw GGUF blocks; "
                  "{T}.values F32 = gguf.quants.dequantize({T}.blocks, T); the 32-value types also "
                  "{T}.random_blocks / {T}.random_values",
        "blocks_from": "Q8_0, Q4_0, Q5_0, Q5_1, Q4_1: gguf.quants.quantize({T}.source, T). Q4_K, Q5_K, Q6_K: random valid blocks "
                       "(random bytes, f16 scale fields finite +-2^[-12,1]); gguf has no quantizer for them, so "
                       "these blocks are not quantizations of {T}.source",
        "sources": "Q8_0/Q4_0 blocks: 0 normal, 1 zeros, 2 small noise + outlier +50 at [7], "
                   "3 3*normal + outlier -50 at [20], 4 1e-6*normal (subnormal f16 scale), 5 multiples of 0.25; "
                   "K types: 0 normal with per-sub-block spread + 0.3, 1 zeros, 2 small noise + outlier -40 at [100]",
    }
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    save_sorted(tensors, args.out, meta)
    for k, v in tensors.items():
        print(f"{k:22s} {str(v.dtype):8s} {list(v.shape)}")
    print(f"{args.out}: {os.path.getsize(args.out)} bytes")


if __name__ == "__main__":
    main()
