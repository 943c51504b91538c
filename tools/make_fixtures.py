#!/usr/bin/env python3
"""Build (or check) the oracle fixtures in tests/fixtures/.

Each fixture is a tiny Mamba-1 model in Hugging Face format plus what Hugging Face
`transformers` computes for it (pure-PyTorch path, float32, CPU, one thread):

  config.json            HF config, written by save_pretrained
  model.safetensors      the weights (float32, HF names; no lm_head.weight when tied)
  expected.safetensors   input_ids, logits, greedy_ids, greedy_logits,
                         ssm_state_layer{i}, conv_state_layer{i} (first and last layer)
  expected.json          the ids, a few sample values, the checks below
  README.md              exact equations, tensor names/shapes, state layouts

How a fixture is made (seed s = the spec's seed, then s+1, s+2, ... until it is accepted):
  1. torch.manual_seed(s); model = MambaForCausalLM(MambaConfig(...)) (HF's own init).
  2. every parameter is perturbed with torch.Generator().manual_seed(10000 + s), in
     named_parameters() order: first p += 0.25 * std(p) * randn, then by kind
     (norm weights U(0.5, 1.5); A_log log-uniform exp(A_log) in [0.3, 12]; D = 1 + 0.5 randn;
     conv, in_proj and out_proj biases 0.2 randn; dt_proj.bias = softplus^-1 of a
     log-uniform dt in [0.01, 1]; out_proj.weight x3).  So a plausible mistake (missing D
     skip, flipped conv kernel, B/C swapped, wrong epsilon, ...) moves the logits far
     beyond float noise; the float64 reference below measures by how much.
  3. input_ids: torch.randint(0, vocab, (batch, T)) with Generator(20000 + s).
  4. oracle: forward over the prompt with a cache (logits, states after the prompt),
     model.generate(greedy, no EOS, no logits processors) for the continuation.
  5. accepted when generate equals a no-cache argmax loop, every greedy step has a
     top1-top2 margin >= MIN_MARGIN and no greedy token is a special id (bos/eos/pad).
  6. checks recorded in expected.json and README.md: an independent float64 NumPy
     implementation of the README's equations against the oracle; the same with one
     deliberate mistake each (how far each mistake moves the logits); the saved folder
     reloaded with from_pretrained reproduces the logits.

`--check DIR` loads a fixture folder (config.json + model.safetensors) into transformers,
recomputes everything in its expected.safetensors and reports the max abs differences.

Usage:
  python tools/make_fixtures.py tests/fixtures                     # build every fixture
  python tools/make_fixtures.py tests/fixtures --only mamba1-untied-biases
  python tools/make_fixtures.py --check tests/fixtures/mamba1-tiny  # verify a folder
"""
import argparse
import importlib.util
import json
import math
import os
import shutil
import struct
import sys
import tempfile

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

# The oracle is HF's pure-PyTorch path.  transformers switches to these packages' fused
# kernels when they are importable, so refuse to run next to them.
for _pkg in ("mamba_ssm", "causal_conv1d", "kernels"):
    if importlib.util.find_spec(_pkg) is not None:
        sys.exit(f"make_fixtures: package `{_pkg}` is installed; use a venv without it "
                 "(the oracle must be the pure-PyTorch path)")

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import GenerationConfig, MambaConfig, MambaForCausalLM  # noqa: E402

# Quiet: no progress bars, no notes that the fused kernels are absent (that is the point).
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

N_NEW = 12            # greedy tokens after the prompt
MIN_MARGIN = 5e-3     # smallest accepted top1-top2 logit gap over all greedy steps
MAX_SEED_TRIES = 50
CHUNK = 64            # scan chunk for the chunk-boundary mistakes (only when T > CHUNK)
CHECK_TOL = 1e-4      # --check: max abs diff allowed (logits and states)

