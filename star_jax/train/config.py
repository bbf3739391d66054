"""Config sections -> frozen settings dataclasses, with one-line errors for typos.

    optim = section(OptimConfig, config, "optim")   # config.optim (a ConfigDict or dict)

A field the dataclass does not have raises `InputError` naming it and its closest known field
(or, for a field the dataclass lists in its `RENAMED` {old name: message} class attribute, that
message); a missing section or field takes the dataclass default; lists become tuples.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, Iterable

from star_jax.errors import InputError


def _as_dict(node) -> dict:
    if hasattr(node, "to_dict"):
        return node.to_dict()
    return dict(node)


def _freeze(v):
    if isinstance(v, dict):
        return dict(v)
    if isinstance(v, list):
        return tuple(_freeze(x) for x in v)
    if isinstance(v, tuple):
        return tuple(_freeze(x) for x in v)
    return v


def unknown_field_error(where: str, name: str, known: Iterable[str]) -> InputError:
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.6)
    hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(known)}"
    return InputError(f"{where}.{name}: unknown config field; {hint}")


def section(cls, config, name: str | None, where: str = "config"):
    """`cls(**config[name])` (or of `config` itself when name is None), checked field by field."""
    node = config if name is None else (config.get(name) if hasattr(config, "get") else None)
    path = where if name is None else f"{where}.{name}"
    values = {} if node is None else _as_dict(node)
    fields = {f.name for f in dataclasses.fields(cls)}
    renamed = getattr(cls, "RENAMED", {})
    for key in values:
        if key not in fields:
            raise InputError(renamed[key]) if key in renamed else unknown_field_error(path, key, fields)
    try:
        return cls(**{k: _freeze(v) for k, v in values.items()})
    except InputError:
        raise
    except (TypeError, ValueError) as e:
        raise InputError(f"{path}: {e}") from e


def check_keys(config, allowed: Iterable[str], where: str = "config") -> None:
    """Every top-level key of `config` is in `allowed` (else an InputError naming the closest)."""
    allowed = set(allowed)
    for key in _as_dict(config):
        if key not in allowed:
            raise unknown_field_error(where, key, allowed)


def get(config, name: str, default: Any = None) -> Any:
    return config.get(name, default) if hasattr(config, "get") else default
