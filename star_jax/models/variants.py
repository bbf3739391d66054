"""The one table of model sizes. `tiny` is for tests and CPU; `1.3B` is the Wan2.1-T2V-1.3B
backbone InSpatio-World ships (in_dim 36); `14B` the Wan2.1-14B sizes for reference.

    cfg = dit_variant("1.3B")            # DiTConfig, frozen
    cfg = dit_variant("tiny", in_dim=36)  # overrides by keyword
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DiTConfig:
    """Wan2.1 DiT hyper-parameters (names follow the original Wan code)."""

    dim: int = 1536
    ffn_dim: int = 8960
    num_heads: int = 12
    num_layers: int = 30
    freq_dim: int = 256
    text_dim: int = 4096
    text_len: int = 512
    in_dim: int = 36  # 16 noisy latent + 4 mask latent + 16 rendered-view latent
    out_dim: int = 16
    patch_size: tuple[int, int, int] = (1, 2, 2)
    eps: float = 1e-6
    qk_norm: bool = True
    cross_attn_norm: bool = True
    rope_theta: float = 10000.0
    # STAR block-causal generation
    frames_per_block: int = 3
    # numerics: parameters are stored in param_dtype, matmuls run in dtype
    dtype: str = "float32"
    param_dtype: str = "float32"
    # memory, not function (every choice computes the same outputs): the attention implementation
    # (star_jax.models.attention: "xla" | "dot_product" | "blockwise", the latter's chunk in tokens)
    # and per-block rematerialisation in the backward pass ("none" | "nothing_saveable" |
    # "dots_with_no_batch_dims_saveable", jax.checkpoint_policies)
    attention: str = "xla"
    attention_chunk: int = 1024
    remat: str = "none"

    @property
    def head_dim(self) -> int:
        return self.dim // self.num_heads

    def __post_init__(self):
        if self.attention not in ("xla", "dot_product", "blockwise"):
            raise ValueError(f"attention must be 'xla', 'dot_product' or 'blockwise', got {self.attention!r}")
        if self.remat not in ("none", "nothing_saveable", "dots_with_no_batch_dims_saveable"):
            raise ValueError(f"remat must be 'none', 'nothing_saveable' or 'dots_with_no_batch_dims_saveable', "
                             f"got {self.remat!r}")
        if self.attention_chunk < 1:
            raise ValueError(f"attention_chunk must be >= 1, got {self.attention_chunk}")
        if self.dim % self.num_heads:
            raise ValueError(f"dim {self.dim} not divisible by num_heads {self.num_heads}")
        if self.head_dim % 2:
            raise ValueError(f"head_dim {self.head_dim} must be even for RoPE")


@dataclasses.dataclass(frozen=True)
class VAEConfig:
    """Wan2.1 causal video VAE (4x temporal, 8x spatial, 16 latent channels)."""

    base_dim: int = 96
    z_dim: int = 16
    dim_mult: tuple[int, ...] = (1, 2, 4, 4)
    num_res_blocks: int = 2
    temporal_downsample: tuple[bool, ...] = (False, True, True)
    # per-channel latent normalisation: z_norm = (z - mean) / std (Wan2.1 published statistics)
    latents_mean: tuple[float, ...] = (
        -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
        0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
    )
    latents_std: tuple[float, ...] = (
        2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
        3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
    )
    dtype: str = "float32"
    param_dtype: str = "float32"

    @property
    def spatial_factor(self) -> int:
        return 2 ** (len(self.dim_mult) - 1)

    @property
    def temporal_factor(self) -> int:
        return 2 ** sum(self.temporal_downsample)


DIT_VARIANTS: dict[str, dict] = {
    "tiny": dict(dim=64, ffn_dim=128, num_heads=4, num_layers=2, freq_dim=32, text_dim=32, text_len=16),
    "1.3B": dict(dim=1536, ffn_dim=8960, num_heads=12, num_layers=30, freq_dim=256, text_dim=4096, text_len=512),
    "14B": dict(dim=5120, ffn_dim=13824, num_heads=40, num_layers=40, freq_dim=256, text_dim=4096, text_len=512),
}

VAE_VARIANTS: dict[str, dict] = {
    "tiny": dict(base_dim=8),  # the 1.3B VAE's structure (so key maps match), 12x narrower
    "1.3B": dict(),
    "14B": dict(),
}


def dit_variant(name: str, **overrides) -> DiTConfig:
    if name not in DIT_VARIANTS:
        raise ValueError(f"unknown DiT variant {name!r}; known: {sorted(DIT_VARIANTS)}")
    return DiTConfig(**{**DIT_VARIANTS[name], **overrides})


def vae_variant(name: str, **overrides) -> VAEConfig:
    if name not in VAE_VARIANTS:
        raise ValueError(f"unknown VAE variant {name!r}; known: {sorted(VAE_VARIANTS)}")
    return VAEConfig(**{**VAE_VARIANTS[name], **overrides})