# name -> spec.  `config` holds the MambaConfig arguments that differ from HF's defaults;
# `seed` is the first seed tried.  mamba1-tiny and mamba1-small start at the seeds their
# committed folders record, so that a rebuild reproduces them (up to float noise).
FIXTURES = {
    "mamba1-tiny": dict(
        config=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, state_size=16,
                    conv_kernel=4, expand=2, time_step_rank=4),
        batch=2, prompt_len=37, seed=2001,
        what="batch rows, odd length"),
    "mamba1-small": dict(
        config=dict(vocab_size=1000, hidden_size=128, num_hidden_layers=4, state_size=16,
                    conv_kernel=4, expand=2, time_step_rank=8),
        batch=1, prompt_len=300, seed=1002,
        what="several scan chunks"),
    "mamba1-untied-biases": dict(
        config=dict(vocab_size=777, hidden_size=72, num_hidden_layers=2, state_size=8,
                    conv_kernel=3, expand=2, time_step_rank=5, layer_norm_epsilon=1e-3,
                    use_bias=True, use_conv_bias=True, tie_word_embeddings=False),
        batch=3, prompt_len=129, seed=3000,
        what="untied lm_head, in/out_proj biases, d_conv 3, d_state 8, dt_rank 5, "
             "eps 1e-3, hidden 72, vocab 777, 3 batch rows, 129 tokens = 2 x 64 + 1"),
}


# ----------------------------------------------------------------------------------------
# model construction
# ----------------------------------------------------------------------------------------
def make_config(spec):
    return MambaConfig(**spec["config"])


@torch.no_grad()
def perturb(model, seed):
    """Perturb every parameter (see the module docstring); returns the names touched."""
    g = torch.Generator().manual_seed(10000 + seed)
    touched = []
    for name, p in model.named_parameters():
        base = p.detach().clone()
        noise = torch.randn(p.shape, generator=g)
        new = base + 0.25 * base.std() * noise if p.numel() > 1 else base
        if name.endswith("norm.weight") or name.endswith("norm_f.weight"):
            new = 0.5 + torch.rand(p.shape, generator=g)
        elif name.endswith("mixer.A_log"):
            lo, hi = math.log(0.3), math.log(12.0)
            new = lo + torch.rand(p.shape, generator=g) * (hi - lo)
        elif name.endswith("mixer.D"):
            new = 1 + 0.5 * torch.randn(p.shape, generator=g)
        elif name.endswith(("conv1d.bias", "in_proj.bias", "out_proj.bias")):
            new = 0.2 * torch.randn(p.shape, generator=g)
        elif name.endswith("dt_proj.bias"):
            lo, hi = math.log(0.01), math.log(1.0)
            dt = torch.exp(lo + torch.rand(p.shape, generator=g) * (hi - lo))
            new = dt + torch.log(-torch.expm1(-dt))  # softplus^-1(dt)
        elif name.endswith("out_proj.weight"):
            new = new * 3
        if torch.equal(new, base):
            raise RuntimeError(f"parameter {name} was not perturbed")
        p.copy_(new)
        touched.append(name)
    return touched


def build_model(spec, seed):
    torch.manual_seed(seed)
    model = MambaForCausalLM(make_config(spec)).float().eval()
    perturb(model, seed)
    model.generation_config.eos_token_id = None
    return model


def make_input_ids(spec, seed, vocab):
    g = torch.Generator().manual_seed(20000 + seed)
    ids = torch.randint(0, vocab, (spec["batch"], spec["prompt_len"]), generator=g)
    rows = {tuple(r) for r in ids.tolist()}
    assert len(rows) == ids.shape[0], "prompt rows must differ"
    return ids


def state_layers_for(n_layer):
    return sorted({0, n_layer - 1})


# ----------------------------------------------------------------------------------------
# the oracle
# ----------------------------------------------------------------------------------------
@torch.no_grad()
def oracle(model, ids, n_new, state_layers):
    """logits, states after the prompt and greedy continuation from HF (pure PyTorch)."""
    cfg = model.config
    out = model(input_ids=ids, use_cache=True)
    cache = out.cache
    res = {"logits": out.logits.float().clone()}
    for i in state_layers:
        res[f"conv_state_layer{i}"] = cache.get_conv_state(i).float().clone()
        res[f"ssm_state_layer{i}"] = cache.get_recurrent_state(i).float().clone()
    nocache = model(input_ids=ids, use_cache=False).logits.float()
    res["_cache_vs_nocache_logits"] = float((nocache - res["logits"]).abs().max())

    gen_cfg = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=n_new, min_new_tokens=n_new,
        eos_token_id=None, pad_token_id=cfg.pad_token_id, bos_token_id=None,
        output_logits=True, return_dict_in_generate=True, use_cache=True)
    gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
    res["greedy_ids"] = gen.sequences[:, ids.shape[1]:].clone()
    res["greedy_logits"] = torch.stack(list(gen.logits), dim=1).float().clone()
    assert res["greedy_ids"].shape[1] == n_new

    # no-cache argmax loop: the whole sequence again at every step
    seq = ids
    loop_ids = []
    for _ in range(n_new):
        nxt = model(input_ids=seq, use_cache=False).logits[:, -1].argmax(-1)
        loop_ids.append(nxt)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    res["_generate_equals_nocache_argmax"] = bool(torch.equal(torch.stack(loop_ids, 1), res["greedy_ids"]))
    top2 = res["greedy_logits"].topk(2, dim=-1).values
    res["_min_margin"] = float((top2[..., 0] - top2[..., 1]).min())
    return res


