#!/usr/bin/env python3
"""The independent reference of hokusai's model: tiny GPT-2 and LLaMA decoders written the
standard PyTorch way (nn.Module, nn.Linear, nn.LayerNorm, nn.Embedding, the causal softmax
attention written out, autograd for the gradients), evaluated in float64 on float32 parameters, and saved as the
fixture tests/model/pytorch_parity_<family>.safetensors that test_pytorch_parity compares
hokusai's forward and backward to.

Regenerate (needs Debian's python3-torch: scripts/install-deps.sh --torch):
    python3 tests/model/pytorch_reference.py tests/model

Each fixture holds, in safetensors (written here with struct + json: no extra package):
  param.<name>   the parameters under hokusai's names and layouts (F32), mapped from the
                 modules' own below (to_hokusai), unpadded vocabulary rows only;
  tokens, targets (I32, B x T; one target is -1: ignored, as torch's ignore_index);
  loss           the mean cross-entropy over the valid targets (F64, [1]);
  logits         (F64, B x T x V);
  grad.<name>    d loss / d param for every parameter (F32, hokusai's layout);
  __metadata__   the model configuration (hokusai config keys) and the generator's versions.
"""
import json
import math
import struct
import sys
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

B, T = 2, 16
CONFIGS = {
    "gpt2": dict(family="gpt2", layers=2, hidden=32, heads=4, ffn_hidden=128, vocab_size=50, max_seq_len=T,
                 tie_embeddings=True, norm_eps=1e-5, rope_theta=10000.0),
    "llama": dict(family="llama", layers=2, hidden=32, heads=4, ffn_hidden=96, vocab_size=50, max_seq_len=T,
                  tie_embeddings=False, norm_eps=1e-5, rope_theta=10000.0),
    # grouped-query attention: 4 query heads share 2 key/value heads (HF's repeat_kv)
    "llama_gqa": dict(family="llama", layers=2, hidden=32, heads=4, kv_heads=2, ffn_hidden=96, vocab_size=50,
                      max_seq_len=T, tie_embeddings=False, norm_eps=1e-5, rope_theta=500000.0),
}


def causal_attention(q, k, v):
    """q, k, v: (B, heads, T, head size). Softmax(q k^T / sqrt(d)) v with a causal mask."""
    t = q.shape[-2]
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    mask = torch.triu(torch.ones(t, t, dtype=torch.bool), diagonal=1)
    return scores.masked_fill(mask, float("-inf")).softmax(dim=-1) @ v


class GPT2Block(nn.Module):
    def __init__(self, c, heads, f, eps):
        super().__init__()
        self.heads = heads
        self.ln_1 = nn.LayerNorm(c, eps=eps)
        self.c_attn = nn.Linear(c, 3 * c)
        self.c_proj = nn.Linear(c, c)
        self.ln_2 = nn.LayerNorm(c, eps=eps)
        self.c_fc = nn.Linear(c, f)
        self.mlp_proj = nn.Linear(f, c)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=-1)
        split = lambda y: y.view(b, t, self.heads, c // self.heads).transpose(1, 2)
        y = causal_attention(split(q), split(k), split(v)).transpose(1, 2).reshape(b, t, c)
        x = x + self.c_proj(y)
        return x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))


class GPT2(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["hidden"]
        self.wte = nn.Embedding(cfg["vocab_size"], c)
        self.wpe = nn.Embedding(cfg["max_seq_len"], c)
        self.h = nn.ModuleList(GPT2Block(c, cfg["heads"], cfg["ffn_hidden"], cfg["norm_eps"]) for _ in range(cfg["layers"]))
        self.ln_f = nn.LayerNorm(c, eps=cfg["norm_eps"])

    def forward(self, tokens):
        x = self.wte(tokens) + self.wpe(torch.arange(tokens.shape[1]))
        for block in self.h:
            x = block(x)
        return self.ln_f(x) @ self.wte.weight.T  # tied output projection


class RMSNorm(nn.Module):
    def __init__(self, c, eps):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(c))

    def forward(self, x):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.eps) * self.weight


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def rope(x, theta):
    """Rotary embedding of (B, heads, T, d) in the rotate-half convention (GPT-NeoX, HF LLaMA)."""
    d, t = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / theta ** (torch.arange(0, d, 2, dtype=torch.float64) / d)
    angles = torch.outer(torch.arange(t, dtype=torch.float64), inv_freq)
    angles = torch.cat((angles, angles), dim=-1).to(x.dtype)
    return x * angles.cos() + rotate_half(x) * angles.sin()


