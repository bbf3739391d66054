"""DMD and JDMD on 2-D Gaussian mixtures with analytic denoisers: does the student reach the target?

    python -m benchmarks.dmd_gmm [--out benchmarks/results/dmd_gmm.md] [--seeds 8] [--learned_seeds 3] [--quick]
    python -m benchmarks.dmd_gmm --long --out benchmarks/results/dmd_gmm_long.md

Every run uses star_jax.distill.gmm.train_dmd (the production `jdmd_direction` / `dmd_loss` /
`sample_dmd_sigmas`, Adam) on an affine-mixture student with the target's component weights.
Distances are sliced W2 (64 directions) between 4000 student samples and 4000 target samples; the
floor is the same distance between two independent target samples (what "equal" looks like).

1. DMD on a three-mode mixture, per seed of the student's initialisation: analytic critic
   (shift 5 as Self-Forcing, and shift 1), learned critic (an MLP trained by flow matching on the
   student's samples, 5 critic updates per generator update); and a two-mode mixture with the
   learned critic at the fast test's budget. A run converged when its final distance is below
   1.5x the floor. The others had not yet escaped a symmetric start (two components sharing two
   modes as one broad blob) when the cosine-decayed learning rate froze them; `--long` reruns the
   same seeds with more updates (benchmarks/results/dmd_gmm_long.md: 8 / 8 three-mode seeds reach
   the floor in 6000 updates, 3 / 3 two-mode seeds with the learned critic in 1500).
2. JDMD between two equal-covariance Gaussians T_c = N(mu_c, S), T_m = N(mu_m, S) (analytic
   critic): the fixed point should be N((1 - w) mu_c + w mu_m, S). Two rules for the direction:
   ours (`jdmd_direction`: the w-mixed teacher and critic predictions, one normaliser) and the
   rejected mix of separately normalised DMD directions (1 - w) D_c + w D_m.

Runtime: ~5 min CPU (the learned-critic runs dominate); --long ~6 min; --quick ~1.5 min. On the
shared 2-core machine of 2026-11-27 the default took 12 min wall.
"""

from __future__ import annotations

import argparse
import time

import jax
import numpy as np

from star_jax.distill import dmd_direction, jdmd_direction
from star_jax.distill.gmm import AffineMixtureGenerator, DMDToyConfig, mixture, sample_mixture, sliced_w2, train_dmd
from star_jax.io.files import atomic_path

THREE_MODES = mixture([1 / 3] * 3, [[-2.0, 0.0], [2.0, 0.5], [0.0, 2.5]],
                      [np.diag([0.3, 0.6]), [[0.5, 0.2], [0.2, 0.3]], np.diag([0.4, 0.2])])
TWO_MODES = mixture([0.5, 0.5], [[-1.5, 0.0], [1.5, 1.0]], [np.diag([0.3, 0.5]), [[0.4, 0.15], [0.15, 0.3]]])
JDMD_COV = [[0.5, 0.15], [0.15, 0.3]]
TEACHER_C = mixture([1.0], [[-3.0, 0.0]], [JDMD_COV])
TEACHER_M = mixture([1.0], [[3.0, 1.5]], [JDMD_COV])
N_EVAL = 4000
CHECK_EVERY = 50


def separately_normalised(x, x_real_c, x_fake_c, x_real_m, x_fake_m, weight):
    """The rejected JDMD rule: (1 - w) D_c + w D_m, each stream normalised by its own mean|X - x_real|."""
    if weight == 0.0:
        return dmd_direction(x, x_real_c, x_fake_c)
    return (1.0 - weight) * dmd_direction(x, x_real_c, x_fake_c) + weight * dmd_direction(x, x_real_m, x_fake_m)


