"""Wan2.1 VAE weights -> Flax params of `star_jax.models.vae.WanVAE`.

    params = load_vae_checkpoint("Wan2.1_VAE.pth", vae_variant("1.3B"))       # original Wan release
    params = load_vae_checkpoint("vae/diffusion_pytorch_model.safetensors", cfg)  # diffusers layout

Two namings are accepted and told apart by their keys: the original Wan one (`encoder.conv1`,
`encoder.downsamples.3.residual.2.weight`, `decoder.upsamples.4.shortcut.weight`, `conv1` / `conv2`
for the quant convs) and diffusers' (`encoder.conv_in`, `encoder.down_blocks.3.conv1.weight`,
`decoder.up_blocks.1.resnets.0.conv_shortcut.weight`, `quant_conv`). The Wan -> diffusers table is
built from the config (`wan_to_diffusers_keys`), and tested against diffusers' own
`convert_wan_vae_to_diffusers`. Diffusers names become Flax paths mechanically
(`up_blocks.1.resnets.0` -> `up_blocks_1/resnets_0`), with torch layouts transposed to
channel-last. Every missing, unexpected or mis-shaped tensor is listed in the error, in the naming
of the user's file (mis-shaped ones with our Flax path in brackets).
"""

from __future__ import annotations

import re

import numpy as np

from star_jax.checkpoint.convert import _listing, check_tree_shapes
from star_jax.checkpoint.storage import (
    CheckpointError,
    orbax_shapes,
    read_weight_shapes,
    read_weights,
    shape_placeholders,
)
from star_jax.models.variants import VAEConfig

_RESIDUAL = (("residual.0.gamma", "norm1.gamma"), ("residual.2.weight", "conv1.weight"),
             ("residual.2.bias", "conv1.bias"), ("residual.3.gamma", "norm2.gamma"),
             ("residual.6.weight", "conv2.weight"), ("residual.6.bias", "conv2.bias"))
_SHORTCUT = (("shortcut.weight", "conv_shortcut.weight"), ("shortcut.bias", "conv_shortcut.bias"))
_ATTENTION = ("norm.gamma", "to_qkv.weight", "to_qkv.bias", "proj.weight", "proj.bias")


def _residual(wan: str, diff: str, shortcut: bool) -> dict:
    pairs = _RESIDUAL + (_SHORTCUT if shortcut else ())
    return {f"{wan}.{a}": f"{diff}.{b}" for a, b in pairs}


def _resample(wan: str, diff: str, mode: str) -> dict:
    out = {f"{wan}.resample.1.{p}": f"{diff}.resample.1.{p}" for p in ("weight", "bias")}
    if mode.endswith("3d"):
        out.update({f"{wan}.time_conv.{p}": f"{diff}.time_conv.{p}" for p in ("weight", "bias")})
    return out


def _middle(side: str) -> dict:
    out = _residual(f"{side}.middle.0", f"{side}.mid_block.resnets.0", False)
    out.update({f"{side}.middle.1.{p}": f"{side}.mid_block.attentions.0.{p}" for p in _ATTENTION})
    out.update(_residual(f"{side}.middle.2", f"{side}.mid_block.resnets.1", False))
    return out


def wan_to_diffusers_keys(cfg: VAEConfig) -> dict[str, str]:
    """Every tensor of a Wan2.1 VAE with `cfg`'s structure: original Wan name -> diffusers name."""
    keys: dict[str, str] = {}
    for wan, diff in (("conv1", "quant_conv"), ("conv2", "post_quant_conv"),
                      ("encoder.conv1", "encoder.conv_in"), ("decoder.conv1", "decoder.conv_in"),
                      ("encoder.head.2", "encoder.conv_out"), ("decoder.head.2", "decoder.conv_out")):
        keys.update({f"{wan}.{p}": f"{diff}.{p}" for p in ("weight", "bias")})
    keys["encoder.head.0.gamma"] = "encoder.norm_out.gamma"
    keys["decoder.head.0.gamma"] = "decoder.norm_out.gamma"
    keys.update(_middle("encoder"))
    keys.update(_middle("decoder"))

    # encoder: one flat list in both namings
    dims = [cfg.base_dim * u for u in (1, *cfg.dim_mult)]
    k = 0
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
        for _ in range(cfg.num_res_blocks):
            keys.update(_residual(f"encoder.downsamples.{k}", f"encoder.down_blocks.{k}", in_dim != out_dim))
            in_dim, k = out_dim, k + 1
        if i != len(cfg.dim_mult) - 1:
            mode = "downsample3d" if cfg.temporal_downsample[i] else "downsample2d"
            keys.update(_resample(f"encoder.downsamples.{k}", f"encoder.down_blocks.{k}", mode))
            k += 1

    # decoder: Wan's flat list; diffusers groups it into up blocks of resnets + an upsampler
    dims = [cfg.base_dim * u for u in (cfg.dim_mult[-1], *cfg.dim_mult[::-1])]
    temporal_upsample = cfg.temporal_downsample[::-1]
    k = 0
    for i, (in_dim, out_dim) in enumerate(zip(dims[:-1], dims[1:])):
        if i > 0:
            in_dim //= 2  # the previous upsampler halves the channels
        for j in range(cfg.num_res_blocks + 1):
            keys.update(_residual(f"decoder.upsamples.{k}", f"decoder.up_blocks.{i}.resnets.{j}", in_dim != out_dim))
            in_dim, k = out_dim, k + 1
        if i != len(cfg.dim_mult) - 1:
            mode = "upsample3d" if temporal_upsample[i] else "upsample2d"
            keys.update(_resample(f"decoder.upsamples.{k}", f"decoder.up_blocks.{i}.upsamplers.0", mode))
            k += 1
    return keys


