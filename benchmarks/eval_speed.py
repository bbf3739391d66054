"""How long does `star_jax.evaluate` take on a 45-frame 480x832 clip on this CPU? (issue 10: well
under a minute.)

    python -m benchmarks.eval_speed [--seed 69] [--frames 45] [--repeats 1]

A procedural world (`data_pipelines.worlds`, held-out seed) is rendered along its target camera
path at 480x832 and at the tiny 96x160 (the reference run, in the same process), with its true
cameras as the commanded path; the generated video is the truth plus seeded noise (sigma 4/255)
so the ground-truth metrics have something to measure. The table gives the seconds of each
estimator (`Evaluation.seconds`, best of `--repeats`) at both sizes, the ratio, and every metric's
raw value and score at 480x832. Rendering the world is not timed. The table goes to stdout and
benchmarks/results/eval_speed.md.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np

SIZES = ((96, 160), (480, 832))


def make_clip(seed: int, hw: tuple[int, int], frames: int):
    """-> (truth (T, H, W, 3) uint8, generated (same), w2c (T, 4, 4), K (3, 3)) of one world."""
    import dataclasses

    from data_pipelines.worlds import raycast
    from data_pipelines.worlds.sample import WorldSpec, sample_world

    small = WorldSpec(height=96, width=160, num_frames=frames, supersample=1)
    world = sample_world(seed, small)
    spec = dataclasses.replace(small, height=hw[0], width=hw[1])
    K = spec.intrinsics()
    if hw == (96, 160):
        truth = world.target_rgb
    else:  # the ray caster's View.rgb is float in [0, 1]
        rgb = raycast.render_video(world.scene, K, world.target_w2c, hw, spec.times(), supersample=1).rgb
        truth = (np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    rng = np.random.default_rng(seed)
    gen = np.clip(truth.astype(np.float32) + rng.normal(0, 4, truth.shape), 0, 255).astype(np.uint8)
    return truth, gen, world.target_w2c, K


def main(argv=None) -> int:
    from star_jax.evaluate import evaluate
    from star_jax.io.files import atomic_path

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=69)
    p.add_argument("--frames", type=int, default=45)
    p.add_argument("--repeats", type=int, default=1)
    p.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "eval_speed.md"))
    a = p.parse_args(argv)

    runs = {}
    for hw in SIZES:
        truth, gen, w2c, K = make_clip(a.seed, hw, a.frames)
        best = None
        for _ in range(a.repeats):
            r = evaluate(gen, w2c=w2c, K=K, truth=truth)
            if best is None or r.seconds["total"] < best.seconds["total"]:
                best = r
        runs[hw] = best
    small, big = runs[SIZES[0]], runs[SIZES[1]]
    keys = [k for k in big.seconds if k != "total"] + ["total"]
    lines = [f"# evaluate: seconds on this CPU ({os.cpu_count()} cores), {a.frames} frames, world seed {a.seed}", "",
             "| stage | 96x160 s | 480x832 s | ratio |", "|---|---|---|---|"]
    for k in keys:
        s, b = small.seconds.get(k, float("nan")), big.seconds[k]
        lines.append(f"| {k} | {s:.2f} | {b:.2f} | {b / s if s else float('nan'):.1f}x |")
    lines += ["", "| metric (480x832) | raw | score x100 |", "|---|---|---|"]
    for m in big.metrics:
        raw = m.reason if not m.ok else (
            ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in m.raw.items())
            if isinstance(m.raw, dict) else f"{m.raw:.4g}")
        lines.append(f"| {m.name} | {raw} | {'' if m.score is None else f'{100 * m.score:.1f}'} |")
    agg = big.aggregate["score"]
    lines += ["", f"aggregate (measured aspects): {'n/a' if agg is None else f'{agg:.2f}'}"]
    text = "\n".join(lines) + "\n"
    print(text)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with atomic_path(a.out) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
