"""The STAR networks and their weights, bundled for inference.

    model = random_star_model("tiny", jax.random.PRNGKey(0))           # tests, CPU demos
    model = load_star_model("1.3B", dit="ckpt/dit", vae="ckpt/vae", text="caption_umt5.npy")

Checkpoints are orbax folders written by `python -m star_jax.checkpoint.convert` (DiT and VAE).
Beside the DiT folder, `star_model.json` names the conditioning convention the DiT was trained
with (`{"conditioning": "inspatio-release", "format": 1}`, see `star_jax.inference.conditions`);
`write_star_model_json` writes it. `load_star_model(..., conditioning=name)` refuses a checkpoint
that stores another convention; without `conditioning` the stored one is used. A folder without
the file (weights converted before conventions were stored, all of them InSpatio / Wan weights)
is taken as "inspatio-release", and `conditioning_source` says it was assumed.
A VAE folder may hold a `vae.json` (written by `python -m star_jax.checkpoint.export vae`, for a
VAE trained here): its VAEConfig, latent statistics included, then replaces the variant's (only
the compute dtype comes from the caller); without one the variant's config is used.
Text conditioning is a precomputed umT5 embedding (.npy / .npz, (Lc, text_dim) or (1, Lc, text_dim));
without one the DiT sees zeros, and `text_source` says so.

A MODEL FOLDER (`python -m star_jax.checkpoint.export student`; the embedded one is
`star_jax/assets/tiny_model/`, `tiny_model_path()`) bundles everything inference needs:

    dit/              orbax params of the block-causal DiT (the student's EMA params)
    vae/              orbax params + vae.json (its VAEConfig and latent statistics)
    taehv/            optional: the TAEHV tiny decoder (orbax params + taehv.json, written by
                      `python -m star_jax.checkpoint.convert_taehv --out <folder>/taehv`), for
                      sessions that decode with `decoder="tiny"`; loaded when present
    star_model.json   format 2, a `ModelCard`: conditioning convention, variant, the DiT's
                      architecture, the resolution and latent frames it was trained at, its sampler
                      (steps, shift), its text encoder (the tiny hashed-word table: name and
                      settings), what it is and what it was trained on

    model = load_model_folder(tiny_model_path(), "tiny")   # CheckpointError if anything is off
    card = read_model_card(tiny_model_path())              # ModelCard, or None for a format-1 folder

`check_model_folder` does every check without loading a weight (the jobs' validate step).
`tiny_decoder(model)` is the model's TAEHV (module, params), or a CheckpointError naming the
missing taehv/ folder; `random_star_model` always carries a random TAEHV ("tiny" widths for the
tiny variant, the published ones otherwise).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.checkpoint.convert import CheckpointError, restore_params
from star_jax.errors import InputError
from star_jax.inference.conditions import DEFAULT_CONDITIONING, Conditioning, get_conditioning
from star_jax.io import files
from star_jax.models.dit import WanDiT
from star_jax.models.variants import dit_variant, vae_variant
from star_jax.models.vae import WanVAE, init_vae_params
from star_jax.models.random_params import numpy_random_params, seed_of


@dataclasses.dataclass
class StarModel:
    """dit (block-causal WanDiT) and vae with their params; text (1, Lc, text_dim); `conditioning`
    the convention the DiT expects its render and mask in. `text_source` ("zeros" or a path),
    `weights` (what the params are) and `conditioning_source` (where the convention came from) go
    into output metadata."""

    dit: WanDiT
    dit_params: Any
    vae: WanVAE
    vae_params: Any
    text: jnp.ndarray
    text_source: str = "zeros"
    weights: str = "random-init"
    conditioning: Conditioning = get_conditioning(DEFAULT_CONDITIONING)
    conditioning_source: str = "default"
    taehv: Any = None  # the TAEHV tiny decoder (star_jax.models.taehv.TAEHV), or None
    taehv_params: Any = None  # {"decoder": ...[, "encoder": ...]}
    taehv_source: str = "none"  # what the TAEHV params are, or where one was looked for


TAEHV_DIR = "taehv"


def tiny_decoder(model: StarModel):
    """(TAEHV module, params) of the model, for `decoder="tiny"`; CheckpointError naming the
    folder that should hold it when the model has none."""
    if model.taehv is None:
        raise CheckpointError(f"decoder 'tiny': {model.taehv_source}: expected a TAEHV decoder (convert taew2_1 with "
                              f"`python -m star_jax.checkpoint.convert_taehv --out <model folder>/{TAEHV_DIR}`), "
                              f"found none")
    return model.taehv, model.taehv_params


def check_tiny_decoder_folder(folder: str, dtype: str = "float32") -> None:
    """The model folder holds a TAEHV with a decoder (nothing loaded); CheckpointError otherwise."""
    from star_jax.checkpoint.convert_taehv import check_taehv_folder

    path = os.path.join(folder, TAEHV_DIR)
    if not os.path.isdir(path):
        raise CheckpointError(f"decoder 'tiny': {path}: expected the model folder's TAEHV folder (convert taew2_1 "
                              f"with `python -m star_jax.checkpoint.convert_taehv --out {path}`), found no such folder")
    _, parts = check_taehv_folder(path, dtype)
    if "decoder" not in parts:
        raise CheckpointError(f"decoder 'tiny': {path}: expected a TAEHV with its decoder, found parts {list(parts)}")


def random_taehv(variant: str, dtype: str = "float32", seed: int = 0):
    """A random TAEHV (module, params) for a STAR variant: "tiny" widths for "tiny", else the published."""
    from star_jax.models.taehv import TAEHV, init_taehv_params, taehv_variant

    tae = TAEHV(taehv_variant("tiny" if variant == "tiny" else "wan2.1", dtype=dtype))
    return tae, init_taehv_params(tae, seed)


STAR_MODEL_JSON = "star_model.json"
MODEL_CARD_FORMAT = 2
# DiTConfig fields that define the function (the rest, dtype / attention / remat, are how it runs)
ARCH_FIELDS = ("dim", "ffn_dim", "num_heads", "num_layers", "freq_dim", "text_dim", "text_len", "in_dim", "out_dim",
               "patch_size", "eps", "qk_norm", "cross_attn_norm", "rope_theta", "frames_per_block")


def tiny_model_path() -> str:
    """The embedded trained tiny model folder (package data)."""
    from star_jax.assets import TINY_MODEL

    return TINY_MODEL


@dataclasses.dataclass(frozen=True)
class ModelCard:
    """What a model folder's star_model.json (format 2) records. `resolution_hw`: the (H, W) it
    was trained at; `latent_frames`: the latent frames of its training clips; `text_encoder`: the
    `PromptEncoder.id` its captions went through; `description`: what it is, one paragraph."""

    conditioning: str
    variant: str
    dit: dict  # the ARCH_FIELDS of its DiTConfig
    resolution_hw: tuple[int, int]
    latent_frames: int
    steps: tuple[int, ...]
    shift: float
    text_encoder: str
    description: str
    training: dict

    def to_json(self) -> dict:
        return {"format": MODEL_CARD_FORMAT, "conditioning": self.conditioning, "variant": self.variant,
                "dit": dict(self.dit), "resolution_hw": list(self.resolution_hw),
                "latent_frames": self.latent_frames, "sampler": {"steps": list(self.steps), "shift": self.shift},
                "text_encoder": self.text_encoder, "description": self.description, "training": self.training}


def _field(meta: dict, path: str, name: str, check, expected: str):
    value = meta.get(name, None) if isinstance(meta, dict) else None
    if not check(value):
        raise CheckpointError(f"{path}: field {name!r}: expected {expected}, found {value!r}")
    return value


def read_model_card(folder: str) -> ModelCard | None:
    """The ModelCard of a model folder's star_model.json; None when the file records only a
    conditioning convention (format 1: converted or teacher checkpoints). CheckpointError naming
    the file and the field when it is missing, unreadable or ill-typed."""
    path = os.path.join(folder, STAR_MODEL_JSON)
    read_star_model_json(path)  # readable, a known convention
    with open(path, encoding="utf-8") as f:
        meta = json.load(f)
    if meta.get("format", 1) == 1:
        return None
    _field(meta, path, "format", lambda v: v == MODEL_CARD_FORMAT, f"1 or {MODEL_CARD_FORMAT}")
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0  # noqa: E731
    variant = _field(meta, path, "variant", lambda v: isinstance(v, str) and v, "a variant name")
    dit = _field(meta, path, "dit", lambda v: isinstance(v, dict) and set(ARCH_FIELDS) <= set(v),
                 f"the DiT's fields {list(ARCH_FIELDS)}")
    hw = _field(meta, path, "resolution_hw", lambda v: isinstance(v, list) and len(v) == 2 and all(map(is_int, v)),
                "[height, width]")
    frames = _field(meta, path, "latent_frames", is_int, "a positive int")
    sampler = _field(meta, path, "sampler", lambda v: isinstance(v, dict) and isinstance(v.get("steps"), list)
                     and v["steps"] and all(map(is_int, v["steps"])) and isinstance(v.get("shift"), (int, float))
                     and v["shift"] > 0, "{'steps': [ints], 'shift': > 0}")
    text = _field(meta, path, "text_encoder", lambda v: isinstance(v, str) and v, "a text encoder id")
    desc = _field(meta, path, "description", lambda v: isinstance(v, str), "a string")
    return ModelCard(meta["conditioning"], variant, {k: dit[k] for k in ARCH_FIELDS}, tuple(hw), frames,
                     tuple(sampler["steps"]), float(sampler["shift"]), text, desc, dict(meta.get("training") or {}))


def check_model_card(card: ModelCard, folder: str, variant: str) -> None:
    """The card describes the `variant` DiT: its name and every architecture field (num_heads
    among them, which no param shape shows)."""
    path = os.path.join(folder, STAR_MODEL_JSON)
    if card.variant != variant:
        raise CheckpointError(f"{path}: field 'variant': expected {variant!r} (config.variant), found "
                              f"{card.variant!r}: a model of another size")
    cfg = dataclasses.asdict(dit_variant(variant))
    for k in ARCH_FIELDS:
        want = list(cfg[k]) if isinstance(cfg[k], tuple) else cfg[k]
        if card.dit[k] != want:
            raise CheckpointError(f"{path}: field 'dit.{k}': expected {want!r} (the {variant} variant), found "
                                  f"{card.dit[k]!r}")


def model_text_encoder(card: ModelCard):
    """The PromptEncoder a card names when it is built in (the hashed-word table), else None."""
    from star_jax.text import prompt_encoder

    encoder = prompt_encoder(card.variant) if card.variant == "tiny" else None
    return encoder if encoder is not None and encoder.id == card.text_encoder else None


def star_model_json_path(dit_path: str) -> str:
    """Where the conditioning convention of the DiT checkpoint at `dit_path` is stored: beside it."""
    return os.path.join(os.path.dirname(os.path.abspath(dit_path)), STAR_MODEL_JSON)


def write_star_model_json(folder: str, convention: str | Conditioning = DEFAULT_CONDITIONING) -> str:
    """Records the conditioning convention of the DiT checkpoint(s) in `folder` (the folder that
    holds dit/ and vae/), atomically. Refuses to change a convention already recorded there.
    Returns the file's path."""
    name = get_conditioning(convention).name
    path = os.path.join(folder, STAR_MODEL_JSON)
    if os.path.exists(path):
        stored = read_star_model_json(path)
        if stored.name != name:
            raise CheckpointError(f"{path}: records conditioning {stored.name!r}; refusing to overwrite it "
                                  f"with {name!r}")
        return path
    files.write_json(path, {"conditioning": name, "format": 1})
    return path


