"""Analytic FLOP counts of the DiT (matmuls only, 2 FLOPs per multiply-add) and the peak table
that turns a measured step time into TFLOP/s and MFU.

    fwd = dit_flops(cfg, frames=6, tokens_per_frame=1560, text_len=512)
    train = training_flops(fwd)                      # forward + backward = 3 forwards
    mfu = train / step_s / 1e12 / peak_tflops(jax.devices()[0].device_kind)

Counted: patch embedding, q/k/v/o, attention scores and weighted values (with the block-causal
or KV-cache change in the number of keys), cross-attention (its k / v on the text rows), FFN,
the text embedding MLP, the time embedding MLP and projection (once per latent frame, as the
model computes them) and the output head. Not counted: norms, RoPE, softmax, elementwise ops.
"""

from __future__ import annotations

from star_jax.models.variants import DiTConfig

# Dense bf16 peak per device (TFLOP/s), matched as a substring of `jax.Device.device_kind`.
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "H100": 989.0,
    "A100": 312.0,
    "TPU v6": 918.0,
    "TPU v5p": 459.0,
    "TPU v5 lite": 197.0,
    "TPU v5e": 197.0,
    "TPU v4": 275.0,
}


def dit_flops(cfg: DiTConfig, frames: int, tokens_per_frame: int, text_len: int,
              cache_frames: int = 0, block_causal: bool = False) -> float:
    """Matmul FLOPs of one DiT forward over `frames` latent frames (batch 1).

    Keys per query = the query's visible own tokens + `cache_frames` cached frames. With
    `block_causal`, a query in block b of n sees (b + 1) blocks: the mean discount is (n + 1) / 2n.
    `text_len`: the text rows cross-attention sees (the model pads to `cfg.text_len`)."""
    d, L = cfg.dim, frames * tokens_per_frame
    pt, ph, pw = cfg.patch_size
    own_keys = L
    if block_causal:
        n = max(1, frames // cfg.frames_per_block)
        own_keys = L * (n + 1) / (2 * n)
    keys = own_keys + cache_frames * tokens_per_frame
    per_layer = (
        2 * L * d * d * 4  # self-attn q, k, v, o
        + 2 * 2 * L * keys * d  # scores + weighted values
        + 2 * L * d * d * 2 + 2 * text_len * d * d * 2  # cross-attn q, o and k, v on text
        + 2 * 2 * L * text_len * d  # cross-attn scores + values
        + 2 * 2 * L * d * cfg.ffn_dim  # FFN
    )
    latent_frames = frames // pt
    embed = (2 * L * (cfg.in_dim * pt * ph * pw) * d + 2 * L * d * cfg.out_dim * pt * ph * pw
             + 2 * latent_frames * (cfg.freq_dim * d + d * d + d * 6 * d)  # time embedding + projection
             + 2 * text_len * (cfg.text_dim * d + d * d))
    return cfg.num_layers * per_layer + embed


def training_flops(forward_flops: float) -> float:
    """Forward + backward: the backward pass costs two forwards (gradients of activations and of
    weights), so a training step is 3x the forward (without rematerialisation)."""
    return 3.0 * forward_flops


def peak_tflops(device_kind: str) -> float | None:
    """Dense bf16 peak TFLOP/s of one device of this kind, or None when it is not in the table
    (CPUs, unknown accelerators): MFU is then not reported."""
    for name, peak in PEAK_BF16_TFLOPS.items():
        if name.lower() in device_kind.lower():
            return peak
    return None
