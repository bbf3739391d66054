"""Reading weight files (safetensors, torch .pth) and orbax checkpoint folders, with plain errors.

    state = read_weights("Wan2.1_VAE.pth")           # {name: numpy}; .safetensors file / folder or .pth
    shapes = read_weight_shapes("model.safetensors") # {name: shape}, from the headers: nothing loaded
    save_params(params, "ckpt/dit"); params = restore_params("ckpt/dit")
    stored = orbax_shapes("ckpt/dit", "dit")         # ShapeDtypeStruct tree from orbax metadata

Every failure is a CheckpointError naming the file or folder: a missing path, a file that is not
safetensors / torch, a torch file holding Python objects other than tensors (never unpickled), an
orbax folder that is empty or not a checkpoint.
"""

from __future__ import annotations

import glob
import os
import re
import zipfile

import numpy as np

from star_jax.errors import InputError

TORCH_SUFFIXES = (".pth", ".pt", ".ckpt", ".bin")


class CheckpointError(InputError):
    """A checkpoint that cannot be read or does not fit the model; the message names the file
    and lists every offending key."""


def safetensors_files(path: str) -> list[str]:
    """A .safetensors file, or every *.safetensors shard of a folder (sorted)."""
    if not os.path.exists(path):
        raise CheckpointError(f"{path}: no safetensors weights found: no such file or folder")
    files = sorted(glob.glob(os.path.join(path, "*.safetensors"))) if os.path.isdir(path) else [path]
    if not files:
        raise CheckpointError(f"{path}: no safetensors weights found in this folder")
    return files


def read_safetensors(path: str, shapes_only: bool = False) -> dict:
    """All tensors of a .safetensors file, or of every shard in a folder, as numpy (bf16 kept);
    with `shapes_only`, {name: shape} read from the headers."""
    from safetensors import safe_open

    out = {}
    for f in safetensors_files(path):
        try:
            with safe_open(f, framework="flax") as fh:
                for k in fh.keys():
                    out[k] = tuple(fh.get_slice(k).get_shape()) if shapes_only else np.asarray(fh.get_tensor(k))
        except Exception as e:  # noqa: BLE001
            raise CheckpointError(f"{f}: cannot read as safetensors ({type(e).__name__}: {_first_line(e)})") from e
    return out


def _first_line(e: BaseException) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e)).strip()
    return text.splitlines()[0][:200] if text else type(e).__name__


def read_torch(path: str, shapes_only: bool = False, keep_dtype: bool = False) -> dict:
    """A torch.save'd state dict of tensors -> {name: float32 numpy} (or {name: shape}); with
    `keep_dtype`, each tensor in its stored dtype (bf16 as ml_dtypes.bfloat16, no float32 copy).

    Loaded with `weights_only=True`: a file that holds other Python objects is refused, never
    unpickled. A {"state_dict": {...}} wrapper is opened."""
    try:
        import torch
    except ImportError as e:
        raise CheckpointError(f"{path}: reading a torch checkpoint needs torch (pip install torch)") from e
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: no such file")
    if os.path.getsize(path) == 0:
        raise CheckpointError(f"{path}: the file is empty (0 bytes)")
    with open(path, "rb") as f:
        magic = f.read(2)
    if not (zipfile.is_zipfile(path) or magic[:1] == b"\x80"):
        raise CheckpointError(f"{path}: expected a torch.save file (a zip archive or a pickle), found neither "
                              f"(first bytes {magic!r}); is it another format?")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except Exception as e:  # noqa: BLE001 - torch raises many types, with advice to unpickle unsafely
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(e))
        if found:
            raise CheckpointError(f"{path}: expected a state dict of tensors, found a Python object of type "
                                  f"{found.group(1)}; it is not unpickled (that could run code from the file): "
                                  f"re-save the weights with torch.save(model.state_dict()) or as .safetensors") from e
        raise CheckpointError(f"{path}: cannot read as a torch checkpoint of tensors ({type(e).__name__}); the file "
                              f"is damaged or another format") from e
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise CheckpointError(f"{path}: expected a dict of named tensors, found {type(state).__name__}")
    bad = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if bad:
        raise CheckpointError(f"{path}: expected a dict of named tensors, found {len(bad)} entries that are not "
                              f"tensors ({', '.join(map(str, bad[:5]))})")
    if shapes_only:
        return {k: tuple(v.shape) for k, v in state.items()}
    if keep_dtype:
        import ml_dtypes

        return {k: v.detach().view(torch.int16).numpy().view(ml_dtypes.bfloat16) if v.dtype == torch.bfloat16
                else v.detach().numpy() for k, v in state.items()}
    return {k: v.detach().float().numpy() for k, v in state.items()}