def read_star_model_json(path: str) -> Conditioning:
    """The convention a star_model.json records (CheckpointError naming the file and field)."""
    try:
        with open(path, encoding="utf-8") as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read it as JSON ({type(e).__name__}: {e})") from e
    name = meta.get("conditioning") if isinstance(meta, dict) else None
    if not isinstance(name, str):
        raise CheckpointError(f"{path}: field 'conditioning' must be a convention name, found {name!r}")
    try:
        return get_conditioning(name)
    except InputError as e:
        raise CheckpointError(f"{path}: {e}") from e


def load_text_embedding(path: str | None, text_dim: int, text_len: int) -> tuple[jnp.ndarray, str]:
    """(1, Lc, text_dim) float32 from a .npy / .npz (first array), or zeros (1, text_len, text_dim)."""
    if not path:
        return jnp.zeros((1, text_len, text_dim), jnp.float32), "zeros"
    try:
        arr = np.load(path)
        if isinstance(arr, np.lib.npyio.NpzFile):
            arr = arr[arr.files[0]]
        arr = np.asarray(arr, np.float32)
    except (OSError, ValueError, TypeError, IndexError) as e:
        raise InputError(f"{path}: cannot read a text embedding ({e})") from e
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3 or arr.shape[0] != 1 or arr.shape[-1] != text_dim:
        raise InputError(f"{path}: text embedding must be (Lc, {text_dim}) or (1, Lc, {text_dim}), got {arr.shape}")
    if arr.shape[1] > text_len:
        raise InputError(f"{path}: text embedding must have at most text_len={text_len} rows, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{path}: text embedding has NaN or inf values")
    return jnp.asarray(arr), os.path.abspath(path)


