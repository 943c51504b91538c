#!/usr/bin/env python3
"""Build (or check) the oracle fixtures in tests/fixtures/.

Each fixture is a tiny model of one of three families in Hugging Face format, plus what
Hugging Face `transformers` computes for it (pure-PyTorch path, float32, CPU, one thread):

  mamba         MambaConfig / MambaForCausalLM                (Mamba-1)
  falcon_mamba  FalconMambaConfig / FalconMambaForCausalLM    (Mamba-1 + weightless RMS
                norms on dt_low, B and C inside the mixer, eps = mixer_rms_eps)
  mamba2        Mamba2Config / Mamba2ForCausalLM              (Mamba-2: heads, grouped B/C,
                one A per head, gated RMSNorm per group)

Files of a fixture folder:

  config.json            HF config, written by save_pretrained
  model.safetensors      the weights (float32, HF names; no lm_head.weight when tied)
  expected.safetensors   input_ids, logits, greedy_ids, greedy_logits,
                         ssm_state_layer{i}, conv_state_layer{i} (first and last layer)
  expected.json          the ids, a few sample values, the checks below
  README.md              exact equations, tensor names/shapes, state layouts

How a fixture is made (seed s = the spec's seed, then s+1, s+2, ... until it is accepted):
  1. torch.manual_seed(s); model = <Family>ForCausalLM(<Family>Config(...)) (HF's own init).
  2. every parameter is perturbed with torch.Generator().manual_seed(10000 + s), in
     named_parameters() order: first p += 0.25 * std(p) * randn, then by kind
     (norm weights, Mamba-2's gated norm included, U(0.5, 1.5); A_log log-uniform exp(A_log)
     in [0.3, 12]; D = 1 + 0.5 randn; conv, in_proj and out_proj biases 0.2 randn;
     dt_proj.bias (Mamba-1) or dt_bias (Mamba-2) = softplus^-1 of a log-uniform dt in
     [0.01, 1]; out_proj.weight x3).  So a plausible mistake (missing D skip, flipped conv
     kernel, B/C swapped, wrong epsilon, ...) moves the logits far beyond float noise; the
     float64 reference below measures by how much.
  3. input_ids: torch.randint(0, vocab, (batch, T)) with Generator(20000 + s).
  4. oracle: forward over the prompt with a cache (logits, states after the prompt),
     model.generate(greedy, no EOS, no logits processors) for the continuation.
  5. accepted when generate equals a no-cache argmax loop, every greedy step has a
     top1-top2 margin >= MIN_MARGIN and no greedy token is a special id (bos/eos/pad).
  6. checks recorded in expected.json and README.md: an independent float64 NumPy
     implementation of the README's equations against the oracle; the same with one
     deliberate mistake each (how far each mistake moves the logits); the saved folder
     reloaded with from_pretrained reproduces the logits.

Mamba-2 and transformers (5.24):
  - MambaRMSNormGated normalises per group of d_inner / n_groups channels, as mamba_ssm's
    RMSNormGated(group_size=d_inner // ngroups, norm_before_gate=False) does; the script
    checks this on every Mamba-2 model and refuses to run where it does not hold.
  - time_step_limit: the chunked (prefill) path clamps dt = softplus(dt + dt_bias) to
    [min, max], but the single-token decode step (mamba2_selective_state_update, like
    mamba_ssm's Mamba2.step) does not clamp at all.  So that every token gets the same dt
    rule, the script patches the decode step to clamp too (patch_mamba2_decode_dt_limit);
    with the default limit (0, inf) the patch changes nothing.  Where a fixture's limit is
    finite, expected.json records how many decode dt values the clamp touched and how far
    transformers' unpatched decode moves greedy_logits.

`--check DIR` loads a fixture folder (config.json + model.safetensors; the family comes from
config.json's model_type) into transformers, recomputes everything in its
expected.safetensors and reports the max abs differences.

Usage:
  python tools/make_fixtures.py tests/fixtures                     # build every fixture
  python tools/make_fixtures.py tests/fixtures --only mamba2-tiny
  python tools/make_fixtures.py --check tests/fixtures/mamba1-tiny  # verify a folder
"""
import argparse
import functools
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
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import (FalconMambaConfig, FalconMambaForCausalLM, GenerationConfig,  # noqa: E402
                          Mamba2Config, Mamba2ForCausalLM, MambaConfig, MambaForCausalLM)
from transformers.models.mamba2 import modeling_mamba2  # noqa: E402

# Quiet: no progress bars, no notes that the fused kernels are absent (that is the point).
transformers.logging.set_verbosity_error()
transformers.logging.disable_progress_bar()

N_NEW = 12            # greedy tokens after the prompt
MIN_MARGIN = 5e-3     # smallest accepted top1-top2 logit gap over all greedy steps
MAX_SEED_TRIES = 50
CHUNK = 64            # scan chunk for the chunk-boundary mistakes (Mamba-1; only when T > CHUNK)
CHUNK_MAMBA2 = 32     # the same for Mamba-2
CHECK_TOL = 1e-4      # --check: max abs diff allowed (logits and states)

# name -> spec.  `arch` is the HF model_type; `config` holds the config arguments that differ
# from HF's defaults; `seed` is the first seed tried.  mamba1-tiny and mamba1-small start at
# the seeds their committed folders record, so that a rebuild reproduces them (up to float
# noise).
FIXTURES = {
    "mamba1-tiny": dict(
        arch="mamba",
        config=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, state_size=16,
                    conv_kernel=4, expand=2, time_step_rank=4),
        batch=2, prompt_len=37, seed=2001,
        what="batch rows, odd length"),
    "mamba1-small": dict(
        arch="mamba",
        config=dict(vocab_size=1000, hidden_size=128, num_hidden_layers=4, state_size=16,
                    conv_kernel=4, expand=2, time_step_rank=8),
        batch=1, prompt_len=300, seed=1002,
        what="several scan chunks"),
    "mamba1-untied-biases": dict(
        arch="mamba",
        config=dict(vocab_size=777, hidden_size=72, num_hidden_layers=2, state_size=8,
                    conv_kernel=3, expand=2, time_step_rank=5, layer_norm_epsilon=1e-3,
                    use_bias=True, use_conv_bias=True, tie_word_embeddings=False),
        batch=3, prompt_len=129, seed=3000,
        what="untied lm_head, in/out_proj biases, d_conv 3, d_state 8, dt_rank 5, "
             "eps 1e-3, hidden 72, vocab 777, 3 batch rows, 129 tokens = 2 x 64 + 1"),
    "falcon-mamba-tiny": dict(
        arch="falcon_mamba",
        config=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, state_size=16,
                    conv_kernel=4, expand=2, time_step_rank=4, mixer_rms_eps=1e-3,
                    tie_word_embeddings=True),
        batch=2, prompt_len=41, seed=4000,
        what="FalconMamba: weightless RMS norms on dt_low, B and C (mixer_rms_eps 1e-3), "
             "tied, batch rows, odd length"),
    "mamba2-tiny": dict(
        arch="mamba2",
        config=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, state_size=16,
                    conv_kernel=4, expand=2, num_heads=8, head_dim=16, n_groups=2,
                    use_conv_bias=True, tie_word_embeddings=False, chunk_size=16),
        batch=2, prompt_len=71, seed=5000,
        what="Mamba-2: 8 heads of 16, 2 groups (per-group gated norm, head->group map), "
             "untied lm_head, 71 tokens = 2 x 32 + 7 (HF chunk_size 16)"),
    "mamba2-state128": dict(
        arch="mamba2",
        config=dict(vocab_size=512, hidden_size=64, num_hidden_layers=2, state_size=128,
                    conv_kernel=4, expand=2, num_heads=4, head_dim=32, n_groups=1,
                    tie_word_embeddings=True, chunk_size=32, time_step_limit=(0.01, 0.2),
                    layer_norm_epsilon=1e-3),
        batch=2, prompt_len=73, seed=6000,
        what="Mamba-2: d_state 128, 4 heads of 32, 1 group, tied, time_step_limit (0.01, 0.2) "
             "(dt clamped at both ends), eps 1e-3, 73 tokens = 2 x 32 + 9 (HF chunk_size 32)"),
}