def detect_vae_naming(state: dict) -> str:
    keys = set(state)
    if "encoder.conv_in.weight" in keys or "quant_conv.weight" in keys:
        return "diffusers"
    if "encoder.conv1.weight" in keys or "conv1.weight" in keys:
        return "wan"
    raise CheckpointError(f"cannot tell the VAE checkpoint's naming from its keys (first: {sorted(keys)[:5]})")


def _flax_path(diffusers_name: str) -> tuple[str, ...]:
    """`decoder.up_blocks.1.resnets.0.conv1.weight` -> (decoder, up_blocks_1, resnets_0, conv1, weight)."""
    out: list[str] = []
    for part in diffusers_name.split("."):
        if part.isdigit():
            out[-1] = f"{out[-1]}_{part}"
        else:
            out.append(part)
    return tuple(out)


def _to_flax_leaf(leaf: str, value: np.ndarray) -> tuple[str, np.ndarray]:
    if leaf == "weight":  # conv: (O, I, *K) -> (*K, I, O)
        return "kernel", np.transpose(value, (*range(2, value.ndim), 1, 0))
    if leaf == "gamma":  # (C, 1, 1[, 1]) -> (C,)
        return "gamma", value.reshape(value.shape[0])
    return leaf, value


def flax_to_diffusers_name(path: str) -> str:
    """`decoder/up_blocks_1/resnets_0/conv1/kernel` -> `decoder.up_blocks.1.resnets.0.conv1.weight`."""
    *parts, leaf = path.split("/")
    parts = [re.sub(r"_(\d+)$", r".\1", p) for p in parts]
    return ".".join(parts + [{"kernel": "weight"}.get(leaf, leaf)])


def convert_vae_state(state: dict, cfg: VAEConfig, dtype=None) -> dict:
    """A loaded VAE state dict (either naming) -> checked Flax params (numpy, optionally cast).
    Errors list keys in the naming of `state`."""
    state = {k.removeprefix("vae."): v for k, v in state.items()}
    table = wan_to_diffusers_keys(cfg)
    wan = detect_vae_naming(state) == "wan"
    expected = set(table) if wan else set(table.values())
    rename = table if wan else {v: v for v in expected}
    to_user = {d: w for w, d in table.items()} if wan else {}

    def display(path: str) -> str:
        name = flax_to_diffusers_name(path)
        return to_user.get(name, name)
    missing = sorted(expected - set(state))
    extra = sorted(set(state) - expected)
    if missing or extra:
        raise CheckpointError(_listing("VAE checkpoint does not match the config", missing=missing, unexpected=extra))
    params: dict = {}
    for name, value in state.items():
        *path, leaf = _flax_path(rename[name])
        leaf, value = _to_flax_leaf(leaf, np.asarray(value))
        node = params
        for p in path:
            node = node.setdefault(p, {})
        node[leaf] = value if dtype is None else value.astype(dtype)
    check_vae_against_model(params, cfg, display)
    return params


def vae_abstract(cfg: VAEConfig) -> dict:
    """The `WanVAE` params tree of `cfg` as ShapeDtypeStructs (nothing allocated)."""
    import jax

    from star_jax.models.vae import WanVAE, init_vae_params

    return jax.eval_shape(lambda: init_vae_params(WanVAE(cfg), jax.random.PRNGKey(0), 16, 16))


def check_vae_against_model(params: dict, cfg: VAEConfig, display=None) -> None:
    """Raises CheckpointError unless `params` has exactly `WanVAE(cfg)`'s keys and shapes
    (`display` maps a Flax path to the user's tensor name, for the listing)."""
    check_tree_shapes(params, vae_abstract(cfg), "converted VAE params do not match the model", display)


def check_vae_file(path: str, cfg: VAEConfig) -> None:
    """Checks a VAE weights file's names and shapes against `cfg` from its headers (nothing loaded)."""
    convert_vae_state(shape_placeholders(read_weight_shapes(path)), cfg)


def check_vae_folder(path: str, cfg: VAEConfig) -> None:
    """Checks a converted VAE orbax folder against `cfg` from its metadata (nothing loaded)."""
    check_tree_shapes(orbax_shapes(path, "vae"), vae_abstract(cfg),
                      f"{path}: the stored VAE params do not match the model")


def read_vae_weights(path: str) -> dict:
    """numpy tensors from a .safetensors file / folder, or from a torch .pth (needs torch)."""
    return read_weights(path)


def load_vae_checkpoint(path: str, cfg: VAEConfig, dtype=np.float32) -> dict:
    """Checkpoint file -> checked Flax VAE params on the host (numpy)."""
    return convert_vae_state(read_vae_weights(path), cfg, dtype)