def _models(variant: str, dtype: str):
    dit = WanDiT(dit_variant(variant, dtype=dtype), block_causal=True)
    vae = WanVAE(vae_variant(variant, dtype=dtype))
    return dit, vae


def _init_dit(dit: WanDiT, rng) -> dict:
    """Random DiT params drawn with NumPy (`numpy_random_params`) on the abstract tree of `init`."""
    import flax.linen as nn

    cfg = dit.cfg
    x = jnp.zeros((1, cfg.frames_per_block, 4, 4, cfg.in_dim))
    abstract = jax.eval_shape(
        lambda: nn.meta.unbox(dit.init(jax.random.PRNGKey(0), x, jnp.zeros((1,)), jnp.zeros((1, 4, cfg.text_dim)))[
            "params"]))
    return numpy_random_params(abstract, seed_of(rng))


def _init_vae(vae: WanVAE, rng) -> dict:
    """Random VAE params drawn with NumPy on the abstract tree of `init_vae_params`."""
    abstract = jax.eval_shape(lambda: init_vae_params(vae, jax.random.PRNGKey(0), 16, 16))
    return numpy_random_params(abstract, seed_of(rng))


def random_dit_params(dit: WanDiT, rng):
    """Random params of `dit`, every leaf perturbed by N(0, 0.02^2) on top of `numpy_random_params`
    (so zero biases and unit gains vary too, and the output depends on every input). NumPy, not
    `init`: compiling threefry for a whole DiT takes the CPU most of a minute."""
    k_dit, k_noise = jax.random.split(rng)
    params = _init_dit(dit, k_dit)
    noise = seed_of(k_noise)
    return jax.tree_util.tree_map(
        lambda p: p + jnp.asarray(0.02 * noise.standard_normal(p.shape).astype(np.float32), p.dtype), params)


