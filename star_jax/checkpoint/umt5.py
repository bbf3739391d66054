"""umT5 encoder weights -> Flax params of `star_jax.text.umt5.UMT5Encoder`.

    params, cfg = load_umt5_checkpoint("Wan2.1-T2V-1.3B/models_t5_umt5-xxl-enc-bf16.pth")
    params, cfg = load_umt5_checkpoint("umt5-xxl/")    # transformers UMT5EncoderModel safetensors
    params, cfg = load_umt5_checkpoint("Wan2.1-T2V-1.3B-Diffusers/")   # its text_encoder/ subfolder

Two namings, told apart by their keys:
- Wan's `wan/modules/t5.py` (the published `models_t5_umt5-xxl-enc-bf16.pth`, a torch pickle):
  `token_embedding.weight`, `blocks.N.norm1.weight`, `blocks.N.attn.{q,k,v,o}.weight`,
  `blocks.N.norm2.weight`, `blocks.N.ffn.{gate.0,fc1,fc2}.weight`,
  `blocks.N.pos_embedding.embedding.weight`, `norm.weight`;
- transformers' `UMT5EncoderModel` (`shared.weight` / `encoder.embed_tokens.weight`,
  `encoder.block.N.layer.0.SelfAttention.q.weight`, `...relative_attention_bias.weight`,
  `encoder.block.N.layer.1.DenseReluDense.{wi_0,wi_1,wo}.weight`, `encoder.final_layer_norm.weight`);
  a full encoder-decoder checkpoint's `decoder.*` and `lm_head.*` are skipped.
The sizes are read from the tensors (max_distance, which no tensor holds, is 128 unless a
transformers `config.json` beside the weights says otherwise). The converted tree is checked
against `jax.eval_shape` of the model; every missing, unexpected or mis-shaped tensor is listed.
bf16 storage is kept (as `ml_dtypes.bfloat16`) unless `dtype` is given.
"""

from __future__ import annotations

import json
import os
import re

import numpy as np

from star_jax.checkpoint.convert import CheckpointError, _listing, check_tree_shapes, read_safetensors
from star_jax.checkpoint.storage import read_torch
from star_jax.text.umt5 import UMT5Config, abstract_umt5_params

WAN_T5_FILE = "models_t5_umt5-xxl-enc-bf16.pth"

_HF_TO_WAN = (  # regex over transformers names -> Wan names
    (r"^(shared|encoder\.embed_tokens)\.weight$", "token_embedding.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.layer_norm\.weight$", r"blocks.\1.norm1.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.([qkvo])\.weight$", r"blocks.\1.attn.\2.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.0\.SelfAttention\.relative_attention_bias\.weight$",
     r"blocks.\1.pos_embedding.embedding.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.layer_norm\.weight$", r"blocks.\1.norm2.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_0\.weight$", r"blocks.\1.ffn.gate.0.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wi_1\.weight$", r"blocks.\1.ffn.fc1.weight"),
    (r"^encoder\.block\.(\d+)\.layer\.1\.DenseReluDense\.wo\.weight$", r"blocks.\1.ffn.fc2.weight"),
    (r"^encoder\.final_layer_norm\.weight$", "norm.weight"),
)

# Wan name inside block N -> Flax path under params["blocks"], and whether it is a torch Linear
_BLOCK = (("norm1.weight", ("norm1", "weight"), False), ("attn.q.weight", ("attn", "q", "kernel"), True),
          ("attn.k.weight", ("attn", "k", "kernel"), True), ("attn.v.weight", ("attn", "v", "kernel"), True),
          ("attn.o.weight", ("attn", "o", "kernel"), True), ("norm2.weight", ("norm2", "weight"), False),
          ("ffn.gate.0.weight", ("ffn", "gate", "kernel"), True), ("ffn.fc1.weight", ("ffn", "fc1", "kernel"), True),
          ("ffn.fc2.weight", ("ffn", "fc2", "kernel"), True),
          ("pos_embedding.embedding.weight", ("pos_embedding",), False))


def hf_to_wan_names(state: dict) -> dict:
    """transformers UMT5 names -> Wan names (tied `shared` / `embed_tokens` kept once); unknown
    encoder keys pass through unchanged so the check lists them."""
    out = {}
    for k, v in state.items():
        if k.startswith(("decoder.", "lm_head.")):
            continue
        for pat, rep in _HF_TO_WAN:
            if re.match(pat, k):
                k = re.sub(pat, rep, k)
                break
        out[k] = v
    return out


def detect_umt5_naming(state: dict) -> str:
    keys = list(state)
    if any(k.startswith(("encoder.block.", "shared.", "encoder.embed_tokens.")) for k in keys):
        return "transformers"
    if any(k.startswith(("blocks.", "token_embedding.")) for k in keys):
        return "wan"
    raise CheckpointError(f"cannot tell the umT5 checkpoint's naming from its keys (first: {keys[:5]})")