def dmd_runs(target, cfg: DMDToyConfig, seeds) -> dict:
    """Trains one student per seed; returns the distances, the steps to reach 1.5x the floor and
    the CPU seconds per run."""
    gen = AffineMixtureGenerator(target.weights)
    ref = sample_mixture(jax.random.PRNGKey(100), target, N_EVAL)
    floor = sliced_w2(sample_mixture(jax.random.PRNGKey(101), target, N_EVAL), ref)
    dist = lambda p: sliced_w2(gen.sample(p, jax.random.PRNGKey(5), N_EVAL), ref)
    rows = []
    for seed in seeds:
        p0 = gen.init(jax.random.PRNGKey(seed), 2)
        start = time.process_time()
        res = train_dmd(gen, p0, target, cfg)
        jax.block_until_ready(res.params)
        cpu = time.process_time() - start
        trace = [(k, dist(jax.tree.map(lambda h: h[k], res.history)))
                 for k in range(0, cfg.steps + 1, CHECK_EVERY)]
        reached = next((k for k, d in trace if d < 1.5 * floor), None)
        rows.append(dict(seed=seed, initial=dist(p0), final=dist(res.params), reached=reached, cpu=cpu))
    return dict(floor=floor, rows=rows)


def jdmd_sweep(weights, direction, steps: int) -> list[dict]:
    gen = AffineMixtureGenerator(TEACHER_C.weights)
    p0 = gen.init(jax.random.PRNGKey(0), 2)
    mu_c, mu_m = np.asarray(TEACHER_C.means[0], np.float64), np.asarray(TEACHER_M.means[0], np.float64)
    delta = mu_m - mu_c
    out = []
    for w in weights:
        res = train_dmd(gen, p0, TEACHER_C, DMDToyConfig(steps=steps, batch=256, lr=0.05, jdmd_weight=w),
                        teacher_m=TEACHER_M, direction=direction)
        q = gen.distribution(res.params)
        mean, cov = np.asarray(q.means[0], np.float64), np.asarray(q.covs[0], np.float64)
        out.append(dict(w=w, along=float(np.dot(mean - mu_c, delta) / np.dot(delta, delta)),
                        mean_err=float(np.linalg.norm(mean - (1 - w) * mu_c - w * mu_m) / np.linalg.norm(delta)),
                        cov_err=float(np.abs(cov - np.asarray(JDMD_COV)).max()),
                        var_ratio=float(np.trace(cov) / np.trace(np.asarray(JDMD_COV)))))
    return out


