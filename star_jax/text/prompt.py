"""Prompt -> the DiT's text context, as the release feeds it.

    emb, source = embed_prompt("a coffee bar, slow dolly in", "1.3B", text_encoder="Wan2.1-T2V-1.3B/",
                               cache_dir="~/.cache/star_jax/prompts")   # (1, L, 4096), L <= 512
    emb, source = embed_prompt("a coffee bar", "tiny")                  # (1, L, 32): hashed words

Wan's rule (`T5EncoderModel.__call__`): tokenize to `text_len` tokens (end token included, padded,
masked), run umT5 over them, keep the rows of the real tokens only; the DiT then pads those with
zero rows back to `text_len` (`star_jax.models.dit.pad_text`). So the embedding has L rows, L =
number of tokens with `</s>` (at most `text_len`), and width `text_dim`.

A `PromptEncoder` has an `id` (what it is: weights and tokenizer, by content) and maps a prompt
to (L, text_dim) float32. Two exist: `UMT5PromptEncoder` (converted umT5 weights + tokenizer) and
`HashedWordEncoder` (download-free and deterministic, for the `tiny` variant: one seeded random
row per word plus an end row; it carries no meaning, only the shapes and the plumbing).
Embeddings are cached on disk per (encoder id, prompt), so a prompt is encoded once; the umT5
weights are not even read on a cache hit.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import os
from typing import Protocol

import numpy as np

from star_jax.errors import InputError
from star_jax.io.files import write_npz
from star_jax.models.variants import dit_variant
from star_jax.text.tokenizer import Tokenizer, clean_prompt, find_tokenizer, load_tokenizer


class PromptEncoder(Protocol):
    id: str  # identifies the encoder's weights and tokenizer, by content (the cache key's first half)
    text_len: int

    def __call__(self, prompt: str) -> np.ndarray:
        """(L, width) float32, 1 <= L <= text_len."""


@dataclasses.dataclass(frozen=True)
class HashedWordEncoder:
    """One N(0, 1) row per lower-cased word, seeded by sha256(seed, word), then an end row (as
    umT5's `</s>`); at most text_len rows, the last one the end row."""

    text_dim: int
    text_len: int
    seed: int = 0

    @property
    def id(self) -> str:
        return f"hashed-words-v1:seed={self.seed}:dim={self.text_dim}:len={self.text_len}"

    def __call__(self, prompt: str) -> np.ndarray:
        words = clean_prompt(prompt).lower().split()[: self.text_len - 1] + ["</s>"]
        return np.stack([self._row(w) for w in words]).astype(np.float32)

    def _row(self, word: str) -> np.ndarray:
        digest = hashlib.sha256(f"{self.seed}\0{word}".encode()).digest()
        return np.random.default_rng(int.from_bytes(digest[:8], "little")).standard_normal(self.text_dim)


@dataclasses.dataclass(frozen=True)
class UMT5PromptEncoder:
    """umT5 weights (a Wan .pth, a transformers safetensors file, or a folder holding one) and a
    tokenizer. The weights are read on the first call (the id needs only the files) and held as
    long as this object lives."""

    weights: str
    tokenizer: Tokenizer
    dtype: str = "float32"

    @property
    def text_len(self) -> int:
        return self.tokenizer.text_len

    @functools.cached_property
    def id(self) -> str:
        from star_jax.checkpoint.umt5 import umt5_weight_files

        return (f"umt5:{_fingerprint(umt5_weight_files(self.weights))}:tok={_fingerprint([self.tokenizer.path])}"
                f":len={self.text_len}")

    @functools.cached_property
    def _model(self):
        return _load_umt5(self.weights, self.dtype)

    def __call__(self, prompt: str) -> np.ndarray:
        from star_jax.text.umt5 import encode_tokens

        model, params = self._model
        ids, mask = self.tokenizer(prompt)
        h = encode_tokens(model, params, ids[None], mask[None])
        return np.asarray(h[0, : int(mask.sum())], np.float32)


def _load_umt5(weights: str, dtype: str):
    import jax

    from star_jax.checkpoint.umt5 import load_umt5_checkpoint
    from star_jax.text.umt5 import UMT5Encoder

    params, cfg = load_umt5_checkpoint(weights)
    return UMT5Encoder(dataclasses.replace(cfg, dtype=dtype)), jax.device_put(params)


def _fingerprint(files: list[str]) -> str:
    """sha256 (16 hex) of files' sizes and first and last MiB: cheap on an 11 GB checkpoint, and
    unchanged when the files move."""
    h = hashlib.sha256()
    for f in files:
        size = os.path.getsize(f)
        h.update(f"{os.path.basename(f)}\0{size}\0".encode())
        with open(f, "rb") as fh:
            h.update(fh.read(1 << 20))
            if size > 2 << 20:
                fh.seek(-(1 << 20), os.SEEK_END)
                h.update(fh.read())
    return h.hexdigest()[:16]


@dataclasses.dataclass(frozen=True)
class PromptCache:
    """Embeddings on disk, one `.npz` per (encoder id, prompt), written atomically; an entry that
    cannot be read or belongs to another key counts as a miss and is rewritten."""

    folder: str

    def path(self, encoder_id: str, prompt: str) -> str:
        key = hashlib.sha256(f"{encoder_id}\0{prompt}".encode()).hexdigest()[:32]
        return os.path.join(os.path.expanduser(self.folder), f"{key}.npz")

    def get(self, encoder_id: str, prompt: str) -> np.ndarray | None:
        try:
            with np.load(self.path(encoder_id, prompt), allow_pickle=False) as z:
                if str(z["encoder_id"]) == encoder_id and str(z["prompt"]) == prompt:
                    return np.asarray(z["embedding"], np.float32)
        except (OSError, ValueError, KeyError):
            pass
        return None

    def put(self, encoder_id: str, prompt: str, embedding: np.ndarray) -> None:
        write_npz(self.path(encoder_id, prompt), embedding=embedding, encoder_id=np.str_(encoder_id),
                  prompt=np.str_(prompt))


def prompt_encoder(variant: str, text_encoder: str | None = None, tokenizer: str | None = None) -> PromptEncoder:
    """umT5 when `text_encoder` is given (weights file or folder; the tokenizer from `tokenizer`, or
    found beside the weights), else the hashed-word table for `tiny`; other variants need umT5."""
    cfg = dit_variant(variant)
    if text_encoder:
        if not os.path.exists(text_encoder):
            raise InputError(f"{text_encoder}: no such text encoder (umT5 weights file or folder)")
        folder = text_encoder if os.path.isdir(text_encoder) else os.path.dirname(text_encoder)
        tok_path = tokenizer or find_tokenizer(folder)
        if tok_path is None:
            raise InputError(f"{text_encoder}: no tokenizer found beside the umT5 weights; give its tokenizer.json "
                             f"or spiece.model (or the folder holding it)")
        return UMT5PromptEncoder(text_encoder, load_tokenizer(tok_path, cfg.text_len))
    if variant == "tiny":
        return HashedWordEncoder(cfg.text_dim, cfg.text_len)
    raise InputError(f"a prompt for variant {variant!r} needs a umT5 text encoder (e.g. the Wan2.1 model folder "
                     f"holding models_t5_umt5-xxl-enc-bf16.pth and google/umt5-xxl/); only 'tiny' has a built-in one")


def embed_prompt(prompt: str, variant: str, text_encoder: str | None = None, tokenizer: str | None = None,
                 cache_dir: str | None = None) -> tuple[np.ndarray, str]:
    """prompt -> ((1, L, text_dim) float32 with L <= text_len, a one-line description of where it
    came from, for metadata). `cache_dir` None: no cache."""
    cfg = dit_variant(variant)
    encoder = prompt_encoder(variant, text_encoder, tokenizer)
    cache = PromptCache(cache_dir) if cache_dir else None
    emb = cache.get(encoder.id, prompt) if cache else None
    hit = emb is not None
    if emb is None:
        emb = encoder(prompt)
    if emb.ndim != 2 or emb.shape[1] != cfg.text_dim or not 1 <= emb.shape[0] <= cfg.text_len:
        raise InputError(f"text encoder {text_encoder or encoder.id}: gives embeddings of shape {emb.shape}, the "
                         f"{variant} DiT takes (L <= {cfg.text_len}, {cfg.text_dim})")
    if cache and not hit:
        cache.put(encoder.id, prompt, emb)
    what = f"umT5 {os.path.abspath(text_encoder)}" if text_encoder else f"hashed words ({encoder.id})"
    return emb[None], f"prompt {prompt!r} via {what}, {emb.shape[0]} tokens" + (" (cached)" if hit else "")
