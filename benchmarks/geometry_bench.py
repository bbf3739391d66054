"""Geometry encoder (Depth-Anything-3 in Flax) speed: frames/s of the network on one view window.

    python -m benchmarks.geometry_bench                               # CPU: tiny, 16 views of 294x504
    python -m benchmarks.geometry_bench --variant base --dtype bfloat16 --attention dot_product,blockwise  # a GPU

Random weights (speed does not depend on them), one window of `--views` frames at `--hw` (294x504 is
what `star_jax.geometry.estimate` feeds the network for a 480x832 source at process_res 504), jitted
once per attention implementation in one process; best of `--repeats` calls after the compiling one.
The columns: compile seconds, seconds per window, frames/s, and the ratio to the first row.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import best_time
from star_jax.geometry.encoder import GeometryEncoder, encoder_variant


def run(variant: str, views: int, hw: tuple[int, int], attentions: list[str], dtype: str, repeats: int) -> list[dict]:
    x = jax.random.uniform(jax.random.key(1), (1, views, *hw, 3), jnp.float32)
    params, rows = None, []
    for attention in attentions:
        cfg = encoder_variant(variant, attention=attention, dtype=dtype, param_dtype=dtype)
        model = GeometryEncoder(cfg)
        if params is None:  # the same weights for every implementation
            params = jax.jit(lambda r: model.init(r, x[:, :2, :28, :28])["params"])(jax.random.key(0))
        fn = jax.jit(lambda p, im: model.apply({"params": p}, im).depth)
        t0 = time.perf_counter()
        depth = jax.block_until_ready(fn(params, x))
        compile_s = time.perf_counter() - t0
        s = best_time(lambda: jax.block_until_ready(fn(params, x)), repeats)
        rows.append(dict(attention=attention, compile_s=compile_s, s=s, fps=views / s,
                         finite=bool(np.all(np.isfinite(np.asarray(depth, np.float32))))))
    return rows


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="tiny", help="tiny | small | base")
    ap.add_argument("--views", type=int, default=16)
    ap.add_argument("--hw", default="294x504", help="network input HxW (multiples of 14)")
    ap.add_argument("--attention", default="blockwise", help="comma-separated attention implementations")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args()
    hw = tuple(int(v) for v in a.hw.split("x"))
    rows = run(a.variant, a.views, hw, a.attention.split(","), a.dtype, a.repeats)
    print(f"\ngeometry encoder {a.variant}, {a.dtype}, {a.views} views of {hw[0]}x{hw[1]}, "
          f"{jax.devices()[0].device_kind}, JAX {jax.__version__}, best of {a.repeats}")
    print("| attention | compile s | s / window | frames/s | ratio | depth finite |")
    print("|---|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['attention']} | {r['compile_s']:.1f} | {r['s']:.3f} | {r['fps']:.1f} | "
              f"{r['fps'] / rows[0]['fps']:.2f} | {r['finite']} |")


if __name__ == "__main__":
    main()
