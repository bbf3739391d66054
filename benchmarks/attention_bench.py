"""Dense (Lq, Lk) bool masks against `AttentionMask` (key lengths, per-token block ids), same
process, same inputs: compiled peak memory and time of the DiT's self-attention patterns.

    python benchmarks/attention_bench.py                      # 240x416 video: 390 tokens / latent frame
    python benchmarks/attention_bench.py --tokens-per-frame 1560 --repeats 3   # 480x832 (slow on CPU)

Patterns (blocks of 3 latent frames): "causal" is block-causal self-attention over `--frames`
latent frames (training), forward and forward+backward; "read" is a block's 3 frames against a
6-frame cache plus itself, with the cache half valid (the first block) or full. Each dense mask is
built inside the compiled function, as the DiT did, from
frame ids / cache lengths passed in as arguments (so that XLA cannot fold it into a constant). Peak = XLA's compiled temp + argument + output
bytes (memory_analysis); time = median wall clock of `--repeats` calls after a warm-up call.
Runtime: about 2 minutes on 2 CPU cores at the defaults.
"""

from __future__ import annotations

import argparse
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.models.attention import AttentionMask, block_causal_mask, blockwise_attention, xla_attention
from star_jax.models.dit import cache_read_keys

MIB = 2.0**20


def peak_bytes(compiled) -> int:
    m = compiled.memory_analysis()
    return m.temp_size_in_bytes + m.argument_size_in_bytes + m.output_size_in_bytes


def measure(fn, args, repeats: int):
    """(peak bytes, median seconds) of jit(fn)(*args)."""
    compiled = jax.jit(fn).lower(*args).compile()
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(time.perf_counter() - t0)
    return peak_bytes(compiled), float(np.median(times))


def causal_fns(attend):
    """(dense, mask) block-causal self-attention of (q, k, v, frames (L,) int32 latent frame ids);
    the frame ids are an input (not compile-time constants that XLA would fold into the program)."""
    def dense(q, k, v, f):
        return attend(q, k, v, block_causal_mask(f, f, 3))

    def mask(q, k, v, f):
        return attend(q, k, v, AttentionMask(q_block=f // 3, k_block=f // 3))

    return dense, mask


def read_fns(attend):
    """(dense, mask) cache reads of (q, k, v own (B, L, N, D), ck, cv a cache (B, S, N, D), length ()
    int32 valid cache tokens); the dense form is the former layout [cache | own], (1, 1, L, S + L) mask."""
    def dense(q, k, v, ck, cv, length):
        L, S = q.shape[1], ck.shape[1]
        m = jnp.concatenate([jnp.broadcast_to((jnp.arange(S) < length)[None, None, None], (1, 1, L, S)),
                             jnp.ones((1, 1, L, L), bool)], axis=-1)
        return attend(q, jnp.concatenate([ck, k], 1), jnp.concatenate([cv, v], 1), m)

    def mask(q, k, v, ck, cv, length):
        kv_length = jnp.full((q.shape[0],), length + q.shape[1], jnp.int32)
        return attend(q, cache_read_keys(ck, k, length), cache_read_keys(cv, v, length), AttentionMask(kv_length))

    return dense, mask


def with_grad(fn, n_diff: int = 3):
    """fn's forward and the gradient of sum(out * w) w.r.t. its first `n_diff` inputs."""
    def loss(*args):
        out = fn(*args)
        return jnp.sum(out.astype(jnp.float32) * jnp.cos(out.astype(jnp.float32)))
    return jax.grad(loss, argnums=tuple(range(n_diff)))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tokens-per-frame", type=int, default=390)
    ap.add_argument("--frames", type=int, default=9, help="latent frames of the block-causal pattern")
    ap.add_argument("--heads", type=int, default=4)
    ap.add_argument("--head-dim", type=int, default=64)
    ap.add_argument("--chunk", type=int, default=512, help="blockwise chunk (tokens)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args(argv)
    tpf, N, D = args.tokens_per_frame, args.heads, args.head_dim
    rng = np.random.default_rng(0)
    arr = lambda L: jnp.asarray(rng.normal(size=(1, L, N, D)), jnp.float32)  # noqa: E731
    impls = {"xla": xla_attention, "blockwise": functools.partial(blockwise_attention, chunk=args.chunk)}

    L = args.frames * tpf
    qkv = (arr(L), arr(L), arr(L), jnp.arange(L, dtype=jnp.int32) // tpf)
    own = (arr(3 * tpf), arr(3 * tpf), arr(3 * tpf), arr(6 * tpf), arr(6 * tpf))
    cases = []
    for name, attend in impls.items():
        dense, mask = causal_fns(attend)
        cases.append((f"causal L={L}", name, "fwd", dense, mask, qkv))
        cases.append((f"causal L={L}", name, "fwd+bwd", with_grad(dense), with_grad(mask), qkv))
        dense, mask = read_fns(attend)
        for label, length in (("half", 3 * tpf), ("full", 6 * tpf)):
            cases.append((f"read {label} Lq={3 * tpf} Lk={9 * tpf}", name, "fwd", dense, mask,
                          own + (jnp.asarray(length, jnp.int32),)))

    print(f"backend {jax.default_backend()}, heads {N}, head dim {D}, float32, blockwise chunk {args.chunk}, "
          f"median of {args.repeats}")
    header = ("pattern", "impl", "pass", "dense MiB", "mask MiB", "ratio", "dense ms", "mask ms", "ratio", "max |diff|")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for pattern, impl, kind, dense, mask, inputs in cases:
        pd, td = measure(dense, inputs, args.repeats)
        pm, tm = measure(mask, inputs, args.repeats)
        a, b = jax.jit(dense)(*inputs), jax.jit(mask)(*inputs)
        diff = max(float(jnp.max(jnp.abs(x - y))) for x, y in zip(jax.tree_util.tree_leaves(a),
                                                                  jax.tree_util.tree_leaves(b)))
        print(f"| {pattern} | {impl} | {kind} | {pd / MIB:.1f} | {pm / MIB:.1f} | {pm / pd:.2f} | "
              f"{td * 1e3:.1f} | {tm * 1e3:.1f} | {tm / td:.2f} | {diff:.1e} |")


if __name__ == "__main__":
    main()
