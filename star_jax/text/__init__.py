"""Text conditioning as the release feeds it: the umT5 encoder in Flax (`umt5`), its tokenizer
(`tokenizer`), and prompt -> the DiT's (1, L <= text_len, text_dim) text context (`prompt`), with
an on-disk cache per (encoder, prompt). Converted weights: `star_jax.checkpoint.umt5`."""

from star_jax.text.prompt import (
    HashedWordEncoder,
    PromptCache,
    PromptEncoder,
    UMT5PromptEncoder,
    embed_prompt,
    prompt_encoder,
)
from star_jax.text.tokenizer import Tokenizer, clean_prompt, load_tokenizer
from star_jax.text.umt5 import UMT5Config, UMT5Encoder, encode_tokens, umt5_variant

__all__ = ["HashedWordEncoder", "PromptCache", "PromptEncoder", "Tokenizer", "UMT5Config", "UMT5Encoder",
           "UMT5PromptEncoder", "clean_prompt", "embed_prompt", "encode_tokens", "load_tokenizer", "prompt_encoder",
           "umt5_variant"]
