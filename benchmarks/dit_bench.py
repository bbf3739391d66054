"""DiT pass cost: analytic FLOPs (with the block-causal / KV-cache discount) and measured speed.

    python -m benchmarks.dit_bench                 # FLOP table + CPU: jitted JAX vs diffusers eager
    python -m benchmarks.dit_bench --gpu           # on a GPU: 1.3B at 480x832, tokens/s, TFLOP/s, MFU

The CPU rows run the same random weights (converted with the production converter) through
`WanDiT` under `jax.jit` and through diffusers' `WanTransformer3DModel` in eager torch, in one
process, and print the ratio.
"""

from __future__ import annotations

import argparse

import numpy as np

from benchmarks.common import best_time
from star_jax.models.flops import PEAK_BF16_TFLOPS, dit_flops
from star_jax.models.variants import DiTConfig, dit_variant

def flop_table():
    cfg = dit_variant("1.3B")
    tpf = 30 * 52  # 480x832 -> 60x104 latent -> 30x52 tokens
    rows = [
        ("bidirectional, 21 frames (teacher)", dit_flops(cfg, 21, tpf, 512)),
        ("block-causal full, 21 frames", dit_flops(cfg, 21, tpf, 512, block_causal=True)),
        ("STAR context fill, 6 frames at t=0", dit_flops(cfg, 6, tpf, 512)),  # full attention, as the release
        ("STAR denoise step, 3 frames + 6 cached", dit_flops(cfg, 3, tpf, 512, cache_frames=6)),
    ]
    step = rows[3][1]
    per_block = rows[2][1] + 4 * step  # one context fill + 4 denoising steps
    print("Analytic FLOPs, 1.3B (in_dim 36) at 480x832 (1560 tokens / latent frame), text 512:")
    print(f"| {'pass':40s} | {'TFLOP':>8s} |")
    print(f"|{'-' * 42}|{'-' * 10}|")
    for name, f in rows:
        print(f"| {name:40s} | {f / 1e12:8.2f} |")
    print(f"| {'STAR block = fill + 4 steps (12 frames)':40s} | {per_block / 1e12:8.2f} |")
    fps = 24.0
    need = per_block * fps / 12  # 3 latent frames = 12 video frames per block
    print(f"24 FPS needs {need / 1e12:.0f} TFLOP/s of DiT work "
          f"({need / 1e12 / PEAK_BF16_TFLOPS['H100']:.0%} of an H100's dense bf16 peak).")
    return per_block