# ----------------------------------------------------------------------------------------
# transformers' Mamba-2: the decode step's dt limit, the gated norm's groups
# ----------------------------------------------------------------------------------------
def patch_mamba2_decode_dt_limit():
    """Make transformers' Mamba-2 decode step clamp dt to time_step_limit, as its chunked
    prefill path does (see the module docstring).  Returns a dict: `on` switches the patch
    (False = transformers as shipped); `seen`, `below`, `above` count the decode-step dt
    values (one per batch row and head) and how many of them the clamp moved."""
    update, forward = modeling_mamba2.mamba2_selective_state_update, modeling_mamba2.Mamba2Mixer.forward
    state = {"on": True, "limit": None, "seen": 0, "below": 0, "above": 0}

    @functools.wraps(forward)
    def mixer_forward(self, *args, **kwargs):
        state["limit"] = self.time_step_limit
        return forward(self, *args, **kwargs)

    @functools.wraps(update)
    def clamped_update(ssm_state, hidden_states, dt, A, B, C, D=None, dt_bias=None, dt_softplus=False,
                       z=None, **kwargs):
        if state["on"]:
            # the same dt arithmetic as the unpatched step, then the clamp of the chunked path
            if dt_bias is not None:
                dt = dt + dt_bias.to(dt.dtype)
            if dt_softplus:
                dt = F.softplus(dt)
            lo, hi = state["limit"]
            per_head = dt[..., 0]  # dt arrives repeated over head_dim
            state["seen"] += per_head.numel()
            state["below"] += int((per_head < lo).sum())
            state["above"] += int((per_head > hi).sum())
            dt = torch.clamp(dt, min=lo, max=hi)
            dt_bias, dt_softplus = None, False
        return update(ssm_state, hidden_states, dt, A, B, C, D, dt_bias=dt_bias, dt_softplus=dt_softplus,
                      z=z, **kwargs)

    modeling_mamba2.Mamba2Mixer.forward = mixer_forward
    modeling_mamba2.mamba2_selective_state_update = clamped_update
    return state


MAMBA2_DECODE = patch_mamba2_decode_dt_limit()


@torch.no_grad()
def require_grouped_gated_norm(model):
    """transformers' MambaRMSNormGated must compute y * silu(z), then RMS-normalise each group
    of d_inner / n_groups channels (mamba_ssm's RMSNormGated, norm_before_gate=False)."""
    cfg = model.config
    norm = model.backbone.layers[0].mixer.norm
    d_in = cfg.num_heads * cfg.head_dim
    g = torch.Generator().manual_seed(0)
    y, z = torch.randn(2, 3, d_in, generator=g), torch.randn(2, 3, d_in, generator=g)
    want = _gated_norm(y.double().numpy(), z.double().numpy(), norm.weight.double().numpy(),
                       cfg.layer_norm_epsilon, cfg.n_groups, frozenset())
    diff = float(np.abs(norm(y, z).double().numpy() - want).max())
    if diff > 1e-5:
        raise SystemExit(f"transformers' MambaRMSNormGated does not normalise per group of d_inner / n_groups "
                         f"channels (max diff {diff:.1e}); this script needs it to (mamba_ssm does)")


# ----------------------------------------------------------------------------------------
# model construction
# ----------------------------------------------------------------------------------------
def make_config(spec):
    return ARCHS[spec["arch"]].config_cls(**spec["config"])


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
        elif name.endswith(("dt_proj.bias", "mixer.dt_bias")):
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
    model = ARCHS[spec["arch"]].model_cls(make_config(spec)).float().eval()
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
def greedy(model, ids, n_new):
    """model.generate: greedy, no EOS, no logits processors; (new ids, their logits)."""
    gen_cfg = GenerationConfig(
        do_sample=False, num_beams=1, max_new_tokens=n_new, min_new_tokens=n_new,
        eos_token_id=None, pad_token_id=model.config.pad_token_id, bos_token_id=None,
        output_logits=True, return_dict_in_generate=True, use_cache=True)
    gen = model.generate(input_ids=ids, attention_mask=torch.ones_like(ids), generation_config=gen_cfg)
    new_ids = gen.sequences[:, ids.shape[1]:].clone()
    assert new_ids.shape[1] == n_new
    return new_ids, torch.stack(list(gen.logits), dim=1).float().clone()


@torch.no_grad()
def oracle(model, ids, n_new, state_layers):
    """logits, states after the prompt and greedy continuation from HF (pure PyTorch)."""
    out = model(input_ids=ids, use_cache=True)
    cache = out.cache
    res = {"logits": out.logits.float().clone()}
    for i in state_layers:
        res[f"conv_state_layer{i}"] = cache.get_conv_state(i).float().clone()
        res[f"ssm_state_layer{i}"] = cache.get_recurrent_state(i).float().clone()
    nocache = model(input_ids=ids, use_cache=False).logits.float()
    res["_cache_vs_nocache_logits"] = float((nocache - res["logits"]).abs().max())

    res["greedy_ids"], res["greedy_logits"] = greedy(model, ids, n_new)

    # no-cache argmax loop: the whole sequence again at every step (the chunked / full-sequence
    # path); its last logits are what the cached decode steps must reproduce
    seq = ids
    loop_ids, loop_logits = [], []
    for _ in range(n_new):
        last = model(input_ids=seq, use_cache=False).logits[:, -1].float()
        nxt = last.argmax(-1)
        loop_ids.append(nxt)
        loop_logits.append(last)
        seq = torch.cat([seq, nxt[:, None]], dim=1)
    res["_generate_equals_nocache_argmax"] = bool(torch.equal(torch.stack(loop_ids, 1), res["greedy_ids"]))
    res["_decode_vs_nocache_logits"] = float((torch.stack(loop_logits, 1) - res["greedy_logits"]).abs().max())
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


