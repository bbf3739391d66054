"""Checkpoint conversion (Wan / diffusers DiT and VAE weights -> Flax params) and orbax I/O.

The names below load their module on first use, so `python -m star_jax.checkpoint.convert` does
not import the module it runs twice.
"""

import importlib

_EXPORTS = {
    "convert": ("check_against_model", "check_dit_file", "check_dit_folder", "convert_dit_state",
                "load_dit_checkpoint"),
    "storage": ("CheckpointError", "orbax_shapes", "read_weights", "restore_params", "save_params"),
    "vae": ("check_vae_file", "check_vae_folder", "convert_vae_state", "load_vae_checkpoint"),
}
_MODULE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_MODULE)


def __getattr__(name):
    if name not in _MODULE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_MODULE[name]}"), name)


def __dir__():
    return __all__
