"""Helpers shared by experiment configs: argument-string parsing and the model section."""

from __future__ import annotations

import dataclasses

import ml_collections

from star_jax.models.variants import dit_variant, vae_variant


def parse_arg(arg: str | None, **defaults) -> ml_collections.ConfigDict:
    """big_vision-style `key=value,flag` argument string -> ConfigDict over `defaults`.

    A bare word sets a boolean default to True; values are cast to the default's type.
    """
    out = ml_collections.ConfigDict(defaults)
    for item in filter(None, (arg or "").split(",")):
        key, sep, value = item.partition("=")
        key = key.strip()
        if key not in defaults:
            raise ValueError(f"unknown config argument {key!r}; known: {sorted(defaults)}")
        default = defaults[key]
        if not sep:
            if not isinstance(default, bool):
                raise ValueError(f"config argument {key!r} needs a value ({key}=...)")
            out[key] = True
        elif isinstance(default, bool):
            out[key] = value.lower() in ("1", "true", "yes", "on")
        else:
            out[key] = type(default)(value)
    return out


def model_config(variant: str) -> ml_collections.ConfigDict:
    """The `model` section: variant name plus every DiT / VAE field, overridable by flags."""
    dit = dataclasses.asdict(dit_variant(variant))
    vae = dataclasses.asdict(vae_variant(variant))
    return ml_collections.ConfigDict({"variant": variant, "dit": dit, "vae": vae})
