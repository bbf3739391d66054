"""Four-image worlds as the InSpatio-World 1.5 release runs them: every view rendered into each
target frame and fused, and the block's source latents assigned to views by coverage.

    fused, counts = render_views(views, depth, K, w2c, K_target, target_w2c, recipe)  # counts (V, n)
    groups = latent_groups(n, first=True)               # output frames behind each latent
    overlap = group_coverage(counts, groups)            # (latents, V) covered pixels
    views_per_latent, top = assign_views(overlap)       # e.g. (2, 2, 0), (2, 0, 1)

The render: each of the V source views is warped into every target camera (the targets use
view 0's intrinsics, 1.5's "source_view_00_fixed") with the conditioning's warp recipe, and the
renders are fused by `warp.fuse_views` (hard z-test across views, ties to the lower view index).

The source clip: the Wan VAE encodes frame 0 alone and then groups of 4 frames, so a block of F
latents covers 1 + 4 (F - 1) output frames (the first block) or 4 F (later ones). For each
latent the views are scored by the pixels each one's own render covers (before fusion), summed
over the latent's frames; per block the top F views by total score are kept (ties to the lower
index) and assigned one per latent by the permutation with the largest summed score (ties to the
lexicographically smaller permutation). Every frame of a latent's group then shows its view's
image in the source clip, which the session encodes as the reference stream.
"""

from __future__ import annotations

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np

from star_jax.geometry.warp import WarpRecipe, WarpResult, fuse_views, warp_frames

def latent_groups(n: int, first: bool) -> list[slice]:
    """The output frames of each latent of a block of `n` frames: frame 0 alone, then groups of 4
    when `first` (the stream start), else groups of 4 from frame 0. Raises ValueError when `n`
    is not a whole number of latents."""
    start = 1 if first else 0
    if n < start or (n - start) % 4:
        raise ValueError(f"a {'first' if first else 'later'} block of {n} frames is not whole latents "
                         f"({'1 + ' if first else ''}4 k frames)")
    return ([slice(0, 1)] if first else []) + [slice(s, s + 4) for s in range(start, n, 4)]


def group_coverage(counts: np.ndarray, groups: list[slice]) -> np.ndarray:
    """counts (V, n) covered pixels per view and frame -> (len(groups), V) summed per latent."""
    counts = np.asarray(counts, np.int64)
    return np.stack([counts[:, g].sum(axis=1) for g in groups])


def assign_views(overlap: np.ndarray) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """overlap (L, V) int: pixels view v covers over latent l's frames -> (the view of each
    latent (L,), the L views kept, best first). Needs V >= L."""
    overlap = np.asarray(overlap, np.int64)
    L, V = overlap.shape
    if V < L:
        raise ValueError(f"assign_views: {L} latents need at least {L} views, got {V}")
    totals = overlap.sum(axis=0)
    top = tuple(sorted(range(V), key=lambda v: (-int(totals[v]), v))[:L])
    best = min(itertools.permutations(top), key=lambda p: (-int(sum(overlap[i, v] for i, v in enumerate(p))), p))
    return tuple(int(v) for v in best), top


@functools.partial(jax.jit, static_argnames=("out_hw", "recipe"))
def _render_all(rgb, depth, K, w2c, K_tgt, target_w2c, out_hw, recipe):
    n = target_w2c.shape[0]

    def one(r, d, k, w):
        rep = lambda x: jnp.broadcast_to(x, (n,) + x.shape)  # noqa: E731
        return warp_frames(rep(r), rep(d), rep(k), rep(w), K_tgt, target_w2c, out_hw=out_hw, recipe=recipe)

    return fuse_views(jax.lax.map(lambda a: one(*a), (rgb, depth, K, w2c)))


def render_views(views: np.ndarray, depth: np.ndarray, K: np.ndarray, w2c: np.ndarray, K_target: np.ndarray,
                 target_w2c: np.ndarray, recipe: WarpRecipe) -> tuple[WarpResult, np.ndarray]:
    """Every view into every target camera, fused.

    Args:
      views: (V, H, W, 3) float32 colours in [0, 1]; depth (V, H, W); K (V, 3, 3); w2c (V, 4, 4).
      K_target: (3, 3) intrinsics of every target; target_w2c (n, 4, 4).
      recipe: the warp recipe (static).
    Returns the fused WarpResult (n, H, W[, 3]) and counts (V, n) int: pixels each view's own
    render covers in each target frame."""
    views = jnp.asarray(views, jnp.float32)
    H, W = views.shape[1:3]
    fused, counts = _render_all(views, jnp.asarray(depth, jnp.float32), jnp.asarray(K, jnp.float32),
                                jnp.asarray(w2c, jnp.float32), jnp.asarray(K_target, jnp.float32),
                                jnp.asarray(target_w2c, jnp.float32), out_hw=(H, W), recipe=recipe)
    return fused, np.asarray(counts)


def assign_clip(counts: np.ndarray, frames_per_block: int = 3) -> tuple[np.ndarray, list[dict]]:
    """A whole clip at once, as the 1.5 release's render writes its source video: counts (V, T)
    covered pixels per view and target frame -> (the view behind each frame (T,), one record per
    block of `frames_per_block` latents: latent views, kept views, covered pixels). The latents
    are frame 0, then groups of 4 (the last may be short; so may the last block)."""
    counts = np.asarray(counts, np.int64)
    T = counts.shape[1]
    groups = [slice(0, 1)] + [slice(s, min(s + 4, T)) for s in range(1, T, 4)]
    src, records = np.zeros(T, np.int64), []
    for b in range(0, len(groups), frames_per_block):
        chunk = groups[b:b + frames_per_block]
        overlap = group_coverage(counts, chunk)
        chosen, kept = assign_views(overlap)
        for g, v in zip(chunk, chosen):
            src[g] = v
        records.append({"latent_views": list(chosen), "kept_views": list(kept), "overlap_pixels": overlap.tolist()})
    return src, records