def random_star_model(variant: str, rng, dtype: str = "float32", text: str | None = None,
                      conditioning: str = DEFAULT_CONDITIONING) -> StarModel:
    """Randomly initialised networks of a variant (the DiT's zero-initialised output head and
    modulation are perturbed, so the output depends on the input)."""
    dit, vae = _models(variant, dtype)
    cfg = dit.cfg
    k_dit, k_vae = jax.random.split(rng)
    params = random_dit_params(dit, k_dit)
    vae_params = _init_vae(vae, k_vae)
    emb, src = load_text_embedding(text, cfg.text_dim, cfg.text_len)
    tae, tae_params = random_taehv(variant, dtype)
    # committed to the default device, as restored checkpoints are: jit keys its compiled programs on
    # committed-ness, so the same networks from either source share them
    params, vae_params, tae_params = jax.device_put((params, vae_params, tae_params), jax.devices()[0])
    return StarModel(dit, params, vae, vae_params, emb, src, f"random-init ({variant})",
                     get_conditioning(conditioning), "default", tae, tae_params, f"random-init TAEHV ({variant})")


def checkpoint_conditioning(dit: str, requested: str | Conditioning | None = None) -> tuple[Conditioning, str]:
    """(the convention of the DiT checkpoint at `dit`, where it came from). Raises CheckpointError
    when the checkpoint records a convention other than `requested`."""
    path = star_model_json_path(dit)
    want = None if requested is None else get_conditioning(requested)
    if not os.path.exists(path):
        if want is not None:
            return want, f"given by the caller ({path} does not exist)"
        return (get_conditioning(DEFAULT_CONDITIONING),
                f"assumed: {path} does not exist (converted InSpatio/Wan weights)")
    stored = read_star_model_json(path)
    if want is not None and want.name != stored.name:
        raise CheckpointError(f"{path}: the DiT was trained with conditioning {stored.name!r}, but the pipeline "
                              f"asks for {want.name!r}; its renders and masks would not be what it learned from")
    return stored, path


