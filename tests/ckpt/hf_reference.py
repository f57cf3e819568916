#!/usr/bin/env python3
"""hf_reference.py EXPORT_DIR LOGITS_FILE TOLERANCE

An independent check of `hokusai export`, written without hokusai's code (numpy only: Debian has
no `safetensors` or `transformers` package). It reads the exported directory by the rules of the
formats (safetensors: an 8-byte little-endian header length, a JSON header of dtype / shape /
data_offsets, tensors back to back, `__metadata__`; sharded through model.safetensors.index.json;
config.json of GPT2LMHeadModel or LlamaForCausalLM), computes the logits of the token ids on the
first line of LOGITS_FILE with the Hugging Face conventions (GPT-2: Conv1D weights stored
(in, out), fused c_attn [q|k|v], tanh GELU; LLaMA: separate (out, in) projections, rotate-half
rotary embedding, RMSNorm, SwiGLU, grouped-query heads), in float64, and compares them with the
logits hokusai computed (`hokusai generate RUN --prompt ... --logits LOGITS_FILE`): the largest
difference over the largest logit must be at most TOLERANCE. Exits 1 naming what differs.
"""
import json
import math
import os
import struct
import sys

import numpy as np


def fail(msg):
    print(f"hf_reference.py: FAIL: {msg}", file=sys.stderr)
    sys.exit(1)


def read_safetensors(path):
    data = open(path, "rb").read()
    if len(data) < 8:
        fail(f"{path}: shorter than the 8-byte header length")
    (n,) = struct.unpack("<Q", data[:8])
    if 8 + n > len(data):
        fail(f"{path}: header length {n} runs past the end of the file ({len(data)} bytes)")
    header = json.loads(data[8:8 + n].decode("utf-8"))
    meta = header.pop("__metadata__", {})
    if meta.get("format") != "pt":
        fail(f"{path}: __metadata__.format is {meta.get('format')!r}, expected 'pt'")
    buf = data[8 + n:]
    spans, out = [], {}
    for name, info in header.items():
        begin, end = info["data_offsets"]
        dtype, shape = info["dtype"], info["shape"]
        size = {"F32": 4, "BF16": 2, "F16": 2}.get(dtype)
        if size is None:
            fail(f"{path}: tensor {name} has dtype {dtype}")
        if end - begin != size * int(np.prod(shape, dtype=np.int64)) or end > len(buf):
            fail(f"{path}: tensor {name}: data_offsets {begin}..{end} do not hold {shape} {dtype}")
        raw = np.frombuffer(buf[begin:end], dtype="<u2" if size == 2 else "<f4")
        if dtype == "BF16":
            arr = (raw.astype(np.uint32) << 16).view(np.float32)
        elif dtype == "F16":
            arr = raw.view("<f2").astype(np.float32)
        else:
            arr = raw
        out[name] = arr.astype(np.float64).reshape(shape)
        spans.append((begin, end))
    spans.sort()
    pos = 0
    for begin, end in spans:  # the buffer exactly covered, no holes or overlaps
        if begin != pos:
            fail(f"{path}: the tensors leave a hole or overlap at byte {pos}")
        pos = end
    if pos != len(buf):
        fail(f"{path}: {len(buf) - pos} bytes after the last tensor")
    return out


def load(export_dir):
    index = os.path.join(export_dir, "model.safetensors.index.json")
    if os.path.exists(index):
        weight_map = json.load(open(index))["weight_map"]
        tensors = {}
        for f in sorted(set(weight_map.values())):
            part = read_safetensors(os.path.join(export_dir, f))
            for name in part:
                if weight_map.get(name) != f:
                    fail(f"{f}: tensor {name} is not where the index says ({weight_map.get(name)})")
            tensors.update(part)
        missing = set(weight_map) - set(tensors)
        if missing:
            fail(f"index names tensors no shard holds: {sorted(missing)[:3]}")
        return tensors
    return read_safetensors(os.path.join(export_dir, "model.safetensors"))


def softmax_attention(q, k, v):
    # q, k, v: (heads, T, hs); causal
    T = q.shape[1]
    att = q @ k.transpose(0, 2, 1) / math.sqrt(q.shape[2])
    att = att + np.triu(np.full((T, T), -np.inf), 1)
    att = np.exp(att - att.max(axis=-1, keepdims=True))
    att /= att.sum(axis=-1, keepdims=True)
    return att @ v