def cpu_compare(name: str, cfg: DiTConfig, B: int, T: int, H: int, W: int, repeats: int):
    import jax
    import jax.numpy as jnp
    import torch

    from star_jax.checkpoint import convert_dit_state
    from star_jax.models import WanDiT
    from tests.models.torch_refs import diffusers_dit, run_diffusers_dit, state_numpy

    ref = diffusers_dit(cfg)
    params = jax.device_put(convert_dit_state(state_numpy(ref), cfg))
    rng = np.random.default_rng(0)
    x = rng.normal(size=(B, cfg.in_dim, T, H, W)).astype(np.float32)
    t = np.full((B, T), 500.0, np.float32)
    ctx = rng.normal(size=(B, cfg.text_len, cfg.text_dim)).astype(np.float32)
    model = WanDiT(cfg)
    fwd = jax.jit(lambda p, x, t, c: model.apply({"params": p}, x, t, c)[0])
    xj, tj, cj = jnp.asarray(x.transpose(0, 2, 3, 4, 1)), jnp.asarray(t), jnp.asarray(ctx)
    tpf = (H // 2) * (W // 2)

    torch.set_num_threads(max(1, torch.get_num_threads()))
    jax_s = best_time(lambda: fwd(params, xj, tj, cj).block_until_ready(), repeats)
    torch_s = best_time(lambda: run_diffusers_dit(ref, x, t, ctx, tpf), repeats)
    flops = B * dit_flops(cfg, T, tpf, cfg.text_len)
    return (name, B * T * tpf, jax_s, torch_s, flops)


def gpu_run(repeats: int, attentions: list[str], variant: str = "1.3B", hw: tuple[int, int] = (480, 832)):
    """One STAR block of `variant` at `hw` in bf16 per attention implementation, same process, same
    random weights: the context fill (6 frames at t=0, full attention, writes the cache), one
    denoising step (3 frames reading the 6 cached), and the block (fill + 4 steps) in ms, with
    TFLOP/s and MFU. `variant="tiny"` at a small `hw` runs the same code on any backend (a smoke test)."""
    import jax
    import jax.numpy as jnp
    import flax.linen as nn

    from star_jax.models import WanDiT, init_cache
    from star_jax.models.flops import peak_tflops

    hl, wl = hw[0] // 8, hw[1] // 8
    tpf = (hl // 2) * (wl // 2)
    kind = jax.devices()[0].device_kind
    peak = peak_tflops(kind) or float("nan")
    rows, params = [], None
    for attention in attentions:
        cfg = dit_variant(variant, dtype="bfloat16", param_dtype="bfloat16", attention=attention)
        model = WanDiT(cfg, block_causal=True)
        L = cfg.text_len
        x_ctx = jnp.zeros((1, 6, hl, wl, cfg.in_dim), jnp.bfloat16)
        x_blk = jax.random.normal(jax.random.key(1), (1, 3, hl, wl, cfg.in_dim), jnp.bfloat16)
        ctx = jax.random.normal(jax.random.key(2), (1, L, cfg.text_dim), jnp.bfloat16)
        if params is None:  # the same weights for every attention implementation
            params = jax.jit(lambda r: nn.meta.unbox(model.init(r, x_blk, jnp.zeros((1,)), ctx)["params"]))(
                jax.random.key(0))
        cache0 = init_cache(cfg, 1, 6 * tpf)
        fill = jax.jit(lambda p, c: model.apply({"params": p}, x_ctx, jnp.zeros((1,)), ctx, cache=c,
                                                cache_mode="write")[1])
        step = jax.jit(lambda p, c, x: model.apply({"params": p}, x, jnp.full((1,), 500.0), ctx, cache=c,
                                                   cache_mode="read", frame_offset=6)[0])
        cache = fill(params, cache0)
        out = step(params, cache, x_blk)
        s_fill = best_time(lambda: jax.block_until_ready(fill(params, cache0)), repeats)
        s_step = best_time(lambda: jax.block_until_ready(step(params, cache, x_blk)), repeats)
        f_fill = dit_flops(cfg, 6, tpf, L)
        f_step = dit_flops(cfg, 3, tpf, L, cache_frames=6)
        rows.append((attention, s_fill, s_step, f_fill, f_step, np.asarray(out, np.float32)))
    print(f"\n{kind}: {variant} bf16, {hw[0]}x{hw[1]} ({tpf} tokens / latent frame), text {L}, "
          f"best of {repeats}; MFU against {peak:g} TFLOP/s dense bf16")
    print("| attention | fill ms | fill MFU | step ms | step TFLOP/s | step MFU | block ms (fill + 4 steps) "
          "| block MFU | DiT-only FPS (12 frames / block) | max |step - first| |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for attention, s_fill, s_step, f_fill, f_step, out in rows:
        blk, f_blk = s_fill + 4 * s_step, f_fill + 4 * f_step
        diff = float(np.max(np.abs(out - rows[0][5])))
        print(f"| {attention} | {s_fill * 1e3:.1f} | {f_fill / s_fill / 1e12 / peak:.1%} | {s_step * 1e3:.1f} "
              f"| {f_step / s_step / 1e12:.1f} | {f_step / s_step / 1e12 / peak:.1%} | {blk * 1e3:.1f} "
              f"| {f_blk / blk / 1e12 / peak:.1%} | {12 / blk:.1f} | {diff:.3g} |")
    return rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--gpu", action="store_true", help="1.3B at 480x832 in bf16 (on a GPU)")
    ap.add_argument("--attention", default="xla,dot_product",
                    help="--gpu / --smoke: comma-separated attention implementations, compared in one process")
    ap.add_argument("--smoke", action="store_true", help="the --gpu code on the tiny variant at 96x160, any backend")
    a = ap.parse_args()
    flop_table()
    if a.gpu or a.smoke:
        gpu_run(a.repeats, a.attention.split(","), *(("tiny", (96, 160)) if a.smoke else ()))
        return
    import jax

    jax.config.update("jax_default_matmul_precision", "highest")  # same math as torch float32
    rows = [
        cpu_compare("tiny (dim 64, 2 layers)", dit_variant("tiny"), 1, 3, 16, 16, a.repeats),
        cpu_compare("small (dim 256, 4 layers)", dit_variant("tiny", dim=256, num_heads=4, ffn_dim=1024,
                                                             num_layers=4, text_dim=128), 1, 3, 24, 32, a.repeats),
    ]
    print(f"\nCPU ({jax.devices()[0].device_kind}), float32, one forward, 500 = shared timestep:")
    print(f"| {'config':28s} | {'tokens':>6s} | {'jax jit ms':>10s} | {'torch eager ms':>14s} | {'speed-up':>8s} | {'GFLOP/s jax':>11s} |")
    print(f"|{'-' * 30}|{'-' * 8}|{'-' * 12}|{'-' * 16}|{'-' * 10}|{'-' * 13}|")
    for name, toks, js, ts, fl in rows:
        print(f"| {name:28s} | {toks:6d} | {js * 1e3:10.2f} | {ts * 1e3:14.2f} | {ts / js:7.2f}x | {fl / js / 1e9:11.2f} |")


if __name__ == "__main__":
    main()