# ----------------------------------------------------------------------------------------
# independent float64 reference (the README's equations) and deliberate mistakes
# ----------------------------------------------------------------------------------------
def _silu(x):
    return x / (1.0 + np.exp(-x))


def _softplus(x):
    return np.where(x > 20.0, x, np.log1p(np.exp(np.minimum(x, 20.0))))


def reference(weights, cfg, ids, mistakes=frozenset()):
    """float64 forward over the prompt; returns logits [B,T,V] and {layer: (conv, ssm)}."""
    m = mistakes
    W = {k: v.detach().double().numpy() if torch.is_tensor(v) else np.asarray(v, np.float64)
         for k, v in weights.items()}
    d_in, n_st, rank, k = cfg.intermediate_size, cfg.state_size, cfg.time_step_rank, cfg.conv_kernel
    eps = cfg.layer_norm_epsilon
    if "wrong_eps" in m:
        eps = 1e-5 if eps != 1e-5 else 1e-6
    ids = np.asarray(ids)
    bsz, t_len = ids.shape
    emb = W["backbone.embeddings.weight"]
    head = emb if (cfg.tie_word_embeddings or "tied_head" in m) else W["lm_head.weight"]

    def rms(x, w):
        y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
        return y if "no_norm_weight" in m else y * w

    h = emb[ids]
    states = {}
    for i in range(cfg.num_hidden_layers):
        p = f"backbone.layers.{i}.mixer."
        u = rms(h, W[f"backbone.layers.{i}.norm.weight"])
        xz = u @ W[p + "in_proj.weight"].T
        if cfg.use_bias and "no_in_proj_bias" not in m:
            xz = xz + W[p + "in_proj.bias"]
        x, z = xz[..., :d_in], xz[..., d_in:]
        if "xz_swapped" in m:
            x, z = z, x
        # conv state after the prompt: raw conv inputs of positions T-k .. T-1
        pad = np.concatenate([np.zeros((bsz, k, d_in)), x], axis=1)
        conv_state = pad[:, -k:, :].transpose(0, 2, 1)
        cw = W[p + "conv1d.weight"][:, 0, :]
        if "conv_flipped" in m:
            cw = cw[:, ::-1]
        xc = np.zeros_like(x)
        for t in range(t_len):
            for j in range(k):
                src = t - k + 1 + j
                if src < 0 or ("conv_reset_chunks" in m and src // CHUNK != t // CHUNK):
                    continue
                xc[:, t] += cw[:, j] * x[:, src]
        if cfg.use_conv_bias and "no_conv_bias" not in m:
            xc = xc + W[p + "conv1d.bias"]
        xs = _silu(xc)
        dbc = xs @ W[p + "x_proj.weight"].T
        dt_low, bm, cm = dbc[..., :rank], dbc[..., rank:rank + n_st], dbc[..., rank + n_st:]
        if "bc_swapped" in m:
            bm, cm = cm, bm
        dt = dt_low @ W[p + "dt_proj.weight"].T
        if "no_dt_bias" not in m:
            dt = dt + W[p + "dt_proj.bias"]
        dt = np.exp(dt) if "dt_exp_not_softplus" in m else _softplus(dt)
        a = -W[p + "A_log"] if "A_no_exp" in m else -np.exp(W[p + "A_log"])
        s = np.zeros((bsz, d_in, n_st))
        y = np.zeros_like(xs)
        for t in range(t_len):
            if "ssm_reset_chunks" in m and t > 0 and t % CHUNK == 0:
                s = np.zeros_like(s)
            s = np.exp(dt[:, t, :, None] * a) * s + dt[:, t, :, None] * bm[:, t, None, :] * xs[:, t, :, None]
            y[:, t] = np.einsum("bcn,bn->bc", s, cm[:, t])
        if "no_D" not in m:
            y = y + W[p + "D"] * xs
        if "no_gate" not in m:
            y = y * _silu(z)
        out = y @ W[p + "out_proj.weight"].T
        if cfg.use_bias and "no_out_proj_bias" not in m:
            out = out + W[p + "out_proj.bias"]
        h = out if "no_residual" in m else h + out
        states[i] = (conv_state, s)
    h = rms(h, W["backbone.norm_f.weight"])
    return h @ head.T, states


def mistakes_for(cfg, t_len):
    names = ["no_D", "no_gate", "conv_flipped"]
    if cfg.use_conv_bias:
        names.append("no_conv_bias")
    names += ["no_dt_bias", "dt_exp_not_softplus", "A_no_exp", "bc_swapped", "no_norm_weight",
              "no_residual", "xz_swapped", "wrong_eps"]
    if cfg.use_bias:
        names += ["no_in_proj_bias", "no_out_proj_bias"]
    if not cfg.tie_word_embeddings:
        names.append("tied_head")
    if t_len > CHUNK:
        names += ["ssm_reset_chunks", "conv_reset_chunks"]
    return names


def model_weights(model):
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def reference_distance(weights, cfg, ids, outputs, state_layers):
    """The float64 reference's logits, and its max |diff| against `outputs` in the logits and
    in the states of `state_layers`."""
    ref_logits, ref_states = reference(weights, cfg, ids.numpy())
    d_logits = float(np.abs(ref_logits - outputs["logits"].double().numpy()).max())
    d_state = 0.0
    for i in state_layers:
        conv, ssm = ref_states[i]
        d_state = max(d_state, float(np.abs(conv - outputs[f"conv_state_layer{i}"].double().numpy()).max()),
                      float(np.abs(ssm - outputs[f"ssm_state_layer{i}"].double().numpy()).max()))
    return ref_logits, d_logits, d_state


def reference_checks(model, ids, res, state_layers):
    cfg = model.config
    weights = model_weights(model)
    ref_logits, d_logits, d_state = reference_distance(weights, cfg, ids, res, state_layers)
    mut = {}
    for name in mistakes_for(cfg, ids.shape[1]):
        with np.errstate(over="ignore", invalid="ignore"):
            wrong, _ = reference(weights, cfg, ids.numpy(), frozenset([name]))
        diff = np.abs(wrong - ref_logits).max()
        mut[name] = float(diff) if np.isfinite(diff) else "non-finite"
    return d_logits, d_state, mut


# ----------------------------------------------------------------------------------------
# writing a fixture
# ----------------------------------------------------------------------------------------
def st_header(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
    header.pop("__metadata__", None)
    return header


def save_safetensors_sorted(tensors, path, metadata):
    """save_file, then put the metadata keys in sorted order (save_file's order varies from
    run to run), so that the same tensors always give the same bytes."""
    save_file(tensors, path, metadata=metadata)
    with open(path, "r+b") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        raw = f.read(n)
        header = json.loads(raw)
        header["__metadata__"] = dict(sorted(header["__metadata__"].items()))
        new = json.dumps(header, separators=(",", ":")).encode()
        assert len(new) <= n and len(new) == len(raw.rstrip(b" ")), "unexpected safetensors header"
        f.seek(8)
        f.write(new + b" " * (n - len(new)))


def tensor_table(path):
    rows = ["| tensor | shape | dtype |", "|---|---|---|"]
    for name, info in sorted(st_header(path).items()):
        rows.append(f"| `{name}` | {list(info['shape'])} | {info['dtype']} |")
    return "\n".join(rows)


def fmt_list(xs):
    return "{" + ",".join(str(x) for x in xs) + "}"


def write_readme(out_dir, name, spec, cfg, meta, config_text):
    b, t_len, v = spec["batch"], spec["prompt_len"], cfg.vocab_size
    d_in, n_st, rank, k, eps = (cfg.intermediate_size, cfg.state_size, cfg.time_step_rank,
                                cfg.conv_kernel, cfg.layer_norm_epsilon)
    layers = meta["state_layers"]
    chk = meta["checks"]
    tied = cfg.tie_word_embeddings
    if tied:
        head_file = ("**Tied embeddings: `lm_head.weight` is NOT stored**; use "
                     "`backbone.embeddings.weight` as the LM head.")
        head_eq = "lm_head = embeddings.weight (tied)"
    else:
        head_file = ("**Untied LM head: `lm_head.weight` [vocab, hidden] IS stored** and differs "
                     "from `backbone.embeddings.weight`; use it (not the embeddings) as the LM head.")
        head_eq = "lm_head = `lm_head.weight` (untied, its own matrix)"
    in_bias = ("(+ `in_proj.bias`: present in this fixture)" if cfg.use_bias
               else "(+ in_proj.bias if present; absent here)")
    out_bias = ("(+ `out_proj.bias`: present in this fixture)" if cfg.use_bias
                else "(+ out_proj.bias if present; absent here)")
    conv_bias = "conv bias present" if cfg.use_conv_bias else "no conv bias"
    mut = ", ".join(f"{kk} {vv:.3g}" if isinstance(vv, float) else f"{kk} {vv}"
                    for kk, vv in chk["mutation_logit_maxdiff"].items())
    wrong_eps = 1e-5 if eps != 1e-5 else 1e-6
    pos = f"`T - {k} + j`, j = 0..{k - 1}"
    text = f"""# Fixture `{name}` (mamba, oracle: HF transformers {meta['transformers']}, torch {meta['torch']})

Seeded random-init model whose parameters were all perturbed with seeded noise (every tensor: +0.25 std Gaussian noise; then norm weights U(0.5, 1.5), A_log with exp(A_log) log-uniform in [0.3, 12], D = 1 + 0.5 N(0,1), conv/in_proj/out_proj biases 0.2 N(0,1), dt_proj.bias = softplus^-1 of a log-uniform dt in [0.01, 1], out_proj x3) - the numbers carry no meaning, they only pin down the arithmetic. Oracle = HF pure-PyTorch path (no mamba_ssm / causal_conv1d kernels), float32, CPU, single thread. Made by `tools/make_fixtures.py` (exercises: {spec['what']}).

## Files

- `config.json` - HF config (`model_type` = `mamba`), written by `save_pretrained`.
- `model.safetensors` - all weights, float32, HF parameter names (below). {head_file}
- `expected.safetensors` - oracle outputs (below).
- `expected.json` - input_ids, greedy_ids, logits[b, -1, :8] samples and metadata, for eyeballing.

### model.safetensors

{tensor_table(os.path.join(out_dir, 'model.safetensors'))}

### expected.safetensors

{tensor_table(os.path.join(out_dir, 'expected.safetensors'))}

- `input_ids` int64 [{b}, {t_len}]: the prompt (uniform random ids in [0, {v}), every row different), no padding, no BOS added, every row the same length.
- `logits` float32 [{b}, {t_len}, {v}]: full-sequence forward over the prompt from a zero state; `logits[b, t]` predicts token t+1.
- `greedy_ids` int64 [{b}, {N_NEW}]: ONLY the {N_NEW} new tokens (prompt not included) of `model.generate(do_sample=False, use_cache=True, max_new_tokens={N_NEW})` with no EOS stopping and no logits processors, i.e. pure argmax: prefill the prompt, take argmax(logits[:, -1]), then feed each chosen token back through the single-step recurrent path. Identical to a no-cache argmax loop (checked). Every step has top1-top2 margin >= {math.floor(meta['min_greedy_top1_top2_margin'] * 1e4) / 1e4:.4f}.
- `greedy_logits` float32 [{b}, {N_NEW}, {v}]: raw logits from which greedy token k was chosen (`greedy_logits[:, 0]` equals `logits[:, -1]` up to float noise; k>=1 come from the cached decode path).
- `conv_state_layer{fmt_list(layers)}` float32 [{b}, d_inner={d_in}, d_conv={k}] and `ssm_state_layer{fmt_list(layers)}` float32 [{b}, d_inner={d_in}, d_state={n_st}]: HF cache contents right after the prompt prefill (before any generated token), for the first and the last layer. Layout below.

## Exact semantics (all float32; the oracle was cross-checked against an independent float64 NumPy re-implementation of exactly this text: max |diff| logits {chk['ref_float64_logits_maxdiff']:.2e}, states {chk['ref_float64_state_maxdiff']:.2e})

Notation: `W.x` = `x @ W.T` (PyTorch nn.Linear, weight [out, in]). `RMSNorm(x; w, eps) = x / sqrt(mean(x^2 over last dim) + eps) * w`. `silu(x) = x * sigmoid(x)`. `softplus(x) = log(1 + exp(x))` (torch returns x itself when x > 20).

Model: `h = embeddings[input_ids]`; for each layer: `h = h + Mixer(RMSNorm(h; layers.i.norm.weight, eps={eps:g}))` (residual kept in fp32, `residual_in_fp32=true`); then `h = RMSNorm(h; norm_f.weight, eps={eps:g})`, `logits = lm_head.h` with {head_eq}. No positional information, no dropout, no final softcap/scaling. **eps = {eps:g}** (`layer_norm_epsilon`) in every norm.

Depthwise causal conv (`conv1d.weight` [C, 1, k], PyTorch cross-correlation, NOT flipped): `conv(x)_t[c] = bias[c] + sum_{{j=0}}^{{k-1}} weight[c, 0, j] * x_{{t-k+1+j}}[c]` with x_{{<0}} = 0, so `weight[c,0,k-1]` multiplies the current token. Here k = d_conv = {k}.

### Mamba1 mixer (d_inner = expand*hidden = {d_in}, d_state = {n_st}, dt_rank = {rank}, d_conv = {k})

1. `u` = mixer input [T, hidden] (the RMS-normed residual stream). `xz = in_proj.u` {in_bias} -> [T, 2*d_inner]; `x = xz[:, :{d_in}]`, `z = xz[:, {d_in}:]` (gate). Batch rows are independent.
2. `x = silu(conv(x))` ({conv_bias}).
3. `x_proj.x` -> [T, dt_rank + 2*d_state] split as `dt_low = [:, :{rank}]`, `B = [:, {rank}:{rank + n_st}]`, `C = [:, {rank + n_st}:]`.
4. `dt = softplus(dt_proj.weight @ dt_low + dt_proj.bias)` -> [T, d_inner] (dt_proj bias always present, added BEFORE softplus).
5. `A = -exp(A_log)` [d_inner, d_state] (A_log is stored, per channel AND per state element).
6. Selective scan, state `s` [d_inner, d_state] starting at 0: `s_t[c,n] = exp(dt_t[c]*A[c,n]) * s_{{t-1}}[c,n] + dt_t[c] * B_t[n] * x_t[c]`; `y_t[c] = sum_n s_t[c,n] * C_t[n] + D[c] * x_t[c]`.
7. `y = y * silu(z)`; `out = out_proj.y` {out_bias}.

### Cache layout after the prompt (what `*_state_layer{{i}}` hold)

- `ssm_state_layer{{i}}[b, c, n]` = `s_T[c, n]` of step 6 after the last prompt token (index T-1), fp32.
- `conv_state_layer{{i}}[b, c, j]` = the conv INPUT (the raw `x` half of in_proj's output{', including in_proj.bias' if cfg.use_bias else ''}, i.e. BEFORE conv, before conv bias and before silu) of prompt position {pos}: oldest first, and `[..., {k - 1}]` is the LAST prompt token itself (it is included). If T < d_conv the left part is zero.
- Decode step with new token input x_new: window = `concat(conv_state[..., 1:], x_new)` (length d_conv); conv output = `bias + sum_j weight[c,0,j]*window[j]`; the cache becomes that window. The SSM state is updated with exactly one step of rule 6 (dt, B, C of the new token).

## config.json (verbatim)

```json
{config_text.rstrip()}
```

Fields the engine needs: `model_type`, `vocab_size`, `hidden_size`, `num_hidden_layers`, `state_size`, `conv_kernel`, `expand`, `intermediate_size`, `time_step_rank`, `use_bias` ({str(cfg.use_bias).lower()}), `use_conv_bias` ({str(cfg.use_conv_bias).lower()}), `tie_word_embeddings` ({str(tied).lower()}), `layer_norm_epsilon` ({eps:g}), `residual_in_fp32`, `hidden_act`. Fields like initializer_range, time_step_min/max/floor/scale/init_scheme, rescale_prenorm_residual, use_mambapy, use_associative_scan, use_cache only affect training/initialisation or HF internals. eos/pad/bos ids are HF defaults (none of them occurs in greedy_ids).

Seed used: {meta['seed_used']} (build with torch.manual_seed(seed), perturb with Generator(10000+seed), input ids with Generator(20000+seed)). Reload check: from_pretrained + forward reproduces `logits` with max |diff| {chk['reload_logits_maxdiff']:.1e}.
Discrimination check: the float64 reference with one deliberate mistake each changes `logits` by (max abs): {mut}. (`wrong_eps` uses eps {wrong_eps:g}; `tied_head` uses the embeddings as the LM head; `*_reset_chunks` restart the SSM state / conv window every {CHUNK} tokens.)
Suggested tolerances for an fp32 engine: logits / states max abs diff ~1e-4 (relative to their scale), greedy_ids exact.
"""
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)


def build_fixture(name, out_root):
    spec = FIXTURES[name]
    cfg = make_config(spec)
    layers = state_layers_for(cfg.num_hidden_layers)
    specials = {i for i in (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) if i is not None}
    for seed in range(spec["seed"], spec["seed"] + MAX_SEED_TRIES):
        model = build_model(spec, seed)
        ids = make_input_ids(spec, seed, cfg.vocab_size)
        res = oracle(model, ids, N_NEW, layers)
        bad = []
        if not res["_generate_equals_nocache_argmax"]:
            bad.append("generate != no-cache argmax")
        if res["_min_margin"] < MIN_MARGIN:
            bad.append(f"greedy margin {res['_min_margin']:.2e} < {MIN_MARGIN}")
        if specials & set(res["greedy_ids"].flatten().tolist()):
            bad.append("a special id in greedy_ids")
        if res["_cache_vs_nocache_logits"] > 1e-5:
            bad.append(f"cache/no-cache logits differ by {res['_cache_vs_nocache_logits']:.1e}")
        if not bad:
            break
        print(f"{name}: seed {seed} rejected ({'; '.join(bad)})", flush=True)
    else:
        raise SystemExit(f"{name}: no acceptable seed in {MAX_SEED_TRIES} tries")
    print(f"{name}: seed {seed}, min greedy margin {res['_min_margin']:.4f}", flush=True)

    d_logits, d_state, mut = reference_checks(model, ids, res, layers)
    print(f"{name}: float64 reference vs oracle: logits {d_logits:.2e}, states {d_state:.2e}", flush=True)
    weakest = min(((k, v) for k, v in mut.items() if isinstance(v, float)), key=lambda kv: kv[1])
    print(f"{name}: weakest deliberate mistake {weakest[0]} moves logits by {weakest[1]:.3g}", flush=True)
    if d_logits > 1e-3 or d_state > 1e-3:
        raise SystemExit(f"{name}: float64 reference disagrees with the oracle")

    out_dir = os.path.join(out_root, name)
    os.makedirs(out_dir, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        model.save_pretrained(tmp)
        for fname in ("config.json", "model.safetensors"):
            shutil.copyfile(os.path.join(tmp, fname), os.path.join(out_dir, fname))
    with open(os.path.join(out_dir, "config.json")) as f:
        config_text = f.read()

    tensors = {"input_ids": ids.contiguous(), "logits": res["logits"].contiguous(),
               "greedy_ids": res["greedy_ids"].contiguous(), "greedy_logits": res["greedy_logits"].contiguous()}
    for i in layers:
        tensors[f"conv_state_layer{i}"] = res[f"conv_state_layer{i}"].contiguous()
        tensors[f"ssm_state_layer{i}"] = res[f"ssm_state_layer{i}"].contiguous()
    save_safetensors_sorted(tensors, os.path.join(out_dir, "expected.safetensors"),
                            {"generator": "tools/make_fixtures.py", "torch": torch.__version__, "arch": "mamba",
                             "transformers": transformers.__version__, "fixture": name})

    reloaded = load_model(out_dir)
    with torch.no_grad():
        reload_diff = float((reloaded(input_ids=ids, use_cache=False).logits.float() - res["logits"]).abs().max())

    logits = res["logits"]
    meta = {
        "fixture": name,
        "arch": "mamba",
        "model_class": "MambaForCausalLM",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "generator": "tools/make_fixtures.py",
        "seed_used": seed,
        "batch": spec["batch"],
        "prompt_len": spec["prompt_len"],
        "n_new": N_NEW,
        "input_ids": ids.tolist(),
        "greedy_ids": res["greedy_ids"].tolist(),
        "logits_0_last_first8": logits[0, -1, :8].tolist(),
        "logits_last_first8_per_row": logits[:, -1, :8].tolist(),
        "argmax_last_per_row": logits[:, -1].argmax(-1).tolist(),
        "logits_stats": {"mean": float(logits.mean()), "std": float(logits.std()),
                         "absmax": float(logits.abs().max())},
        "min_greedy_top1_top2_margin": res["_min_margin"],
        "state_layers": layers,
        "checks": {
            "ref_float64_logits_maxdiff": d_logits,
            "ref_float64_state_maxdiff": d_state,
            "reload_logits_maxdiff": reload_diff,
            "generate_equals_nocache_argmax": res["_generate_equals_nocache_argmax"],
            "mutation_logit_maxdiff": mut,
        },
    }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(meta, f, indent=1)
        f.write("\n")
    write_readme(out_dir, name, spec, cfg, meta, config_text)
    for fname in ("config.json", "model.safetensors", "expected.safetensors", "expected.json", "README.md"):
        os.chmod(os.path.join(out_dir, fname), 0o644)
    print(f"{name}: written to {out_dir} (reload logits diff {reload_diff:.1e})", flush=True)
    return out_dir


# ----------------------------------------------------------------------------------------
# --check
# ----------------------------------------------------------------------------------------
def load_model(folder):
    model, info = MambaForCausalLM.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise SystemExit(f"{folder}: weights do not load cleanly into MambaForCausalLM: {problems}")
    model.generation_config.eos_token_id = None
    return model.eval()


def check_fixture(folder, tol=CHECK_TOL):
    """Recompute a fixture folder with transformers; returns True when everything matches."""
    model = load_model(folder)
    cfg = model.config
    want = load_file(os.path.join(folder, "expected.safetensors"))
    ids = want["input_ids"]
    n_new = want["greedy_ids"].shape[1]
    layers = sorted(int(k[len("ssm_state_layer"):]) for k in want if k.startswith("ssm_state_layer"))
    got = oracle(model, ids, n_new, layers)
    name = os.path.basename(os.path.normpath(folder))
    ok = True
    print(f"{name}: {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, "
          f"batch {ids.shape[0]} x {ids.shape[1]}, tied {cfg.tie_word_embeddings}, use_bias {cfg.use_bias}")
    for key in sorted(want):
        if key in ("input_ids", "greedy_ids"):
            continue
        if tuple(got[key].shape) != tuple(want[key].shape):
            print(f"  {key:22s} shape {tuple(got[key].shape)} != {tuple(want[key].shape)}  FAIL")
            ok = False
            continue
        diff = float((got[key] - want[key]).abs().max())
        scale = float(want[key].abs().max())
        good = diff <= tol
        ok &= good
        print(f"  {key:22s} max abs diff {diff:.2e} (max |value| {scale:.3g})  {'ok' if good else 'FAIL'}")
    same = torch.equal(got["greedy_ids"], want["greedy_ids"])
    ok &= same
    print(f"  {'greedy_ids':22s} {'identical' if same else 'DIFFERENT'} ({want['greedy_ids'].numel()} tokens)"
          f"{'' if same else ': ' + str(got['greedy_ids'].tolist())}")
    print(f"  generate == no-cache argmax: {got['_generate_equals_nocache_argmax']}; "
          f"min greedy margin {got['_min_margin']:.4f}")
    ok &= got["_generate_equals_nocache_argmax"]

    # the README's equations in float64 against the stored outputs
    weights = load_file(os.path.join(folder, "model.safetensors"))
    _, d_logits, d_state = reference_distance(weights, cfg, ids, want, layers)
    ref_ok = d_logits <= 1e-3 and d_state <= 1e-3
    ok &= ref_ok
    print(f"  float64 reference vs stored: logits {d_logits:.2e}, states {d_state:.2e}  {'ok' if ref_ok else 'FAIL'}")
    print(f"{name}: {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", nargs="?", help="fixtures folder to write into (e.g. tests/fixtures)")
    ap.add_argument("--only", action="append", choices=sorted(FIXTURES), metavar="NAME",
                    help=f"build only this fixture (repeatable); one of {', '.join(sorted(FIXTURES))}")
    ap.add_argument("--check", action="append", metavar="DIR", default=[],
                    help="recompute the fixture folder DIR with transformers and compare (repeatable)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--list", action="store_true", help="list the fixtures and exit")
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    if args.list:
        for name, spec in FIXTURES.items():
            print(f"{name}: batch {spec['batch']} x {spec['prompt_len']}, seed {spec['seed']}: {spec['what']}")
        return
    if args.out is None and not args.check:
        ap.error("give an output folder, or --check DIR")
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, numpy {np.__version__}", flush=True)
    built = []
    if args.out is not None:
        for name in args.only or list(FIXTURES):
            built.append(build_fixture(name, args.out))
    ok = True
    for folder in args.check + built:
        ok &= check_fixture(folder)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