def gpt2_logits(cfg, w, ids):
    T, C, nh = len(ids), cfg["n_embd"], cfg["n_head"]
    hs = C // nh

    def ln(x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + cfg["layer_norm_epsilon"]) * w[p + ".weight"] + w[p + ".bias"]

    def gelu_new(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    x = w["transformer.wte.weight"][ids] + w["transformer.wpe.weight"][np.arange(T)]
    for l in range(cfg["n_layer"]):
        p = f"transformer.h.{l}."
        h = ln(x, p + "ln_1")
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]  # Conv1D: (in, out)
        q, k, v = (qkv[:, i * C:(i + 1) * C].reshape(T, nh, hs).transpose(1, 0, 2) for i in range(3))
        y = softmax_attention(q, k, v).transpose(1, 0, 2).reshape(T, C)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = ln(x, p + "ln_2")
        x = x + gelu_new(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"]) @ w[p + "mlp.c_proj.weight"] \
            + w[p + "mlp.c_proj.bias"]
    x = ln(x, "transformer.ln_f")
    head = w["transformer.wte.weight"] if cfg.get("tie_word_embeddings", True) else w["lm_head.weight"]
    return x @ head.T


def llama_logits(cfg, w, ids):
    T, C, nh = len(ids), cfg["hidden_size"], cfg["num_attention_heads"]
    nkv = cfg.get("num_key_value_heads", nh)
    hs = C // nh
    eps, theta = cfg["rms_norm_eps"], cfg.get("rope_theta", 10000.0)

    def rms(x, p):
        return x / np.sqrt((x ** 2).mean(-1, keepdims=True) + eps) * w[p]

    inv_freq = theta ** (-np.arange(0, hs, 2, dtype=np.float64) / hs)
    ang = np.outer(np.arange(T, dtype=np.float64), inv_freq)
    cos, sin = np.cos(np.concatenate([ang, ang], -1)), np.sin(np.concatenate([ang, ang], -1))

    def rope(x):  # (heads, T, hs), rotate-half
        x1, x2 = x[..., :hs // 2], x[..., hs // 2:]
        return x * cos + np.concatenate([-x2, x1], -1) * sin

    x = w["model.embed_tokens.weight"][ids]
    for l in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{l}."
        h = rms(x, p + "input_layernorm.weight")
        q = (h @ w[p + "self_attn.q_proj.weight"].T).reshape(T, nh, hs).transpose(1, 0, 2)
        k = (h @ w[p + "self_attn.k_proj.weight"].T).reshape(T, nkv, hs).transpose(1, 0, 2)
        v = (h @ w[p + "self_attn.v_proj.weight"].T).reshape(T, nkv, hs).transpose(1, 0, 2)
        k, v = np.repeat(k, nh // nkv, 0), np.repeat(v, nh // nkv, 0)
        y = softmax_attention(rope(q), rope(k), v).transpose(1, 0, 2).reshape(T, C)
        x = x + y @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, p + "post_attention_layernorm.weight")
        g = h @ w[p + "mlp.gate_proj.weight"].T
        x = x + (g / (1.0 + np.exp(-g)) * (h @ w[p + "mlp.up_proj.weight"].T)) @ w[p + "mlp.down_proj.weight"].T
    x = rms(x, "model.norm.weight")
    head = w["model.embed_tokens.weight"] if cfg.get("tie_word_embeddings", False) else w["lm_head.weight"]
    return x @ head.T


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    export_dir, logits_file, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    cfg = json.load(open(os.path.join(export_dir, "config.json")))
    w = load(export_dir)
    lines = open(logits_file).read().splitlines()
    if not lines[0].startswith("# tokens"):
        fail(f"{logits_file}: first line is not '# tokens ...'")
    ids = [int(t) for t in lines[0].split()[2:]]
    ours = np.array([[float(v) for v in line.split()] for line in lines[1:]])
    arch = cfg["architectures"][0]
    ref = gpt2_logits(cfg, w, ids) if arch == "GPT2LMHeadModel" else llama_logits(cfg, w, ids)
    if ref.shape != ours.shape:
        fail(f"logits shape {ours.shape} from hokusai, {ref.shape} from the export (vocab_size {cfg['vocab_size']})")
    err = np.abs(ref - ours).max() / np.abs(ref).max()
    print(f"hf_reference.py: {arch}, {len(w)} tensors, {len(ids)} tokens: max |hokusai - reference| / max |logit| "
          f"= {err:.2e} (tolerance {tol:g})")
    if not err <= tol:
        fail(f"logits differ by {err:.2e} relative, more than {tol:g}")


main()
