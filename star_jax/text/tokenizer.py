"""The umT5 tokenizer, called the way Wan calls it (`wan/modules/t5.py`, `tokenizers.py`).

    tok = load_tokenizer("Wan2.1-T2V-1.3B/google/umt5-xxl", text_len=512)
    ids, mask = tok("a coffee bar, slow dolly in")      # (512,) int32, (512,) bool

Wan cleans the prompt (HTML entities unescaped twice, whitespace collapsed, ends stripped),
tokenizes with the end token `</s>` appended, truncates to `text_len` tokens (the last one stays
`</s>`) and pads to `text_len`; the mask marks the real tokens. Deviation: Wan also runs
`ftfy.fix_text` (repairs mojibake such as "cafÃ©"); that is left out, so such broken text
tokenizes differently, while ordinary text is unaffected.

A tokenizer is read from a `tokenizer.json` (the `tokenizers` library; what transformers' fast
tokenizer uses) or a sentencepiece `spiece.model` (needs `sentencepiece`), given as the file or a
folder holding it (also `google/umt5-xxl/` or `tokenizer/` inside a model folder).
"""

from __future__ import annotations

import dataclasses
import html
import os
import re
from typing import Callable

import numpy as np

from star_jax.errors import InputError

_FILES = ("tokenizer.json", "spiece.model")
_SUBFOLDERS = ("", os.path.join("google", "umt5-xxl"), "tokenizer")


def clean_prompt(text: str) -> str:
    """Wan's 'whitespace' cleaning, without ftfy (see the module docstring)."""
    return re.sub(r"\s+", " ", html.unescape(html.unescape(text)).strip()).strip()


def find_tokenizer(path: str) -> str | None:
    """The tokenizer file at `path`, or inside it / its `google/umt5-xxl/` or `tokenizer/` folder."""
    if os.path.isfile(path):
        return path
    for sub in _SUBFOLDERS:
        for name in _FILES:
            candidate = os.path.join(path, sub, name)
            if os.path.isfile(candidate):
                return candidate
    return None


@dataclasses.dataclass(frozen=True)
class Tokenizer:
    """prompt -> (ids (text_len,) int32, mask (text_len,) bool); see the module docstring."""

    path: str
    text_len: int
    encode: Callable[[str], list[int]]  # cleaned text -> ids with `</s>` appended, untruncated
    eos_id: int
    pad_id: int

    def __call__(self, prompt: str) -> tuple[np.ndarray, np.ndarray]:
        ids = list(self.encode(clean_prompt(prompt)))
        if len(ids) > self.text_len:
            ids = ids[: self.text_len - 1] + [self.eos_id]
        n = len(ids)
        out = np.full((self.text_len,), self.pad_id, np.int32)
        out[:n] = ids
        return out, np.arange(self.text_len) < n


def load_tokenizer(path: str, text_len: int) -> Tokenizer:
    file = find_tokenizer(path)
    if file is None:
        raise InputError(f"{path}: no tokenizer here (expected tokenizer.json or spiece.model, also looked in "
                         f"google/umt5-xxl/ and tokenizer/)")
    if file.endswith(".json"):
        return _from_tokenizer_json(file, text_len)
    if file.endswith(".model"):
        return _from_sentencepiece(file, text_len)
    raise InputError(f"{file}: not a tokenizer file (expected tokenizer.json or a sentencepiece .model)")


def _from_tokenizer_json(file: str, text_len: int) -> Tokenizer:
    try:
        from tokenizers import Tokenizer as HFTokenizer

        tok = HFTokenizer.from_file(file)
    except Exception as e:  # noqa: BLE001 - any parse failure is the user's file
        raise InputError(f"{file}: cannot read tokenizer.json ({type(e).__name__}: {e})") from e
    tok.no_padding()
    tok.no_truncation()
    eos = tok.token_to_id("</s>")
    if eos is None:
        raise InputError(f"{file}: tokenizer has no '</s>' token (expected a T5 / umT5 tokenizer)")
    pad = tok.token_to_id("<pad>")

    def encode(text):  # T5's post-processor appends </s>; a tokenizer.json without one gets it here
        ids = tok.encode(text, add_special_tokens=True).ids
        return ids if ids and ids[-1] == eos else ids + [eos]

    return Tokenizer(file, text_len, encode, eos, 0 if pad is None else pad)


def _from_sentencepiece(file: str, text_len: int) -> Tokenizer:
    try:
        import sentencepiece as spm
    except ImportError as e:
        raise InputError(f"{file}: reading a sentencepiece model needs `pip install sentencepiece` "
                         f"(or give the tokenizer.json beside it)") from e
    try:
        sp = spm.SentencePieceProcessor(model_file=file)
    except Exception as e:  # noqa: BLE001
        raise InputError(f"{file}: cannot read sentencepiece model ({type(e).__name__}: {e})") from e
    eos = sp.eos_id()
    if eos < 0:
        raise InputError(f"{file}: sentencepiece model has no end-of-sequence id (expected a T5 / umT5 model)")
    return Tokenizer(file, text_len, lambda text: sp.encode(text) + [eos], eos, max(sp.pad_id(), 0))