def _causal_conv(x, W, p, cfg, m, chunk):
    """Depthwise causal conv over x [B, T, C] with conv1d.weight [C, 1, k] (+ bias); returns
    (conv output before silu, conv state after the prompt [B, C, k])."""
    bsz, t_len, width = x.shape
    k = cfg.conv_kernel
    # conv state after the prompt: raw conv inputs of positions T-k .. T-1
    pad = np.concatenate([np.zeros((bsz, k, width)), x], axis=1)
    conv_state = pad[:, -k:, :].transpose(0, 2, 1)
    cw = W[p + "conv1d.weight"][:, 0, :]
    if "conv_flipped" in m:
        cw = cw[:, ::-1]
    xc = np.zeros_like(x)
    for t in range(t_len):
        for j in range(k):
            src = t - k + 1 + j
            if src < 0 or ("conv_reset_chunks" in m and src // chunk != t // chunk):
                continue
            xc[:, t] += cw[:, j] * x[:, src]
    if cfg.use_conv_bias and "no_conv_bias" not in m:
        xc = xc + W[p + "conv1d.bias"]
    return xc, conv_state


def _weightless_rms(x, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)


def mixer_mamba1(W, p, cfg, u, m, eps, stats):
    """Mamba-1 mixer (FalconMamba: plus weightless RMS norms on dt_low, B and C)."""
    d_in, n_st, rank = cfg.intermediate_size, cfg.state_size, cfg.time_step_rank
    bsz, t_len, _ = u.shape
    xz = u @ W[p + "in_proj.weight"].T
    if cfg.use_bias and "no_in_proj_bias" not in m:
        xz = xz + W[p + "in_proj.bias"]
    x, z = xz[..., :d_in], xz[..., d_in:]
    if "xz_swapped" in m:
        x, z = z, x
    xc, conv_state = _causal_conv(x, W, p, cfg, m, CHUNK)
    xs = _silu(xc)
    dbc = xs @ W[p + "x_proj.weight"].T
    dt_low, bm, cm = dbc[..., :rank], dbc[..., rank:rank + n_st], dbc[..., rank + n_st:]
    if cfg.model_type == "falcon_mamba":
        meps = 1e-6 if "mixer_eps_default" in m else cfg.mixer_rms_eps
        if not {"no_mixer_norms", "no_dt_norm", "dt_norm_after_proj"} & m:
            dt_low = _weightless_rms(dt_low, meps)
        if not {"no_mixer_norms", "no_bc_norms"} & m:
            bm, cm = _weightless_rms(bm, meps), _weightless_rms(cm, meps)
    if "bc_swapped" in m:
        bm, cm = cm, bm
    dt = dt_low @ W[p + "dt_proj.weight"].T
    if "dt_norm_after_proj" in m:
        dt = _weightless_rms(dt, meps)
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
    return out, conv_state, s


def _gated_norm(y, z, w, eps, n_groups, m):
    """Mamba-2's gated RMSNorm: y * silu(z), then RMS-normalised per group of d_inner / n_groups
    consecutive channels, times the weight."""
    if "no_gate" not in m and "gate_after_norm" not in m:
        y = y * _silu(z)
    groups = 1 if "norm_over_d_inner" in m else n_groups
    yg = y.reshape(*y.shape[:-1], groups, y.shape[-1] // groups)
    y = _weightless_rms(yg, eps).reshape(y.shape)
    if "gate_after_norm" in m:
        y = y * _silu(z)
    return y if "no_gated_norm_weight" in m else y * w


def mixer_mamba2(W, p, cfg, u, m, eps, stats):
    """Mamba-2 mixer (sequential form of the SSD layer)."""
    n_h, hd, n_g, n_st = cfg.num_heads, cfg.head_dim, cfg.n_groups, cfg.state_size
    d_in = n_h * hd
    conv_dim = d_in + 2 * n_g * n_st
    bsz, t_len, _ = u.shape
    zxbcdt = u @ W[p + "in_proj.weight"].T
    if cfg.use_bias and "no_in_proj_bias" not in m:
        zxbcdt = zxbcdt + W[p + "in_proj.bias"]
    if "z_after_xBC" in m:
        xbc, z = zxbcdt[..., :conv_dim], zxbcdt[..., conv_dim:conv_dim + d_in]
    else:
        z, xbc = zxbcdt[..., :d_in], zxbcdt[..., d_in:d_in + conv_dim]
    dt_raw = zxbcdt[..., d_in + conv_dim:]
    xc, conv_state = _causal_conv(xbc, W, p, cfg, m, CHUNK_MAMBA2)
    xbc = _silu(xc)
    x = xbc[..., :d_in]
    bm = xbc[..., d_in:d_in + n_g * n_st].reshape(bsz, t_len, n_g, n_st)
    cm = xbc[..., d_in + n_g * n_st:].reshape(bsz, t_len, n_g, n_st)
    if "bc_swapped" in m:
        bm, cm = cm, bm
    if "heads_interleaved" in m:  # channel c in head c % H instead of c // head_dim
        xh = x.reshape(bsz, t_len, hd, n_h).transpose(0, 1, 3, 2)
    else:
        xh = x.reshape(bsz, t_len, n_h, hd)
    lo, hi = cfg.time_step_limit
    dt = dt_raw if "no_dt_bias" in m else dt_raw + W[p + "dt_bias"]
    if "clamp_before_softplus" in m:
        dt = _softplus(np.clip(dt, lo, hi))
    else:
        dt = np.exp(dt) if "dt_exp_not_softplus" in m else _softplus(dt)
        if stats is not None:
            stats["dt_total"] = stats.get("dt_total", 0) + dt.size
            stats["dt_below_min"] = stats.get("dt_below_min", 0) + int((dt < lo).sum())
            stats["dt_above_max"] = stats.get("dt_above_max", 0) + int((dt > hi).sum())
        if "no_dt_clamp" not in m:
            dt = np.clip(dt, lo, hi)
    a = -W[p + "A_log"] if "A_no_exp" in m else -np.exp(W[p + "A_log"])
    heads = np.arange(n_h)
    group = heads % n_g if "group_map_modulo" in m else heads // (n_h // n_g)
    bh, ch = bm[:, :, group], cm[:, :, group]  # [B, T, H, N]: the group each head reads
    s = np.zeros((bsz, n_h, hd, n_st))
    y = np.zeros_like(xh)
    for t in range(t_len):
        if "ssm_reset_chunks" in m and t > 0 and t % CHUNK_MAMBA2 == 0:
            s = np.zeros_like(s)
        decay = np.exp(dt[:, t] * a)[:, :, None, None]
        s = decay * s + dt[:, t, :, None, None] * xh[:, t, :, :, None] * bh[:, t, :, None, :]
        y[:, t] = np.einsum("bhpn,bhn->bhp", s, ch[:, t])
    if "no_D" not in m:
        y = y + W[p + "D"][:, None] * xh
    if "heads_interleaved" in m:
        y = y.transpose(0, 1, 3, 2)
    y = y.reshape(bsz, t_len, d_in)
    if "gated_norm_wrong_eps" in m:
        eps = 1e-5 if eps != 1e-5 else 1e-6
    y = _gated_norm(y, z, W[p + "norm.weight"], eps, n_g, m)
    out = y @ W[p + "out_proj.weight"].T
    if cfg.use_bias and "no_out_proj_bias" not in m:
        out = out + W[p + "out_proj.bias"]
    return out, conv_state, s


def reference(weights, cfg, ids, mistakes=frozenset(), stats=None):
    """float64 forward over the prompt; returns logits [B,T,V] and {layer: (conv, ssm)}."""
    m = mistakes
    W = {k: v.detach().double().numpy() if torch.is_tensor(v) else np.asarray(v, np.float64)
         for k, v in weights.items()}
    eps = cfg.layer_norm_epsilon
    if "wrong_eps" in m:
        eps = 1e-5 if eps != 1e-5 else 1e-6
    ids = np.asarray(ids)
    emb = W["backbone.embeddings.weight"]
    head = emb if (cfg.tie_word_embeddings or "tied_head" in m) else W["lm_head.weight"]
    mixer = ARCHS[cfg.model_type].mixer

    def rms(x, w):
        y = x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps)
        return y if "no_norm_weight" in m else y * w

    h = emb[ids]
    states = {}
    for i in range(cfg.num_hidden_layers):
        u = rms(h, W[f"backbone.layers.{i}.norm.weight"])
        out, conv_state, s = mixer(W, f"backbone.layers.{i}.mixer.", cfg, u, m, eps, stats)
        h = out if "no_residual" in m else h + out
        states[i] = (conv_state, s)
    h = rms(h, W["backbone.norm_f.weight"])
    return h @ head.T, states


def mistakes_mamba1(cfg, t_len):
    names = ["no_D", "no_gate", "conv_flipped"]
    if cfg.use_conv_bias:
        names.append("no_conv_bias")
    names += ["no_dt_bias", "dt_exp_not_softplus", "A_no_exp", "bc_swapped", "no_norm_weight",
              "no_residual", "xz_swapped", "wrong_eps"]
    if cfg.model_type == "falcon_mamba":
        names += ["no_mixer_norms", "no_dt_norm", "no_bc_norms", "mixer_eps_default", "dt_norm_after_proj"]
    if cfg.use_bias:
        names += ["no_in_proj_bias", "no_out_proj_bias"]
    if not cfg.tie_word_embeddings:
        names.append("tied_head")
    if t_len > CHUNK:
        names += ["ssm_reset_chunks", "conv_reset_chunks"]
    return names


def mistakes_mamba2(cfg, t_len):
    names = ["no_D", "no_gate", "gate_after_norm"]
    if cfg.n_groups > 1:
        names += ["norm_over_d_inner", "group_map_modulo"]
    names += ["heads_interleaved", "conv_flipped"]
    if cfg.use_conv_bias:
        names.append("no_conv_bias")
    names += ["no_dt_bias", "dt_exp_not_softplus"]
    if tuple(cfg.time_step_limit) != (0.0, math.inf):
        names += ["no_dt_clamp", "clamp_before_softplus"]
    names += ["A_no_exp", "bc_swapped", "no_norm_weight", "no_gated_norm_weight", "no_residual",
              "z_after_xBC", "wrong_eps", "gated_norm_wrong_eps"]
    if cfg.use_bias:
        names += ["no_in_proj_bias", "no_out_proj_bias"]
    if not cfg.tie_word_embeddings:
        names.append("tied_head")
    if t_len > CHUNK_MAMBA2:
        names += ["ssm_reset_chunks", "conv_reset_chunks"]
    return names


def model_weights(model):
    sd = {k: v.detach().float() for k, v in model.state_dict().items()}
    if model.config.tie_word_embeddings:
        sd.pop("lm_head.weight", None)
    return sd


def reference_distance(weights, cfg, ids, outputs, state_layers, stats=None):
    """The float64 reference's logits, and its max |diff| against `outputs` in the logits and
    in the states of `state_layers`."""
    ref_logits, ref_states = reference(weights, cfg, ids.numpy(), stats=stats)
    d_logits = float(np.abs(ref_logits - outputs["logits"].double().numpy()).max())
    d_state = 0.0
    for i in state_layers:
        conv, ssm = ref_states[i]
        d_state = max(d_state, float(np.abs(conv - outputs[f"conv_state_layer{i}"].double().numpy()).max()),
                      float(np.abs(ssm - outputs[f"ssm_state_layer{i}"].double().numpy()).max()))
    return ref_logits, d_logits, d_state


def reference_checks(model, ids, res, state_layers, stats=None):
    cfg = model.config
    weights = model_weights(model)
    ref_logits, d_logits, d_state = reference_distance(weights, cfg, ids, res, state_layers, stats)
    mut = {}
    for name in ARCHS[cfg.model_type].mistakes(cfg, ids.shape[1]):
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


def readme_mamba1(c):
    """Mixer and cache sections of a Mamba-1 or FalconMamba fixture's README."""
    cfg, k = c["cfg"], c["k"]
    d_in, n_st, rank = cfg.intermediate_size, cfg.state_size, cfg.time_step_rank
    in_bias = ("(+ `in_proj.bias`: present in this fixture)" if cfg.use_bias
               else "(+ in_proj.bias if present; absent here)")
    out_bias = ("(+ `out_proj.bias`: present in this fixture)" if cfg.use_bias
                else "(+ out_proj.bias if present; absent here)")
    conv_bias = "conv bias present" if cfg.use_conv_bias else "no conv bias"
    falcon = cfg.model_type == "falcon_mamba"
    if falcon:
        meps = cfg.mixer_rms_eps
        heading = (f"### FalconMamba mixer (the Mamba1 mixer plus three weightless RMS norms; "
                   f"d_inner = expand*hidden = {d_in}, d_state = {n_st}, dt_rank = {rank}, d_conv = {k}, "
                   f"mixer_rms_eps = {meps:g})")
        norms = (f"3b. **FalconMamba only**: `dt_low = wnorm(dt_low)` (over its {rank} entries), "
                 f"`B = wnorm(B)`, `C = wnorm(C)` (each over its {n_st} entries), with "
                 f"`wnorm(v) = v / sqrt(mean(v^2) + mixer_rms_eps)`, **mixer_rms_eps = {meps:g}** "
                 f"(`mixer_rms_eps`, not `layer_norm_epsilon`), NO weight (transformers' "
                 f"`FalconMambaWeightlessRMSNorm` computes `x * rsqrt(mean(x^2) + eps)` in float32; its all-ones "
                 f"`dt_layernorm/b_layernorm/c_layernorm.weight` buffers are not used and not stored). The norms "
                 f"come after the split and before `dt_proj` and the scan; `x` and the gate `z` are not normed. "
                 f"Batch row and time step each get their own norm (mean over the last axis only).\n")
        dt_low = "the normed `dt_low`"
    else:
        heading = f"### Mamba1 mixer (d_inner = expand*hidden = {d_in}, d_state = {n_st}, dt_rank = {rank}, d_conv = {k})"
        norms, dt_low = "", "dt_low"
    dt_line = (f"4. `dt = softplus(dt_proj.weight @ dt_low + dt_proj.bias)` -> [T, d_inner] (dt_proj bias always "
               f"present, added BEFORE softplus).")
    if falcon:
        dt_line += f" Here `dt_low` is {dt_low} of 3b, and B and C in rule 6 are the normed ones."
    pos = f"`T - {k} + j`, j = 0..{k - 1}"
    return f"""{heading}

1. `u` = mixer input [T, hidden] (the RMS-normed residual stream). `xz = in_proj.u` {in_bias} -> [T, 2*d_inner]; `x = xz[:, :{d_in}]`, `z = xz[:, {d_in}:]` (gate). Batch rows are independent.
2. `x = silu(conv(x))` ({conv_bias}).
3. `x_proj.x` -> [T, dt_rank + 2*d_state] split as `dt_low = [:, :{rank}]`, `B = [:, {rank}:{rank + n_st}]`, `C = [:, {rank + n_st}:]`.
{norms}{dt_line}
5. `A = -exp(A_log)` [d_inner, d_state] (A_log is stored, per channel AND per state element).
6. Selective scan, state `s` [d_inner, d_state] starting at 0: `s_t[c,n] = exp(dt_t[c]*A[c,n]) * s_{{t-1}}[c,n] + dt_t[c] * B_t[n] * x_t[c]`; `y_t[c] = sum_n s_t[c,n] * C_t[n] + D[c] * x_t[c]`.
7. `y = y * silu(z)`; `out = out_proj.y` {out_bias}.

### Cache layout after the prompt (what `*_state_layer{{i}}` hold)

- `ssm_state_layer{{i}}[b, c, n]` = `s_T[c, n]` of step 6 after the last prompt token (index T-1), fp32.
- `conv_state_layer{{i}}[b, c, j]` = the conv INPUT (the raw `x` half of in_proj's output{', including in_proj.bias' if cfg.use_bias else ''}, i.e. BEFORE conv, before conv bias and before silu) of prompt position {pos}: oldest first, and `[..., {k - 1}]` is the LAST prompt token itself (it is included). If T < d_conv the left part is zero.
- Decode step with new token input x_new: window = `concat(conv_state[..., 1:], x_new)` (length d_conv); conv output = `bias + sum_j weight[c,0,j]*window[j]`; the cache becomes that window. The SSM state is updated with exactly one step of rule 6 (dt, B, C of the new token{', normed as in 3b' if falcon else ''})."""


def readme_mamba2(c):
    """Mixer and cache sections of a Mamba-2 fixture's README."""
    cfg, k, eps, chk = c["cfg"], c["k"], c["eps"], c["chk"]
    n_h, hd, n_g, n_st = cfg.num_heads, cfg.head_dim, cfg.n_groups, cfg.state_size
    d_in = n_h * hd
    gn = n_g * n_st
    conv_dim = d_in + 2 * gn
    per = n_h // n_g
    lo, hi = cfg.time_step_limit
    finite = (lo, hi) != (0.0, math.inf)
    in_bias = ("(+ `in_proj.bias`: present in this fixture)" if cfg.use_bias
               else "(+ in_proj.bias if present; absent here)")
    out_bias = ("(+ `out_proj.bias`: present in this fixture)" if cfg.use_bias
                else "(+ out_proj.bias if present; absent here)")
    conv_bias = "conv bias present" if cfg.use_conv_bias else "no conv bias"
    groups_of_heads = ", ".join(f"heads {g * per}..{(g + 1) * per - 1} read group {g}" for g in range(n_g))
    if n_g > 1:
        norm_groups = (f"each group of d_inner / n_groups = {d_in // n_g} consecutive channels "
                       f"(channels q*{d_in // n_g} .. q*{d_in // n_g}+{d_in // n_g - 1} for group q = 0..{n_g - 1}) "
                       f"is normalised on its own, NOT all {d_in} channels together")
    else:
        norm_groups = f"n_groups = 1 here, so the one group is all {d_in} channels"
    dc = chk.get("dt_clamp", {})
    if finite:
        pre = dc["prefill"]
        dec = dc["decode"]
        clamp_text = (
            f"**time_step_limit = ({lo:g}, {hi:g}) here**, so the clamp is active: over the prompt "
            f"{pre['below_min']} of {pre['total']} dt values (all layers, batch rows, positions, heads) lie below "
            f"{lo:g} and {pre['above_max']} above {hi:g} before the clamp; in the {N_NEW - 1} cached decode steps "
            f"{dec['below_min']} of {dec['total']} below and {dec['above_max']} above.")
    else:
        clamp_text = ("time_step_limit = (0, inf) here (transformers' default; config.json writes the infinity as "
                      "`{\"__float__\": \"Infinity\"}`), so the clamp never changes anything.")
    decode_note = (
        "**dt clamp in decode steps:** transformers' chunked (prefill) path clamps dt, but its single-token decode "
        "step (`mamba2_selective_state_update`), like mamba_ssm's `Mamba2.step`, does not clamp at all. "
        "`tools/make_fixtures.py` patches the decode step to clamp as well, so that every token gets the same dt "
        "rule (rule 3) whether it is prefilled or decoded; `greedy_logits` come from that patched decode path and "
        "agree with full-sequence forwards over prompt + greedy tokens (max |diff| "
        f"{chk['decode_vs_nocache_logits_maxdiff']:.1e}).")
    if finite:
        un = dc["hf_unpatched_decode"]
        decode_note += (
            f" transformers as shipped (decode unclamped) gives `greedy_logits` that differ by up to "
            f"{un['greedy_logits_maxdiff']:.3g} (greedy ids {'the same' if un['greedy_ids_equal'] else 'DIFFERENT'}).")
    else:
        decode_note += " With this fixture's infinite limit the patch changes nothing."
    return f"""### Mamba2 mixer (d_inner = expand*hidden = {d_in} = num_heads {n_h} x head_dim {hd}, n_groups = {n_g}, d_state = {n_st}, d_conv = {k}, conv_dim = d_inner + 2*n_groups*d_state = {conv_dim})

1. `u` = mixer input [T, hidden] (the RMS-normed residual stream). `zxbcdt = in_proj.u` {in_bias} -> [T, d_inner + conv_dim + num_heads] = [T, {d_in + conv_dim + n_h}], split in this order: `z = [:, :{d_in}]` (gate), `xBC = [:, {d_in}:{d_in + conv_dim}]`, `dt_raw = [:, {d_in + conv_dim}:]` (one per head). Batch rows are independent.
2. `xBC = silu(conv(xBC))` over all {conv_dim} channels ({conv_bias}); then `x = xBC[:, :{d_in}]`, `B = xBC[:, {d_in}:{d_in + gn}]`, `C = xBC[:, {d_in + gn}:]`. Heads: `x[h, p] = x[h*{hd} + p]` (head h = channels h*{hd} .. h*{hd}+{hd - 1}); groups: `B[g, n] = B[g*{n_st} + n]`, same for C.
3. `dt[h] = clamp(softplus(dt_raw[h] + dt_bias[h]), min, max)` with (min, max) = `time_step_limit`: softplus first, then the clamp. {clamp_text}
4. `A[h] = -exp(A_log[h])`: ONE scalar per head (`A_log` [{n_h}]); `D` [{n_h}] is one scalar per head too.
5. Head h reads group `g(h) = h // (num_heads / n_groups) = h // {per}` ({groups_of_heads}). SSM state `s` [num_heads, head_dim, d_state] starting at 0: `s_t[h,p,n] = exp(dt_t[h]*A[h]) * s_{{t-1}}[h,p,n] + dt_t[h] * x_t[h,p] * B_t[g(h),n]`; `y_t[h,p] = sum_n s_t[h,p,n] * C_t[g(h),n] + D[h] * x_t[h,p]`. (transformers computes this chunkwise, the SSD form with `chunk_size` = {cfg.chunk_size} from config.json; the result is this recurrence up to float noise.) `y` is flattened back to d_inner channels as `y[h*{hd} + p]`.
6. Gated RMSNorm (`mixer.norm.weight` [{d_in}], eps = `layer_norm_epsilon` = {eps:g}): FIRST `y = y * silu(z)`, THEN RMS-normalise per group: {norm_groups}: `y[c] = y[c] / sqrt(mean_{{c' in group(c)}} y[c']^2 + eps) * norm.weight[c]`. (This is mamba_ssm's `RMSNormGated(group_size=d_inner/n_groups, norm_before_gate=False)`; transformers {c['meta']['transformers']}'s `MambaRMSNormGated` computes exactly this, checked by the script, so it needed no patch.)
7. `out = out_proj.y` {out_bias}.

{decode_note}

### Cache layout after the prompt (what `*_state_layer{{i}}` hold)

- `ssm_state_layer{{i}}[b, h, p, n]` = `s_T[h, p, n]` of step 5 after the last prompt token (index T-1), fp32; shape [batch, num_heads, head_dim, d_state].
- `conv_state_layer{{i}}[b, c, j]` = the conv INPUT (the raw `xBC` part of in_proj's output, channels {d_in}..{d_in + conv_dim - 1} of it{', including in_proj.bias' if cfg.use_bias else ''}, i.e. BEFORE conv, before conv bias and before silu; c = 0..{conv_dim - 1} covers x, then B, then C) of prompt position `T - {k} + j`, j = 0..{k - 1}: oldest first, and `[..., {k - 1}]` is the LAST prompt token itself (it is included). If T < d_conv the left part is zero.
- Decode step with new token input xBC_new: window = `concat(conv_state[..., 1:], xBC_new)` (length d_conv); conv output = `bias + sum_j weight[c,0,j]*window[j]`; the cache becomes that window. The SSM state is updated with exactly one step of rule 5 (dt clamped by rule 3, B, C of the new token)."""


def fields_mamba1(c):
    cfg, eps, tied = c["cfg"], c["eps"], c["cfg"].tie_word_embeddings
    falcon = cfg.model_type == "falcon_mamba"
    return (f"Fields the engine needs: `model_type`, `vocab_size`, `hidden_size`, `num_hidden_layers`, `state_size`, "
            f"`conv_kernel`, `expand`, `intermediate_size`, `time_step_rank`, `use_bias` ({str(cfg.use_bias).lower()}), "
            f"`use_conv_bias` ({str(cfg.use_conv_bias).lower()}), `tie_word_embeddings` ({str(tied).lower()}), "
            f"`layer_norm_epsilon` ({eps:g}), "
            + (f"`mixer_rms_eps` ({cfg.mixer_rms_eps:g}), " if falcon else "")
            + "`residual_in_fp32`, `hidden_act`. Fields like initializer_range, time_step_min/max/floor/scale/init_scheme, "
            "rescale_prenorm_residual, use_mambapy, use_associative_scan, use_cache only affect training/initialisation "
            "or HF internals. eos/pad/bos ids are HF defaults (none of them occurs in greedy_ids).")


def fields_mamba2(c):
    cfg, eps = c["cfg"], c["eps"]
    return (f"Fields the engine needs: `model_type`, `vocab_size`, `hidden_size`, `num_hidden_layers`, `state_size`, "
            f"`conv_kernel`, `expand` (d_inner = expand * hidden_size; Mamba2Config has no `intermediate_size`), "
            f"`num_heads`, `head_dim`, `n_groups`, `use_bias` ({str(cfg.use_bias).lower()}), "
            f"`use_conv_bias` ({str(cfg.use_conv_bias).lower()}), `tie_word_embeddings` "
            f"({str(cfg.tie_word_embeddings).lower()}), `layer_norm_epsilon` ({eps:g}, also the gated norm's), "
            f"`time_step_limit`, `residual_in_fp32`, `hidden_act`. transformers {c['meta']['transformers']} writes an "
            f"infinite limit as `{{\"__float__\": \"Infinity\"}}` (older writers and Python's json write a bare "
            f"`Infinity`, which is not JSON). `chunk_size` is only the length of transformers' SSD chunks (the result "
            f"does not depend on it beyond float noise); `time_step_rank` is not used by Mamba-2; initializer_range, "
            f"time_step_min/max/floor, rescale_prenorm_residual, use_cache only affect training/initialisation or HF "
            f"internals. eos/pad/bos ids are HF defaults (none of them occurs in greedy_ids).")


def mistake_notes_mamba1(c):
    return (f"`wrong_eps` uses eps {c['wrong_eps']:g}; `tied_head` uses the embeddings as the LM head; `*_reset_chunks` "
            f"restart the SSM state / conv window every {CHUNK} tokens.")


def mistake_notes_listed(c):
    """What the less obvious mistake names mean, for the mistakes in this fixture's table."""
    falcon = c["cfg"].model_type == "falcon_mamba"
    chunk = CHUNK if falcon else CHUNK_MAMBA2
    notes = {
        "wrong_eps": f"`wrong_eps` uses eps {c['wrong_eps']:g} in "
                     + ("the block and final norms" if falcon else "every norm"),
        "gated_norm_wrong_eps": f"`gated_norm_wrong_eps` uses eps {c['wrong_eps']:g} in the gated norm only",
        "tied_head": "`tied_head` uses the embeddings as the LM head",
        "ssm_reset_chunks": f"`*_reset_chunks` restart the SSM state / conv window every {chunk} tokens",
        "no_mixer_norms": "`no_mixer_norms` drops the three weightless norms (plain Mamba-1)",
        "no_dt_norm": "`no_dt_norm` / `no_bc_norms` drop the norm of dt_low / those of B and C",
        "mixer_eps_default": "`mixer_eps_default` uses eps 1e-06 (transformers' default mixer_rms_eps) in them",
        "dt_norm_after_proj": "`dt_norm_after_proj` normalises dt over d_inner after dt_proj instead of dt_low",
        "gate_after_norm": "`gate_after_norm` normalises y before multiplying by silu(z)",
        "norm_over_d_inner": "`norm_over_d_inner` normalises all d_inner channels as one group",
        "group_map_modulo": "`group_map_modulo` lets head h read group h % n_groups",
        "heads_interleaved": "`heads_interleaved` puts channel c in head c % num_heads",
        "no_dt_clamp": "`no_dt_clamp` ignores time_step_limit",
        "clamp_before_softplus": "`clamp_before_softplus` clamps dt_raw + dt_bias before the softplus",
        "z_after_xBC": "`z_after_xBC` reads in_proj's output as [xBC | z | dt]",
        "no_gated_norm_weight": "`no_gated_norm_weight` drops mixer.norm.weight",
        "no_norm_weight": "`no_norm_weight` drops the block and final norm weights",
    }
    present = c["chk"]["mutation_logit_maxdiff"]
    return "; ".join(text for name, text in notes.items() if name in present) + "."


PERTURB_TEXT = {
    "mamba": ("every tensor: +0.25 std Gaussian noise; then norm weights U(0.5, 1.5), A_log with exp(A_log) "
              "log-uniform in [0.3, 12], D = 1 + 0.5 N(0,1), conv/in_proj/out_proj biases 0.2 N(0,1), dt_proj.bias = "
              "softplus^-1 of a log-uniform dt in [0.01, 1], out_proj x3"),
    "mamba2": ("every tensor: +0.25 std Gaussian noise; then norm weights, the gated norm's `mixer.norm.weight` "
               "included, U(0.5, 1.5), A_log (one per head) with exp(A_log) log-uniform in [0.3, 12], D (one per "
               "head) = 1 + 0.5 N(0,1), conv/in_proj/out_proj biases 0.2 N(0,1), dt_bias = softplus^-1 of a "
               "log-uniform dt in [0.01, 1], out_proj x3"),
}


def write_readme(out_dir, name, spec, cfg, meta, config_text):
    arch = ARCHS[cfg.model_type]
    b, t_len, v = spec["batch"], spec["prompt_len"], cfg.vocab_size
    k, eps = cfg.conv_kernel, cfg.layer_norm_epsilon
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
    mut = ", ".join(f"{kk} {vv:.3g}" if isinstance(vv, float) else f"{kk} {vv}"
                    for kk, vv in chk["mutation_logit_maxdiff"].items())
    c = dict(cfg=cfg, k=k, eps=eps, chk=chk, meta=meta, wrong_eps=1e-5 if eps != 1e-5 else 1e-6)
    if cfg.model_type == "mamba2":
        state_shapes = (f"[{b}, conv_dim={cfg.num_heads * cfg.head_dim + 2 * cfg.n_groups * cfg.state_size}, d_conv={k}]",
                        f"[{b}, num_heads={cfg.num_heads}, head_dim={cfg.head_dim}, d_state={cfg.state_size}]")
    else:
        state_shapes = (f"[{b}, d_inner={cfg.intermediate_size}, d_conv={k}]",
                        f"[{b}, d_inner={cfg.intermediate_size}, d_state={cfg.state_size}]")
    text = f"""# Fixture `{name}` ({cfg.model_type}, oracle: HF transformers {meta['transformers']}, torch {meta['torch']})

Seeded random-init model whose parameters were all perturbed with seeded noise ({arch.perturb_text}) - the numbers carry no meaning, they only pin down the arithmetic. Oracle = HF pure-PyTorch path (no mamba_ssm / causal_conv1d kernels), float32, CPU, single thread. Made by `tools/make_fixtures.py` (exercises: {spec['what']}).

## Files

- `config.json` - HF config (`model_type` = `{cfg.model_type}`), written by `save_pretrained`.
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
- `conv_state_layer{fmt_list(layers)}` float32 {state_shapes[0]} and `ssm_state_layer{fmt_list(layers)}` float32 {state_shapes[1]}: HF cache contents right after the prompt prefill (before any generated token), for the first and the last layer. Layout below.

## Exact semantics (all float32; the oracle was cross-checked against an independent float64 NumPy re-implementation of exactly this text: max |diff| logits {chk['ref_float64_logits_maxdiff']:.2e}, states {chk['ref_float64_state_maxdiff']:.2e})

Notation: `W.x` = `x @ W.T` (PyTorch nn.Linear, weight [out, in]). `RMSNorm(x; w, eps) = x / sqrt(mean(x^2 over last dim) + eps) * w`. `silu(x) = x * sigmoid(x)`. `softplus(x) = log(1 + exp(x))` (torch returns x itself when x > 20).

Model: `h = embeddings[input_ids]`; for each layer: `h = h + Mixer(RMSNorm(h; layers.i.norm.weight, eps={eps:g}))` (residual kept in fp32, `residual_in_fp32=true`); then `h = RMSNorm(h; norm_f.weight, eps={eps:g})`, `logits = lm_head.h` with {head_eq}. No positional information, no dropout, no final softcap/scaling. **eps = {eps:g}** (`layer_norm_epsilon`) in every norm{arch.eps_note}.

Depthwise causal conv (`conv1d.weight` [C, 1, k], PyTorch cross-correlation, NOT flipped): `conv(x)_t[c] = bias[c] + sum_{{j=0}}^{{k-1}} weight[c, 0, j] * x_{{t-k+1+j}}[c]` with x_{{<0}} = 0, so `weight[c,0,k-1]` multiplies the current token. Here k = d_conv = {k}.

{arch.readme(c)}

## config.json (verbatim)

```json
{config_text.rstrip()}
```

{arch.fields(c)}

Seed used: {meta['seed_used']} (build with torch.manual_seed(seed), perturb with Generator(10000+seed), input ids with Generator(20000+seed)). Reload check: from_pretrained + forward reproduces `logits` with max |diff| {chk['reload_logits_maxdiff']:.1e}.
Discrimination check: the float64 reference with one deliberate mistake each changes `logits` by (max abs): {mut}. ({arch.mistake_notes(c)})
Suggested tolerances for an fp32 engine: logits / states max abs diff ~1e-4 (relative to their scale), greedy_ids exact.
"""
    with open(os.path.join(out_dir, "README.md"), "w") as f:
        f.write(text)


# ----------------------------------------------------------------------------------------
# family-specific checks recorded in expected.json
# ----------------------------------------------------------------------------------------
def extra_checks_mamba1(model, ids, res, stats):
    if model.config.model_type == "mamba":
        return {}  # the Mamba-1 fixtures' expected.json keeps its original keys
    return {"decode_vs_nocache_logits_maxdiff": res["_decode_vs_nocache_logits"]}


@torch.no_grad()
def extra_checks_mamba2(model, ids, res, stats):
    """The cached decode path against full-sequence forwards, and what the dt clamp touched:
    over the prompt (float64 reference), in the decode steps, and how far transformers'
    unpatched (unclamped) decode step would move greedy_logits."""
    n_new = res["greedy_ids"].shape[1]
    for key in ("seen", "below", "above"):
        MAMBA2_DECODE[key] = 0
    new_ids, new_logits = greedy(model, ids, n_new)
    assert torch.equal(new_ids, res["greedy_ids"]) and torch.equal(new_logits, res["greedy_logits"])
    decode = {"total": MAMBA2_DECODE["seen"], "below_min": MAMBA2_DECODE["below"],
              "above_max": MAMBA2_DECODE["above"]}
    MAMBA2_DECODE["on"] = False
    try:
        plain_ids, plain_logits = greedy(model, ids, n_new)
    finally:
        MAMBA2_DECODE["on"] = True
    return {
        "decode_vs_nocache_logits_maxdiff": res["_decode_vs_nocache_logits"],
        "dt_clamp": {
            "prefill": {"total": stats["dt_total"], "below_min": stats["dt_below_min"],
                        "above_max": stats["dt_above_max"]},
            "decode": decode,
            "hf_unpatched_decode": {
                "greedy_logits_maxdiff": float((plain_logits - res["greedy_logits"]).abs().max()),
                "greedy_ids_equal": bool(torch.equal(plain_ids, res["greedy_ids"]))},
        },
    }


# ----------------------------------------------------------------------------------------
# building a fixture
# ----------------------------------------------------------------------------------------
def build_fixture(name, out_root):
    spec = FIXTURES[name]
    arch = ARCHS[spec["arch"]]
    cfg = make_config(spec)
    layers = state_layers_for(cfg.num_hidden_layers)
    specials = {i for i in (cfg.bos_token_id, cfg.eos_token_id, cfg.pad_token_id) if i is not None}
    for seed in range(spec["seed"], spec["seed"] + MAX_SEED_TRIES):
        model = build_model(spec, seed)
        if cfg.model_type == "mamba2":
            require_grouped_gated_norm(model)
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
    print(f"{name}: seed {seed}, min greedy margin {res['_min_margin']:.4f}, decode vs full-sequence "
          f"logits {res['_decode_vs_nocache_logits']:.1e}", flush=True)
    if res["_decode_vs_nocache_logits"] > CHECK_TOL:
        raise SystemExit(f"{name}: the cached decode path disagrees with full-sequence forwards")

    stats = {}
    d_logits, d_state, mut = reference_checks(model, ids, res, layers, stats)
    print(f"{name}: float64 reference vs oracle: logits {d_logits:.2e}, states {d_state:.2e}", flush=True)
    weakest = min(((k, v) for k, v in mut.items() if isinstance(v, float)), key=lambda kv: kv[1])
    print(f"{name}: weakest deliberate mistake {weakest[0]} moves logits by {weakest[1]:.3g}", flush=True)
    if d_logits > 1e-3 or d_state > 1e-3:
        raise SystemExit(f"{name}: float64 reference disagrees with the oracle")
    extra = arch.extra_checks(model, ids, res, stats)
    if "dt_clamp" in extra:
        print(f"{name}: dt clamp {json.dumps(extra['dt_clamp'])}", flush=True)
        pre = extra["dt_clamp"]["prefill"]
        if tuple(cfg.time_step_limit) != (0.0, math.inf) and pre["below_min"] + pre["above_max"] == 0:
            raise SystemExit(f"{name}: time_step_limit {cfg.time_step_limit} clamps no dt value of the prompt")

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
                            {"generator": "tools/make_fixtures.py", "torch": torch.__version__,
                             "arch": cfg.model_type, "transformers": transformers.__version__, "fixture": name})

    reloaded = load_model(out_dir)
    with torch.no_grad():
        reload_diff = float((reloaded(input_ids=ids, use_cache=False).logits.float() - res["logits"]).abs().max())

    logits = res["logits"]
    meta = {
        "fixture": name,
        "arch": cfg.model_type,
        "model_class": arch.model_cls.__name__,
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
            **extra,
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
    with open(os.path.join(folder, "config.json")) as f:
        model_type = json.load(f).get("model_type")
    if model_type not in ARCHS:
        raise SystemExit(f"{folder}: config.json's model_type {model_type!r} is not one of {sorted(ARCHS)}")
    model_cls = ARCHS[model_type].model_cls
    model, info = model_cls.from_pretrained(folder, dtype=torch.float32, output_loading_info=True)
    problems = {k: v for k, v in info.items() if v and k in ("missing_keys", "unexpected_keys", "mismatched_keys")}
    if problems:
        raise SystemExit(f"{folder}: weights do not load cleanly into {model_cls.__name__}: {problems}")
    model.generation_config.eos_token_id = None
    return model.eval()


def check_fixture(folder, tol=CHECK_TOL):
    """Recompute a fixture folder with transformers; returns True when everything matches."""
    model = load_model(folder)
    cfg = model.config
    if cfg.model_type == "mamba2":
        require_grouped_gated_norm(model)
    want = load_file(os.path.join(folder, "expected.safetensors"))
    ids = want["input_ids"]
    n_new = want["greedy_ids"].shape[1]
    layers = sorted(int(k[len("ssm_state_layer"):]) for k in want if k.startswith("ssm_state_layer"))
    got = oracle(model, ids, n_new, layers)
    name = os.path.basename(os.path.normpath(folder))
    ok = True
    print(f"{name}: {cfg.model_type}, {cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}, "
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
          f"min greedy margin {got['_min_margin']:.4f}; decode vs full-sequence logits "
          f"{got['_decode_vs_nocache_logits']:.1e}")
    ok &= got["_generate_equals_nocache_argmax"]

    # the README's equations in float64 against the stored outputs
    weights = load_file(os.path.join(folder, "model.safetensors"))
    _, d_logits, d_state = reference_distance(weights, cfg, ids, want, layers)
    ref_ok = d_logits <= 1e-3 and d_state <= 1e-3
    ok &= ref_ok
    print(f"  float64 reference vs stored: logits {d_logits:.2e}, states {d_state:.2e}  {'ok' if ref_ok else 'FAIL'}")
    print(f"{name}: {'PASS' if ok else 'FAIL'}", flush=True)
    return ok


# ----------------------------------------------------------------------------------------
# the families
# ----------------------------------------------------------------------------------------
class Arch:
    """What differs between the families: HF classes, the float64 mixer, the deliberate
    mistakes, the family's README sections and its extra checks."""

    def __init__(self, config_cls, model_cls, mixer, mistakes, readme, fields, mistake_notes,
                 extra_checks, perturb_text, eps_note=""):
        self.config_cls, self.model_cls = config_cls, model_cls
        self.mixer, self.mistakes, self.extra_checks = mixer, mistakes, extra_checks
        self.readme, self.fields, self.mistake_notes = readme, fields, mistake_notes
        self.perturb_text, self.eps_note = perturb_text, eps_note


ARCHS = {
    "mamba": Arch(MambaConfig, MambaForCausalLM, mixer_mamba1, mistakes_mamba1, readme_mamba1,
                  fields_mamba1, mistake_notes_mamba1, extra_checks_mamba1, PERTURB_TEXT["mamba"]),
    "falcon_mamba": Arch(FalconMambaConfig, FalconMambaForCausalLM, mixer_mamba1, mistakes_mamba1,
                         readme_mamba1, fields_mamba1, mistake_notes_listed, extra_checks_mamba1,
                         PERTURB_TEXT["mamba"],
                         eps_note=" except the weightless norms inside the mixer, which use `mixer_rms_eps` (rule 3b)"),
    "mamba2": Arch(Mamba2Config, Mamba2ForCausalLM, mixer_mamba2, mistakes_mamba2, readme_mamba2,
                   fields_mamba2, mistake_notes_listed, extra_checks_mamba2, PERTURB_TEXT["mamba2"],
                   eps_note=", the mixer's gated norm included"),
}


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
            print(f"{name}: {spec['arch']}, batch {spec['batch']} x {spec['prompt_len']}, seed {spec['seed']}: "
                  f"{spec['what']}")
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