class LlamaBlock(nn.Module):
    def __init__(self, c, heads, kv_heads, f, eps, theta):
        super().__init__()
        self.heads, self.kv_heads, self.theta = heads, kv_heads, theta
        self.input_layernorm = RMSNorm(c, eps)
        self.q_proj = nn.Linear(c, c, bias=False)
        self.k_proj = nn.Linear(c, c // heads * kv_heads, bias=False)
        self.v_proj = nn.Linear(c, c // heads * kv_heads, bias=False)
        self.o_proj = nn.Linear(c, c, bias=False)
        self.post_attention_layernorm = RMSNorm(c, eps)
        self.gate_proj = nn.Linear(c, f, bias=False)
        self.up_proj = nn.Linear(c, f, bias=False)
        self.down_proj = nn.Linear(f, c, bias=False)

    def forward(self, x):
        b, t, c = x.shape
        h = self.input_layernorm(x)
        split = lambda y, n: y.view(b, t, n, c // self.heads).transpose(1, 2)
        q = split(self.q_proj(h), self.heads)
        k, v = split(self.k_proj(h), self.kv_heads), split(self.v_proj(h), self.kv_heads)
        # each key/value head serves heads/kv_heads consecutive query heads (HF's repeat_kv)
        share = lambda y: y.repeat_interleave(self.heads // self.kv_heads, dim=1)
        y = causal_attention(rope(q, self.theta), share(rope(k, self.theta)), share(v))
        y = y.transpose(1, 2).reshape(b, t, c)
        x = x + self.o_proj(y)
        h = self.post_attention_layernorm(x)
        return x + self.down_proj(F.silu(self.gate_proj(h)) * self.up_proj(h))


class Llama(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        c = cfg["hidden"]
        self.embed_tokens = nn.Embedding(cfg["vocab_size"], c)
        self.layers = nn.ModuleList(LlamaBlock(c, cfg["heads"], cfg.get("kv_heads", cfg["heads"]), cfg["ffn_hidden"],
                                               cfg["norm_eps"], cfg["rope_theta"]) for _ in range(cfg["layers"]))
        self.norm = RMSNorm(c, cfg["norm_eps"])
        self.lm_head = nn.Linear(c, cfg["vocab_size"], bias=False)

    def forward(self, tokens):
        x = self.embed_tokens(tokens)
        for block in self.layers:
            x = block(x)
        return self.lm_head(self.norm(x))


def to_hokusai(model, family, of):
    """hokusai's parameter names and layouts from the module's tensors (`of`: the tensor or its
    gradient). hokusai stores matrices (out, in) like nn.Linear, fuses q|k|v and gate|up along the
    output axis, and names layers layers.<i>.<leaf>."""
    out = {}
    if family == "gpt2":
        out["wte"], out["wpe"] = of(model.wte.weight), of(model.wpe.weight)
        for i, blk in enumerate(model.h):
            p = f"layers.{i}."
            out[p + "ln1_w"], out[p + "ln1_b"] = of(blk.ln_1.weight), of(blk.ln_1.bias)
            out[p + "qkv_w"], out[p + "qkv_b"] = of(blk.c_attn.weight), of(blk.c_attn.bias)
            out[p + "proj_w"], out[p + "proj_b"] = of(blk.c_proj.weight), of(blk.c_proj.bias)
            out[p + "ln2_w"], out[p + "ln2_b"] = of(blk.ln_2.weight), of(blk.ln_2.bias)
            out[p + "fc_w"], out[p + "fc_b"] = of(blk.c_fc.weight), of(blk.c_fc.bias)
            out[p + "fcproj_w"], out[p + "fcproj_b"] = of(blk.mlp_proj.weight), of(blk.mlp_proj.bias)
        out["lnf_w"], out["lnf_b"] = of(model.ln_f.weight), of(model.ln_f.bias)
    else:
        out["wte"] = of(model.embed_tokens.weight)
        for i, blk in enumerate(model.layers):
            p = f"layers.{i}."
            out[p + "ln1_w"] = of(blk.input_layernorm.weight)
            out[p + "qkv_w"] = torch.cat([of(blk.q_proj.weight), of(blk.k_proj.weight), of(blk.v_proj.weight)])
            out[p + "proj_w"] = of(blk.o_proj.weight)
            out[p + "ln2_w"] = of(blk.post_attention_layernorm.weight)
            out[p + "fc_w"] = torch.cat([of(blk.gate_proj.weight), of(blk.up_proj.weight)])
            out[p + "fcproj_w"] = of(blk.down_proj.weight)
        out["lnf_w"] = of(model.norm.weight)
        out["lm_head"] = of(model.lm_head.weight)
    return out


def write_safetensors(path, tensors, metadata):
    """tensors: name -> (dtype name, torch tensor), written in the given order."""
    codes = {"F32": ("<f", torch.float32), "F64": ("<d", torch.float64), "I32": ("<i", torch.int32)}
    header, blobs, at = {"__metadata__": metadata}, [], 0
    for name, (dtype, t) in tensors.items():
        fmt, torch_dtype = codes[dtype]
        flat = t.detach().to(torch_dtype).contiguous().reshape(-1).tolist()
        blob = struct.pack(f"<{len(flat)}{fmt[1]}", *flat)
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [at, at + len(blob)]}
        blobs.append(blob)
        at += len(blob)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for blob in blobs:
            f.write(blob)


def make_fixture(key, out_dir):
    cfg = CONFIGS[key]
    family = cfg["family"]
    torch.manual_seed(20261201)
    model = (GPT2 if family == "gpt2" else Llama)(cfg)
    with torch.no_grad():  # every parameter random (norm gains around 1), so a swapped one shows
        for name, p in model.named_parameters():
            if p.dim() == 1 and ("ln" in name or "norm" in name) and name.endswith("weight"):
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            else:
                p.copy_(0.05 * torch.randn_like(p))
    params32 = {k: v.detach().clone() for k, v in to_hokusai(model, family, lambda t: t).items()}
    model = model.double()  # float64 arithmetic on the float32 values
    tokens = torch.randint(0, cfg["vocab_size"], (B, T))
    targets = torch.randint(0, cfg["vocab_size"], (B, T))
    targets[1, 3] = -1  # ignored
    logits = model(tokens)
    loss = F.cross_entropy(logits.reshape(-1, cfg["vocab_size"]), targets.reshape(-1), ignore_index=-1)
    loss.backward()
    grads = to_hokusai(model, family, lambda t: t.grad)
    tensors = {}
    for name, value in params32.items():
        tensors["param." + name] = ("F32", value)
    tensors["tokens"] = ("I32", tokens)
    tensors["targets"] = ("I32", targets)
    tensors["loss"] = ("F64", loss.detach().reshape(1))
    tensors["logits"] = ("F64", logits.detach())
    for name, g in grads.items():
        tensors["grad." + name] = ("F32", g)
    metadata = {"model." + k: str(v).lower() if isinstance(v, bool) else str(v) for k, v in cfg.items()}
    metadata.update({"batch": str(B), "seq_len": str(T), "generator": "tests/model/pytorch_reference.py",
                     "torch": torch.__version__})
    path = Path(out_dir) / f"pytorch_parity_{key}.safetensors"
    write_safetensors(path, tensors, metadata)
    print(f"{path}: loss {loss.item():.6f}, {sum(v.numel() for v in params32.values())} parameters")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit("usage: pytorch_reference.py OUT_DIR")
    for key in CONFIGS:
        make_fixture(key, sys.argv[1])
