#!/usr/bin/env python3
"""Greedy generation through the C API with ctypes: prints the new text of MODEL continuing
PROMPT, as `mamba-wgpu generate --model MODEL --prompt PROMPT --max-tokens MAX_TOKENS --greedy`
does on stdout.

    python3 examples/python/generate.py MODEL PROMPT MAX_TOKENS

The library is looked for in $MAMBA_WGPU_LIB (a file), else in target/release/ of this
repository (built by `cargo build --release`).
"""

import ctypes
import os
import sys
from pathlib import Path


class SamplingOptions(ctypes.Structure):
    """mw_sampling_options (include/mamba_wgpu.h)."""

    _fields_ = [
        ("temperature", ctypes.c_float),
        ("top_k", ctypes.c_uint32),
        ("top_p", ctypes.c_float),
        ("min_p", ctypes.c_float),
        ("repetition_penalty", ctypes.c_float),
        ("repetition_window", ctypes.c_uint32),
        ("seed", ctypes.c_uint64),
        ("max_tokens", ctypes.c_uint32),
        ("stop_strings", ctypes.POINTER(ctypes.c_char_p)),
        ("n_stop_strings", ctypes.c_size_t),
    ]


class GenerateResult(ctypes.Structure):
    """mw_generate_result."""

    _fields_ = [
        ("prompt_tokens", ctypes.c_uint64),
        ("generated_tokens", ctypes.c_uint64),
        ("prefill_seconds", ctypes.c_double),
        ("decode_seconds", ctypes.c_double),
        ("finish_reason", ctypes.c_int32),
    ]


# int32_t (*mw_text_fn)(const char *text, size_t len, void *user_data)
TEXT_FN = ctypes.CFUNCTYPE(ctypes.c_int32, ctypes.POINTER(ctypes.c_char), ctypes.c_size_t, ctypes.c_void_p)


def library_path():
    if os.environ.get("MAMBA_WGPU_LIB"):
        return os.environ["MAMBA_WGPU_LIB"]
    names = {"darwin": "libmamba_wgpu.dylib", "win32": "mamba_wgpu.dll"}
    name = names.get(sys.platform, "libmamba_wgpu.so")
    return str(Path(__file__).resolve().parents[2] / "target" / "release" / name)


def load_library():
    lib = ctypes.CDLL(library_path())
    handle = ctypes.c_void_p  # mw_context *, mw_model *, mw_session *
    out = ctypes.POINTER(ctypes.c_void_p)
    status = ctypes.c_int  # mw_status
    lib.mw_last_error.restype = ctypes.c_char_p
    lib.mw_last_error.argtypes = []
    lib.mw_status_string.restype = ctypes.c_char_p
    lib.mw_status_string.argtypes = [ctypes.c_int32]
    lib.mw_context_new.restype = status
    lib.mw_context_new.argtypes = [ctypes.c_char_p, out]
    lib.mw_model_load.restype = status
    lib.mw_model_load.argtypes = [handle, ctypes.c_char_p, ctypes.c_void_p, out]
    lib.mw_session_new.restype = status
    lib.mw_session_new.argtypes = [handle, out]
    lib.mw_sampling_defaults.restype = status
    lib.mw_sampling_defaults.argtypes = [ctypes.POINTER(SamplingOptions)]
    lib.mw_generate.restype = status
    lib.mw_generate.argtypes = [handle, ctypes.c_char_p, ctypes.POINTER(SamplingOptions), TEXT_FN, ctypes.c_void_p, ctypes.POINTER(GenerateResult)]
    for name in ("mw_session_free", "mw_model_free", "mw_context_free"):
        getattr(lib, name).restype = None
        getattr(lib, name).argtypes = [handle]
    return lib


class MambaError(Exception):
    pass


def main():
    if len(sys.argv) != 4:
        print(f"usage: {sys.argv[0]} MODEL PROMPT MAX_TOKENS", file=sys.stderr)
        return 2
    model_name, prompt, max_tokens = sys.argv[1], sys.argv[2], sys.argv[3]
    if not max_tokens.isdigit() or int(max_tokens) >= 2**32:
        print(f"error: MAX_TOKENS `{max_tokens}` is not a count", file=sys.stderr)
        return 2
    lib = load_library()

    def check(what, status):
        if status != 0:
            message = lib.mw_last_error().decode("utf-8", "replace")
            kind = lib.mw_status_string(status).decode()
            raise MambaError(f"{what}: {message} ({kind})")

    ctx, model, session = ctypes.c_void_p(), ctypes.c_void_p(), ctypes.c_void_p()
    try:
        check("opening the GPU", lib.mw_context_new(None, ctypes.byref(ctx)))
        check("loading the model", lib.mw_model_load(ctx, model_name.encode(), None, ctypes.byref(model)))
        check("opening a session", lib.mw_session_new(model, ctypes.byref(session)))

        # Pure argmax, every filter off: the CLI's --greedy.
        opts = SamplingOptions()
        check("sampling defaults", lib.mw_sampling_defaults(ctypes.byref(opts)))
        opts.temperature, opts.top_k, opts.top_p, opts.min_p, opts.repetition_penalty = 0.0, 0, 1.0, 0.0, 1.0
        opts.max_tokens = int(max_tokens)

        out = sys.stdout.buffer
        written = bytearray()

        @TEXT_FN
        def on_text(text, length, _user_data):
            piece = ctypes.string_at(text, length)
            try:
                out.write(piece)
                out.flush()
            except OSError:
                return 1  # stdout is gone: stop generating
            written[:] = piece[-1:]
            return 0

        result = GenerateResult()
        check("generating", lib.mw_generate(session, prompt.encode(), ctypes.byref(opts), on_text, None, ctypes.byref(result)))
        # Like the CLI, end the line unless the text did.
        if bytes(written) != b"\n":
            out.write(b"\n")
            out.flush()
        print(f"prompt tokens: {result.prompt_tokens}, generated tokens: {result.generated_tokens}", file=sys.stderr)
        return 0
    except MambaError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        lib.mw_session_free(session)
        lib.mw_model_free(model)
        lib.mw_context_free(ctx)


if __name__ == "__main__":
    sys.exit(main())
