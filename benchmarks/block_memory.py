"""Compiled memory of one fused navigation block (`star_jax.inference.pipeline.block_step_jit`):
XLA's memory analysis of the program on abstract shapes, nothing allocated, so it runs on a CPU.

    python -m benchmarks.block_memory                          # 1.3B, 480x832, bf16, both decoders
    python -m benchmarks.block_memory --layers 2 --decoders wan  # a reduced-depth 1.3B (same widths)

Per row: the bytes of the arguments (params, carried state, block inputs), outputs (new state,
frames, renders, masks, latents), the part of the outputs XLA writes over donated arguments
(alias: the carried state when donation works), temporaries, and the compile seconds. A row per
decoder and per program (the first block, 9 frames; a later block, 12 frames). With `--layers`
the DiT has fewer layers; its parameters and KV cache scale with the depth, its temporaries not
(the layers are one `nn.scan`), and the table's last rows extrapolate arguments to the full depth.
"""

from __future__ import annotations

import argparse

from star_jax.inference.pipeline import abstract_block, block_memory, tree_bytes
from star_jax.models.variants import dit_variant

GiB = 2.0**30


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--variant", default="1.3B")
    ap.add_argument("--height", type=int, default=480)
    ap.add_argument("--width", type=int, default=832)
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--layers", type=int, default=None, help="a reduced-depth DiT (default: the variant's)")
    ap.add_argument("--attention", default=None, help="the DiT's attention (xla | dot_product | blockwise)")
    ap.add_argument("--decoders", default="wan,tiny")
    ap.add_argument("--programs", default="later,first")
    a = ap.parse_args()
    full = dit_variant(a.variant).num_layers
    layers = a.layers or full
    print(f"fused block, {a.variant} ({layers} of {full} DiT layers), {a.height}x{a.width}, {a.dtype} params, "
          f"KV cache and activations; GiB")
    cols = ("arguments", "params_bytes", "state_bytes", "outputs", "alias", "temporaries")
    print(f"{'decoder':>7} | {'block':>5} | " + " | ".join(f"{c.replace('_bytes', ''):>11}" for c in cols)
          + " | state aliased | compile s")
    for dec in a.decoders.split(","):
        for prog in a.programs.split(","):
            spec, params = abstract_block(a.variant, (a.height, a.width), dec, a.dtype, a.layers, a.attention)
            m = block_memory(spec, params, first=prog == "first")
            print(f"{dec:>7} | {prog:>5} | " + " | ".join(f"{m[c] / GiB:11.3f}" for c in cols)
                  + f" | {m['alias'] >= m['state_bytes']!s:>13} | {m['compile_seconds']:9.1f}", flush=True)
            if layers != full:
                dit_layer = tree_bytes(params.dit) / layers
                kv_layer = tree_bytes(_kv(spec)) / layers
                more = full - layers
                args = m["arguments"] + more * (dit_layer + kv_layer)
                print(f"{'':>7} | {'':>5} | extrapolated to {full} layers: arguments {args / GiB:.3f}, state "
                      f"{(m['state_bytes'] + more * kv_layer) / GiB:.3f}, "
                      f"params {(m['params_bytes'] + more * dit_layer) / GiB:.3f} (per layer: DiT "
                      f"{dit_layer / GiB:.3f}, KV cache {kv_layer / GiB:.3f})", flush=True)


def _kv(spec):
    """The KV cache of the rollout state, as ShapeDtypeStructs."""
    import jax

    from star_jax.inference.rollout import init_rollout_state

    return jax.eval_shape(lambda: init_rollout_state(spec.dit.cfg, 1, spec.latent_hw, jax.random.PRNGKey(0))).kv


if __name__ == "__main__":
    main()
