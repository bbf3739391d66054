"""Sizes of the geometry encoder (Depth-Anything-3's any-view network), one frozen config each.

    cfg = encoder_variant("small")                  # DA3-SMALL, Apache-2.0 weights
    cfg = encoder_variant("tiny", dtype="float32")  # random-weight tests

`small` and `base` are the two sizes whose released weights are Apache-2.0 (DA3-SMALL, DA3-BASE;
the larger DA3 sizes are CC BY-NC 4.0 and use a SwiGLU FFN this port does not implement). Their
numbers are the package's `configs/da3-small.yaml` / `da3-base.yaml` (depth_anything_3 0.1.1): a
DINOv2 ViT-S/14 or ViT-B/14 whose blocks from `alt_start` on alternate between per-view attention
(even index) and attention across all views (odd index), with QK layer norm and 2D RoPE from
`qknorm_start` / `rope_start`; the DPT head reads blocks `out_layers` (each the concatenation of
the last per-view and the current token stream: width 2 x embed_dim).
"""

from __future__ import annotations

import dataclasses

from star_jax.errors import InputError
from star_jax.models.attention import ATTENTIONS

REF_VIEW_STRATEGIES = ("first", "middle", "saddle_balanced", "saddle_sim_range")


@dataclasses.dataclass(frozen=True)
class EncoderConfig:
    """One size of the geometry encoder. Widths follow the reference's names."""

    name: str
    embed_dim: int
    depth: int
    num_heads: int
    out_layers: tuple[int, int, int, int]
    head_features: int  # DPT fusion width
    head_out_channels: tuple[int, int, int, int]  # DPT per-stage projection widths
    mlp_ratio: float = 4.0
    patch_size: int = 14
    img_size: int = 518  # the learned position table covers img_size // patch_size squared
    alt_start: int = 4  # first block of the per-view / cross-view alternation (-1: never)
    qknorm_start: int = 4
    rope_start: int = 4
    rope_freq: float = 100.0
    cat_token: bool = True
    output_dim: int = 2  # depth + confidence
    cam_enc_depth: int = 4
    cam_enc_heads: int = 16
    ref_view_strategy: str = "saddle_balanced"  # used when >= 3 views and no cameras are given
    attention: str = "blockwise"  # star_jax.models.attention.ATTENTIONS; all compute the same function
    attention_chunk: int = 1024
    dtype: str = "float32"
    param_dtype: str = "float32"

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads

    @property
    def feature_dim(self) -> int:
        """Width of the features the heads read (the camera decoder's input too)."""
        return self.embed_dim * (2 if self.cat_token else 1)

    @property
    def pos_grid(self) -> int:
        return self.img_size // self.patch_size

    def __post_init__(self):
        bad = []
        if self.embed_dim % self.num_heads or self.head_dim % 4:
            bad.append(f"embed_dim {self.embed_dim} / num_heads {self.num_heads} must be a multiple of 4")
        if self.embed_dim % self.cam_enc_heads:
            bad.append(f"embed_dim {self.embed_dim} not divisible by cam_enc_heads {self.cam_enc_heads}")
        if sorted(self.out_layers) != list(self.out_layers) or not 0 <= min(self.out_layers) <= max(
                self.out_layers) < self.depth:
            bad.append(f"out_layers {self.out_layers} must be increasing block indices below depth {self.depth}")
        if any(c % 4 for c in self.head_out_channels) or self.head_features % 4:
            bad.append(f"head widths {self.head_out_channels}, {self.head_features} must be multiples of 4")
        if self.ref_view_strategy not in REF_VIEW_STRATEGIES:
            bad.append(f"ref_view_strategy {self.ref_view_strategy!r} not one of {REF_VIEW_STRATEGIES}")
        if self.attention not in ATTENTIONS:
            bad.append(f"attention {self.attention!r} not one of {ATTENTIONS}")
        if bad:
            raise InputError(f"EncoderConfig {self.name!r}: " + "; ".join(bad))


VARIANTS = {
    # random-weight tests: 8 blocks, cross-view attention at 5 and 7, a 4x4 position table
    "tiny": EncoderConfig(name="tiny", embed_dim=32, depth=8, num_heads=2, out_layers=(3, 5, 6, 7),
                          head_features=16, head_out_channels=(8, 16, 24, 32), img_size=56,
                          cam_enc_depth=2, cam_enc_heads=2),
    "small": EncoderConfig(name="small", embed_dim=384, depth=12, num_heads=6, out_layers=(5, 7, 9, 11),
                           head_features=64, head_out_channels=(48, 96, 192, 384)),
    "base": EncoderConfig(name="base", embed_dim=768, depth=12, num_heads=12, out_layers=(5, 7, 9, 11),
                          head_features=128, head_out_channels=(96, 192, 384, 768)),
}


def encoder_variant(name: str, **overrides) -> EncoderConfig:
    """The named size, with optional field overrides (e.g. dtype="bfloat16")."""
    if name not in VARIANTS:
        raise InputError(f"geometry encoder variant {name!r}: expected one of {sorted(VARIANTS)}")
    fields = {f.name for f in dataclasses.fields(EncoderConfig)}
    unknown = sorted(set(overrides) - fields)
    if unknown:
        raise InputError(f"geometry encoder variant {name!r}: unknown fields {unknown}")
    return dataclasses.replace(VARIANTS[name], **overrides)