def _dmd_row(name, runs, steps):
    rows, floor = runs["rows"], runs["floor"]
    ok = [r for r in rows if r["final"] < 1.5 * floor]
    reached = [r["reached"] for r in ok if r["reached"] is not None]
    return (f"| {name} | {len(ok)} / {len(rows)} | {np.median([r['initial'] for r in rows]):.3f} | "
            f"{np.median([r['final'] for r in ok]) if ok else float('nan'):.3f} | "
            f"{max(r['final'] for r in rows):.3f} | {floor:.3f} | "
            f"{int(np.median(reached)) if reached else '-'} / {steps} | {np.mean([r['cpu'] for r in rows]):.1f} |")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="benchmarks/results/dmd_gmm.md")
    ap.add_argument("--seeds", type=int, default=8, help="student initialisations per analytic-critic setup")
    ap.add_argument("--learned_seeds", type=int, default=3, help="initialisations per learned-critic setup")
    ap.add_argument("--quick", action="store_true", help="short runs, 2 seeds (a smoke test of the script)")
    ap.add_argument("--long", action="store_true", help="only the long-budget DMD rows (no JDMD table)")
    a = ap.parse_args(argv)
    scale = 0.2 if a.quick else 1.0
    seeds = range(2 if a.quick else a.seeds)
    learned_seeds = range(1 if a.quick else a.learned_seeds)
    n = lambda steps: max(CHECK_EVERY, int(steps * scale) // CHECK_EVERY * CHECK_EVERY)
    fast_learned = dict(critic="learned", batch=256, lr=0.03, critic_hidden=64, critic_warmup=300, critic_lr=3e-3)
    setups = [
        ("3 modes, analytic critic, shift 5", THREE_MODES, DMDToyConfig(steps=n(1500)), seeds),
        ("3 modes, analytic critic, shift 1", THREE_MODES, DMDToyConfig(steps=n(1500), shift=1.0), seeds),
        ("3 modes, learned critic (5:1), shift 5", THREE_MODES, DMDToyConfig(steps=n(1500), critic="learned"),
         learned_seeds),
        ("2 modes, learned critic (5:1), test budget", TWO_MODES, DMDToyConfig(steps=n(400), **fast_learned),
         learned_seeds),
    ]
    if a.long:  # the same seeds with more updates at a high learning rate
        setups = [
            ("3 modes, analytic critic, shift 5, long", THREE_MODES, DMDToyConfig(steps=n(6000)), seeds),
            ("2 modes, learned critic (5:1), long", TWO_MODES, DMDToyConfig(steps=n(1500), **fast_learned),
             learned_seeds),
        ]
    lines = ["# DMD / JDMD on 2-D Gaussian mixtures with analytic denoisers", "",
             "Produced by `python -m benchmarks.dmd_gmm" + (" --quick" if a.quick else "")
             + (" --long" if a.long else "")
             + "` (see its docstring; "
             "tests/distill/test_gmm.py asserts the same facts at smaller budgets). Distances: sliced W2 between "
             f"{N_EVAL} student and {N_EVAL} target samples; floor: two independent target samples. CPU s: process "
             "time per run on the shared 2-core machine, compilation included.", "",
             "## DMD: the student reaches the target", "",
             "| setup | converged (final < 1.5x floor) | initial (median) | final (median, converged) | final (worst) "
             "| floor | steps to 1.5x floor (median) | CPU s / run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    details = []
    for name, target, cfg, run_seeds in setups:
        runs = dmd_runs(target, cfg, run_seeds)
        lines.append(_dmd_row(name, runs, cfg.steps))
        details.append(f"- {name}: final per seed " + ", ".join(f"{r['seed']}: {r['final']:.3f}" for r in runs["rows"]))
    lines += ["", "Per seed:", ""] + details
    if a.long:
        return _write(a.out, lines)
    weights = (0.0, 0.25, 0.5, 0.75, 1.0)
    steps = n(400)
    ours, rejected = jdmd_sweep(weights, jdmd_direction, steps), jdmd_sweep(weights, separately_normalised, steps)
    lines += ["", "## JDMD: the fixed point is the geometric mixture of the two teachers", "",
              f"T_c = N({np.asarray(TEACHER_C.means[0]).tolist()}, S), "
              f"T_m = N({np.asarray(TEACHER_M.means[0]).tolist()}, S), "
              f"S = {JDMD_COV}; analytic critic, {steps} generator updates. Position: the student's mean projected "
              "on mu_c -> mu_m (0 = T_c, 1 = T_m; the answer is w). Mean error in units of |mu_m - mu_c|; covariance "
              "error max |entry - S|; variance ratio tr(cov) / tr(S) (the answer is 1).", "",
              "| w | position (ours) | mean error | cov error | var ratio | position (separate norms, rejected) "
              "| mean error | cov error | var ratio |",
              "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for o, r in zip(ours, rejected):
        lines.append(f"| {o['w']:.2f} | {o['along']:.4f} | {o['mean_err']:.1e} | {o['cov_err']:.1e} "
                     f"| {o['var_ratio']:.3f} "
                     f"| {r['along']:.4f} | {r['mean_err']:.1e} | {r['cov_err']:.2f} | {r['var_ratio']:.2f} |")
    _write(a.out, lines)


def _write(path: str, lines: list[str]) -> None:
    text = "\n".join(lines) + "\n"
    print(text)
    with atomic_path(path) as tmp, open(tmp, "w", encoding="utf-8") as f:
        f.write(text)


if __name__ == "__main__":
    main()
