#!/usr/bin/env python3
"""Compare two GGUF files with the `gguf` package (llama.cpp's own Python reader).

    compare_gguf.py A.gguf B.gguf [--ignore-key KEY ...] [--atol X]

Both files must hold the same metadata keys with the same values (in any order; `--ignore-key`
skips a key, e.g. general.name, which llama.cpp's converter derives from a model card), and
the same tensors: names, GGUF types, shapes, and data (equal bytes for block types; float
values within --atol + --rtol * |B's value|, both 0 by default). Prints every difference and exits 1 if there is one; prints
a one-line summary and exits 0 otherwise.

    compare_gguf.py --describe A.gguf

prints the file as JSON: {"kv": {key: value}, "tensors": {name: [type name, [ne...]]}}.
"""
import argparse
import json
import sys

import numpy as np
import gguf


def field_value(field):
    """A metadata field's value as plain Python (strings decoded, arrays as lists)."""
    kind = field.types[0]
    if kind == gguf.GGUFValueType.ARRAY:
        inner = field.types[-1]
        if inner == gguf.GGUFValueType.STRING:
            return [bytes(field.parts[i]).decode("utf-8") for i in field.data]
        return [field.parts[i].tolist()[0] for i in field.data]
    if kind == gguf.GGUFValueType.STRING:
        return bytes(field.parts[field.data[0]]).decode("utf-8")
    return field.parts[field.data[0]].tolist()[0]


def describe(reader):
    kv = {k: field_value(f) for k, f in reader.fields.items() if not k.startswith("GGUF.")}
    tensors = {t.name: [t.tensor_type.name, [int(d) for d in t.shape]] for t in reader.tensors}
    return {"kv": kv, "tensors": tensors}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("files", nargs="+")
    ap.add_argument("--describe", action="store_true")
    ap.add_argument("--ignore-key", action="append", default=[])
    ap.add_argument("--atol", type=float, default=0.0)
    ap.add_argument("--rtol", type=float, default=0.0)
    args = ap.parse_args()
    if args.describe:
        print(json.dumps(describe(gguf.GGUFReader(args.files[0])), sort_keys=True))
        return 0
    if len(args.files) != 2:
        ap.error("two files to compare, or --describe FILE")
    a, b = (gguf.GGUFReader(f) for f in args.files)
    da, db = describe(a), describe(b)
    problems = []
    for key in sorted(set(da["kv"]) | set(db["kv"])):
        if key in args.ignore_key:
            continue
        va, vb = da["kv"].get(key, "<missing>"), db["kv"].get(key, "<missing>")
        if isinstance(va, float) and isinstance(vb, float):
            same = np.float32(va) == np.float32(vb)
        else:
            same = va == vb
        if not same:
            short = lambda v: (repr(v)[:120] + "...") if len(repr(v)) > 120 else repr(v)
            problems.append(f"key {key}: {short(va)} != {short(vb)}")
    tb = {t.name: t for t in b.tensors}
    for ta in a.tensors:
        if ta.name not in tb:
            problems.append(f"tensor {ta.name}: only in {args.files[0]}")
            continue
        t2 = tb.pop(ta.name)
        if ta.tensor_type != t2.tensor_type or list(ta.shape) != list(t2.shape):
            problems.append(f"tensor {ta.name}: {ta.tensor_type.name} {list(ta.shape)} != {t2.tensor_type.name} {list(t2.shape)}")
            continue
        if ta.tensor_type in (gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16):
            x, y = np.asarray(ta.data, dtype=np.float64), np.asarray(t2.data, dtype=np.float64)
            excess = np.abs(x - y) - (args.atol + args.rtol * np.abs(y))
            if x.size and float(np.max(excess)) > 0:
                problems.append(f"tensor {ta.name}: values differ by up to {float(np.max(np.abs(x - y)))}")
        elif bytes(ta.data) != bytes(t2.data):
            problems.append(f"tensor {ta.name}: {ta.tensor_type.name} blocks differ")
    for name in tb:
        problems.append(f"tensor {name}: only in {args.files[1]}")
    for p in problems:
        print(p)
    if problems:
        return 1
    print(f"{args.files[0]} == {args.files[1]}: {len(da['kv'])} keys, {len(a.tensors)} tensors")
    return 0


if __name__ == "__main__":
    sys.exit(main())
