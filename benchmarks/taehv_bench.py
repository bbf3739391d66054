"""Decoder speed: TAEHV (the tiny decoder, published widths) vs the Wan VAE decoder, same process.

    python -m benchmarks.taehv_bench                                # 96x160 and 480x832, all decoders
    python -m benchmarks.taehv_bench --sizes 96x160 --decoders taehv,wan-tiny --repeats 3
    python -m benchmarks.taehv_bench --skip "" --out /work/runs/taehv_bench.md     # every pair (slow)

Each decoder streams as a session does: `decode_start` on a first block of 3 latent frames
(9 frames), then `decode_continue` on blocks of 3 (12 frames), the state carried, jitted once per
block shape; random weights (speed does not depend on them), float32, batch 1. Reported: the
compile + first-block time, and the steady-state seconds per 12-frame block (median of
`--repeats`) with its frames/s. Decoders: `taehv` (taew2_1 sizes, 9.8 M decoder params),
`wan-1.3B` (the Wan2.1 VAE the 1.3B DiT uses), `wan-tiny` (its 12x narrower test variant).
The table goes to stdout and, with --out, to a markdown file (written atomically).
"""

from __future__ import annotations

import argparse
import functools
import os
import platform
import time

import jax
import numpy as np

from star_jax.io.files import atomic_path
from star_jax.models import taehv, vae
from star_jax.models.random_params import numpy_random_params
from star_jax.models.variants import vae_variant

BLOCK = 3  # latent frames per block


def _decoder(name: str):
    """name -> (params, jitted start(params, latents), jitted continue(params, latents, state),
    decoder params, one steady-state latent frame's chunk(params, z, state))."""
    if name == "taehv":
        m = taehv.TAEHV(taehv.taehv_variant("wan2.1"))
        params = taehv.init_taehv_params(m)
        start = jax.jit(lambda p, z: taehv.decode_start(m, p, z))
        cont = jax.jit(lambda p, z, s: taehv.decode_continue(m, p, z, s))
        chunk = functools.partial(taehv.decode_chunk, m)
        counted = params["decoder"]
    else:
        m = vae.WanVAE(vae_variant(name.removeprefix("wan-")))
        params = numpy_random_params(jax.eval_shape(lambda: vae.init_vae_params(m, jax.random.PRNGKey(0), 16, 16)), 0)
        start = jax.jit(lambda p, z: vae.decode_start(m, p, z))
        cont = jax.jit(lambda p, z, s: vae.decode_continue(m, p, z, s))
        chunk = functools.partial(vae.decode_chunk, m, first=False)
        counted = {k: params[k] for k in ("decoder", "post_quant_conv")}
    count = sum(int(np.prod(x.shape)) for x in jax.tree_util.tree_leaves(counted))
    return params, start, cont, count, chunk


def _block_flops(chunk, params, z, state) -> float:
    """XLA's count of one steady-state latent frame's decode (from the lowered HLO), x the block."""
    cost = jax.jit(chunk).lower(params, z[:, :1], state).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return BLOCK * float(cost["flops"])


def run(name: str, hw: tuple[int, int], repeats: int) -> dict:
    params, start, cont, count, chunk = _decoder(name)
    rng = np.random.default_rng(0)
    z = rng.normal(size=(1, BLOCK * (repeats + 2), hw[0] // 8, hw[1] // 8, 16)).astype(np.float32)
    t0 = time.perf_counter()
    y, state = start(params, z[:, :BLOCK])
    jax.block_until_ready(y)
    first = time.perf_counter() - t0
    times = []
    for k in range(1, repeats + 2):  # the first continue block compiles
        t0 = time.perf_counter()
        y, state = cont(params, z[:, k * BLOCK: (k + 1) * BLOCK], state)
        jax.block_until_ready(y)
        times.append(time.perf_counter() - t0)
    steady = float(np.median(times[1:]))
    flops = _block_flops(chunk, params, z, state)
    return dict(decoder=name, hw=f"{hw[0]}x{hw[1]}", params=count, first=first, compile_cont=times[0],
                steady=steady, fps=y.shape[1] / steady, gflop=flops / 1e9, gflops=flops / 1e9 / steady)


def table(rows: list[dict]) -> str:
    lines = ["| decoder | H x W | decoder params | GFLOP / block | compile + first block (s) | s / 12-frame block "
             "| frames/s | GFLOP/s |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['decoder']} | {r['hw']} | {r['params'] / 1e6:.2f} M | {r['gflop']:.0f} | {r['first']:.1f} | "
                     f"{r['steady']:.3f} | {r['fps']:.1f} | {r['gflops']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="96x160,480x832")
    ap.add_argument("--decoders", default="taehv,wan-tiny,wan-1.3B")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--skip", default="wan-1.3B@480x832",
                    help="decoder@size pairs not run (the 1.3B VAE takes ~15 min a block at 480x832 on 2 CPUs)")
    ap.add_argument("--out", default=None, help="markdown file for the table")
    args = ap.parse_args(argv)
    rows = []
    for size in args.sizes.split(","):
        hw = tuple(int(v) for v in size.split("x"))
        for name in args.decoders.split(","):
            if f"{name}@{size}" in args.skip.split(","):
                continue
            rows.append(run(name, hw, args.repeats))
            print(table(rows[-1:]).splitlines()[-1], flush=True)
    text = (f"# Decoder speed ({platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
            f"jax {jax.__version__}, {jax.devices()[0].platform}, float32, batch 1)\n\n{table(rows)}\n")
    print("\n" + text)
    if args.out:
        with atomic_path(args.out) as tmp:
            with open(tmp, "w") as f:
                f.write(text)


if __name__ == "__main__":
    main()