def read_weights(path: str, shapes_only: bool = False) -> dict:
    """numpy tensors (or shapes) of a .safetensors file / folder, or of a torch file (`TORCH_SUFFIXES`)."""
    if str(path).endswith(TORCH_SUFFIXES):
        return read_torch(path, shapes_only)
    return read_safetensors(path, shapes_only)


def read_weight_shapes(path: str) -> dict:
    """{name: shape} of a weights file, from its headers (safetensors) or a lazy load (torch)."""
    return read_weights(path, shapes_only=True)


def shape_placeholders(shapes: dict) -> dict:
    """{name: shape} -> {name: read-only zero-stride array of that shape}: converters run on them
    to check names and shapes without memory."""
    return {k: np.broadcast_to(np.float32(0), s) for k, s in shapes.items()}


def save_params(params, path: str) -> None:
    """Saves a params pytree as an orbax checkpoint at `path` (written atomically by orbax)."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    with ocp.StandardCheckpointer() as ckptr:
        ckptr.save(path, params)


def _convert_hint(what: str) -> str:
    return f"convert weights with `python -m star_jax.checkpoint.convert --model {what} ...`"


def orbax_shapes(path: str, what: str = "dit") -> dict:
    """The params tree stored in an orbax folder as ShapeDtypeStructs, from its metadata only.
    CheckpointError naming the folder when it is missing, empty or not a checkpoint."""
    import jax
    import orbax.checkpoint as ocp

    if not path or not os.path.isdir(path):
        raise CheckpointError(f"{what} checkpoint {path!r}: no such folder ({_convert_hint(what)})")
    try:
        with ocp.StandardCheckpointer() as ckptr:
            meta = ckptr.metadata(os.path.abspath(path))
        tree = getattr(meta, "item_metadata", None)
        tree = getattr(tree, "tree", tree)
    except Exception as e:  # noqa: BLE001 - orbax raises many types
        raise CheckpointError(f"{path}: expected an orbax checkpoint folder, cannot read its metadata "
                              f"({type(e).__name__}: {_first_line(e)}); {_convert_hint(what)}") from e
    if not tree:
        content = sorted(os.listdir(path))
        found = "an empty folder" if not content else f"no readable _METADATA among {', '.join(content[:5])}"
        raise CheckpointError(f"{path}: expected an orbax checkpoint folder, found {found}; {_convert_hint(what)}")
    return jax.tree_util.tree_map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype), tree)


def restore_params(path: str, abstract=None, what: str = "dit"):
    """Restores params saved by `save_params`; `abstract` (ShapeDtypeStructs with shardings)
    places them directly on a mesh."""
    import orbax.checkpoint as ocp

    path = os.path.abspath(path)
    orbax_shapes(path, what)  # a clear error for a missing, empty or garbage folder
    try:
        with ocp.StandardCheckpointer() as ckptr:
            return ckptr.restore(path, abstract) if abstract is not None else ckptr.restore(path)
    except Exception as e:  # noqa: BLE001
        raise CheckpointError(f"{path}: cannot restore the orbax checkpoint ({type(e).__name__}: "
                              f"{_first_line(e)})") from e