def check_model_folder(folder: str, variant: str, dtype: str = "float32",
                       conditioning: str | None = None) -> ModelCard | None:
    """Every check `load_model_folder` makes, with nothing loaded: dit/ and vae/ exist, the
    star_model.json (conditioning equal to `conditioning` if given; a format-2 card describing
    `variant`), the stored DiT shapes against the variant, the VAE against its vae.json (a model
    card requires one). Returns the card (None for a format-1 folder)."""
    from star_jax.checkpoint.convert import check_dit_folder
    from star_jax.checkpoint.export import VAE_JSON, folder_vae_config
    from star_jax.checkpoint.vae import check_vae_folder
    from star_jax.models.variants import vae_variant

    if not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: no such folder (a model folder holds dit/, vae/ and star_model.json)")
    dit_dir, vae_dir = os.path.join(folder, "dit"), os.path.join(folder, "vae")
    if not os.path.isdir(dit_dir):
        raise CheckpointError(f"{dit_dir}: expected the model folder's dit/ params folder, found no such folder")
    checkpoint_conditioning(dit_dir, conditioning)
    card = read_model_card(folder) if os.path.exists(os.path.join(folder, STAR_MODEL_JSON)) else None
    if card is not None:
        check_model_card(card, folder, variant)
    check_dit_folder(dit_dir, dit_variant(variant, dtype=dtype))
    if not os.path.isdir(vae_dir):
        raise CheckpointError(f"{vae_dir}: expected the model folder's vae/ params folder, found no such folder")
    if card is not None and not os.path.isfile(os.path.join(vae_dir, VAE_JSON)):
        raise CheckpointError(f"{os.path.join(vae_dir, VAE_JSON)}: expected the trained VAE's config (a model "
                              f"folder's VAE records its own), found no such file")
    check_vae_folder(vae_dir, folder_vae_config(vae_dir, dtype=dtype) or vae_variant(variant, dtype=dtype))
    if os.path.isdir(os.path.join(folder, TAEHV_DIR)):
        check_tiny_decoder_folder(folder, dtype)
    return card


def load_model_folder(folder: str, variant: str, dtype: str = "float32", conditioning: str | None = None,
                      text: str | None = None) -> StarModel:
    """A model folder (module docstring) -> StarModel, after `check_model_folder`. `weights` names
    the folder and, from its card, what the model is; its taehv/ is loaded when present."""
    card = check_model_folder(folder, variant, dtype, conditioning)
    tae_dir = os.path.join(folder, TAEHV_DIR)
    model = load_star_model(variant, os.path.join(folder, "dit"), os.path.join(folder, "vae"), text, dtype,
                            conditioning=conditioning, taehv=tae_dir if os.path.isdir(tae_dir) else None)
    if model.taehv is None:
        model = dataclasses.replace(model, taehv_source=os.path.abspath(tae_dir))
    if card is not None:
        what = card.training.get("what", "trained model")
        model = dataclasses.replace(model, weights=f"{os.path.abspath(folder)} ({what})")
    return model


def load_star_model(variant: str, dit: str, vae: str, text: str | None = None, dtype: str = "bfloat16",
                    conditioning: str | None = None, taehv: str | None = None) -> StarModel:
    """Converted orbax checkpoints (see `star_jax.checkpoint.convert`) -> StarModel. The
    conditioning convention recorded beside `dit` must equal `conditioning` when one is given
    (checked first); shapes are checked against the variant (the VAE: against its vae.json when
    the folder has one) before any compute. `taehv`: a converted TAEHV folder (its decoder serves
    `decoder="tiny"`), checked against its taehv.json."""
    import flax.linen as nn

    from star_jax.checkpoint.convert import check_against_model
    from star_jax.checkpoint.vae import check_vae_against_model

    for name, path in (("dit", dit), ("vae", vae)):
        if not path or not os.path.isdir(path):
            raise CheckpointError(f"{name} checkpoint {path!r}: no such folder (convert weights with "
                                  f"`python -m star_jax.checkpoint.convert --model {name} ...`)")
    from star_jax.checkpoint.export import folder_vae_config

    cond, cond_src = checkpoint_conditioning(dit, conditioning)
    dit_m, vae_m = _models(variant, dtype)
    vae_cfg = folder_vae_config(vae, dtype=dtype)  # a trained VAE's own config and latent stats
    if vae_cfg is not None:
        vae_m = WanVAE(vae_cfg)
    dit_params = restore_params(dit)
    check_against_model(nn.meta.unbox(dit_params), dit_m.cfg)
    vae_params = restore_params(vae)
    check_vae_against_model(vae_params, vae_m.cfg)
    emb, src = load_text_embedding(text, dit_m.cfg.text_dim, dit_m.cfg.text_len)
    tae = tae_params = None
    tae_src = "no TAEHV folder given to load_star_model"
    if taehv:
        from star_jax.checkpoint.convert_taehv import load_taehv_folder

        tae, tae_params = load_taehv_folder(taehv, dtype)
        if "decoder" not in tae_params:
            raise CheckpointError(f"{taehv}: expected a TAEHV with its decoder, found parts {sorted(tae_params)}")
        tae_src = os.path.abspath(taehv)
    return StarModel(dit_m, dit_params, vae_m, vae_params, emb, src, f"{os.path.abspath(dit)} + {os.path.abspath(vae)}",
                     cond, cond_src, tae, tae_params, tae_src)