def config_from_state(state: dict, **overrides) -> UMT5Config:
    """Sizes read off Wan-named tensors (the vocabulary, width, layers, heads, buckets)."""
    need = ("token_embedding.weight", "blocks.0.attn.q.weight", "blocks.0.ffn.fc1.weight",
            "blocks.0.pos_embedding.embedding.weight")
    missing = [k for k in need if k not in state]
    if missing:
        raise CheckpointError(_listing("not a umT5 encoder checkpoint (cannot read its sizes)", missing=missing))
    layers = {int(m.group(1)) for k in state if (m := re.match(r"blocks\.(\d+)\.", k))}
    vocab, dim = np.shape(state["token_embedding.weight"])
    buckets, heads = np.shape(state["blocks.0.pos_embedding.embedding.weight"])
    sizes = dict(vocab_size=int(vocab), dim=int(dim), dim_attn=int(np.shape(state["blocks.0.attn.q.weight"])[0]),
                 ffn_dim=int(np.shape(state["blocks.0.ffn.fc1.weight"])[0]), num_heads=int(heads),
                 num_layers=max(layers) + 1, num_buckets=int(buckets))
    return UMT5Config(**{**sizes, **overrides})


def wan_to_flax(state: dict, cfg: UMT5Config) -> dict:
    """Wan-named tensors (torch layouts) -> the `UMT5Encoder` params tree (numpy, layers stacked)."""
    used: set[str] = set()
    missing: list[str] = []

    def get(name, linear=False):
        if name not in state:
            missing.append(name)
            return None
        used.add(name)
        x = np.asarray(state[name])
        return x.T if linear else x

    blocks: dict = {}
    uneven = []
    for suffix, path, linear in _BLOCK:
        per_layer = [get(f"blocks.{i}.{suffix}", linear) for i in range(cfg.num_layers)]
        if any(x is None for x in per_layer):
            continue
        if len({x.shape for x in per_layer}) > 1:
            uneven.append(f"blocks.*.{suffix}: {sorted({x.shape for x in per_layer})}")
            continue
        node = blocks
        for p in path[:-1]:
            node = node.setdefault(p, {})
        node[path[-1]] = np.stack(per_layer)
    params = {"token_embedding": {"embedding": get("token_embedding.weight")},
              "norm": {"weight": get("norm.weight")}, "blocks": blocks}
    extra = sorted(set(state) - used)
    if missing or extra or uneven:
        raise CheckpointError(_listing("umT5 checkpoint does not match the model", missing=missing, unexpected=extra,
                                       shapes_differ_across_layers=uneven))
    return params


def convert_umt5_state(state: dict, cfg: UMT5Config | None = None, dtype=None) -> tuple[dict, UMT5Config]:
    """A loaded state dict (either naming) -> (checked Flax params (numpy), config)."""
    if detect_umt5_naming(state) == "transformers":
        state = hf_to_wan_names(state)
    cfg = cfg or config_from_state(state)
    params = wan_to_flax(state, cfg)
    check_tree_shapes(params, abstract_umt5_params(cfg), "converted umT5 params do not match the model")
    if dtype is not None:
        import jax

        params = jax.tree_util.tree_map(lambda x: np.asarray(x).astype(dtype), params)
    return params, cfg


def umt5_weight_files(path: str) -> list[str]:
    """The file(s) a umT5 checkpoint path means: the path itself if a file; in a folder, Wan's
    `models_t5_umt5-xxl-enc-bf16.pth`, else its *.safetensors shards, else `pytorch_model.bin`,
    also looked for in a `text_encoder/` subfolder (diffusers' layout)."""
    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise CheckpointError(f"{path}: no such umT5 checkpoint (file or folder)")
    for folder in (path, os.path.join(path, "text_encoder")):
        names = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
        for pick in ([WAN_T5_FILE], [n for n in names if n.endswith(".safetensors")], ["pytorch_model.bin"]):
            if pick and all(n in names for n in pick):
                return [os.path.join(folder, n) for n in pick]
    raise CheckpointError(f"{path}: no {WAN_T5_FILE}, *.safetensors or pytorch_model.bin here or in text_encoder/")


def read_umt5_weights(path: str) -> tuple[dict, dict]:
    """(state, config overrides) from `umt5_weight_files(path)`; a transformers `config.json`
    beside the weights gives max_distance."""
    files = umt5_weight_files(path)
    overrides = {}
    config = os.path.join(os.path.dirname(files[0]), "config.json")
    if os.path.isfile(config):
        with open(config, encoding="utf-8") as f:
            overrides["max_distance"] = int(json.load(f).get("relative_attention_max_distance", 128))
    state: dict = {}
    for f in files:
        state.update(read_safetensors(f) if f.endswith(".safetensors") else read_torch(f, keep_dtype=True))
    return state, overrides


def load_umt5_checkpoint(path: str, cfg: UMT5Config | None = None, dtype=None) -> tuple[dict, UMT5Config]:
    """Checkpoint file / folder -> (checked Flax params on the host (numpy), config)."""
    state, overrides = read_umt5_weights(path)
    if cfg is None and detect_umt5_naming(state) == "transformers":
        state = hf_to_wan_names(state)
    return convert_umt5_state(state, cfg or config_from_state(state, **overrides), dtype)
