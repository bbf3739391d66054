"""Navigation speed: frames/s and per-block latency, and where the time goes.

    python -m benchmarks.rollout_bench                   # CPU: tiny variant, small frames (CI-sized)
    python -m benchmarks.rollout_bench --gpu             # GPU: 1.3B, 480x832, bf16, random weights

Four tables, printed (0), (2), (1), (3). (0) FLOPs per block of the 1.3B at 480x832 by stage
(DiT analytic, the VAE parts counted by XLA on abstract shapes) and the roofline FPS at an H100's
dense bf16 peak, with either decoder (`--roofline_only` prints it alone, in seconds on a CPU).
(1) The streaming session, steady state (after the compiling blocks): per-block latency split
into warp / VAE encode / DiT / VAE decode, frames/s, and the ratio to the 24 FPS the release
reports. (2) The session's changes before / after, same process, same clip and cameras:
the reference encoded per block beside the renders (before), encoded once per session (the
one-time encode is reported apart: the first block pays it), and then decoded by the TAEHV tiny
decoder instead of the Wan VAE's (random weights of the variant's TAEHV), and then each block as one
compiled program with the carried state donated (`fused=True`, either decoder: its stages are not
timed apart, only the total); per-block stage seconds, frames/s and the ratio to the first row.
(3) The DiT rollout alone: the jitted `lax.scan` over N blocks against the same blocks called one
by one from Python (the reference run, same process), blocks/s and ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import time

import jax
import jax.numpy as jnp
import numpy as np

from benchmarks.common import best_time
from star_jax.io.manifest import planar_prior_geometry
from star_jax.inference import NavigationSession, StarConditions, init_rollout_state, random_star_model, rollout
from star_jax.inference.rollout import star_block_jit
from star_jax.models import WanDiT

RELEASE_FPS = 24.0


STAGES = ("warp", "encode", "dit", "decode", "total")


def _run_session(model, height: int, width: int, blocks: int, **session_kw) -> tuple[dict, float, NavigationSession]:
    """(seconds per steady-state block by stage, frames/s, the session)."""
    T = 9 + 12 * (blocks - 1)
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (T, height, width, 3), dtype=np.uint8)
    session = NavigationSession(model, frames, planar_prior_geometry(T, height, width, 2.0), **session_kw)
    lat = []
    for _ in range(blocks):
        out = session.step(keys=[{"forward", "yaw_left"}] * session.frames_needed())
        lat.append((len(out.frames), out.latency))
    steady = lat[2:]  # blocks 0 and 1 compile (and block 0 encodes the reference once)
    n = sum(k for k, _ in steady)
    tot = {s: sum(x.get(s, float("nan")) for _, x in steady) / len(steady) for s in STAGES}  # fused: total only
    return tot, n / len(steady) / tot["total"], session


SESSIONS = {  # name in --sessions: (row label, NavigationSession keywords)
    "per_block": ("reference per block, Wan decoder (before)", dict(reference_once=False)),
    "once": ("reference once, Wan decoder", dict()),
    "tiny": ("reference once, TAEHV decoder", dict(decoder="tiny")),
    "fused": ("one program per block, Wan decoder", dict(fused=True)),
    "fused_tiny": ("one program per block, TAEHV decoder", dict(fused=True, decoder="tiny")),
}


def changes_table(model, height: int, width: int, blocks: int, sessions=tuple(SESSIONS)) -> list[dict]:
    """Table (2): before / after each change of the session, same process (`sessions`: keys of SESSIONS)."""
    rows = []
    for key in sessions:
        name, kw = SESSIONS[key]
        tot, fps, session = _run_session(model, height, width, blocks, **kw)
        rows.append(dict(name=name, fps=fps, reference=session.reference_metadata(), **tot))
    print(f"\nsession changes, {height}x{width}, {blocks - 2} steady-state blocks of 12 frames, s / block")
    print(f"{'session':>42} | " + " | ".join(f"{s:>7}" for s in STAGES) + " | frames/s | ratio")
    for r in rows:
        print(f"{r['name']:>42} | " + " | ".join(f"{r[s]:7.3f}" for s in STAGES)
              + f" | {r['fps']:8.2f} | {r['fps'] / rows[0]['fps']:.2f}")
    once = [r for r in rows if r["reference"].get("cached_latents")]
    if len(once) >= 2:
        ref, warm = once[0]["reference"], once[1]["reference"]
        print(f"one-time reference encode (in block 0): {ref['cached_latents']} latents "
              f"(a cycle of {ref['cycle_latents']}) in {ref['seconds']:.2f}s with compiling, "
              f"{warm['seconds']:.2f}s compiled (a later session); "
              f"encode per block {rows[0]['encode']:.3f}s -> {once[0]['encode']:.3f}s")
    return rows


def session_table(row: dict, height: int, width: int) -> None:
    """Table (1), from the default session's row of table (2) (not run twice)."""
    print(f"\nstreaming session ({row['name']}), {height}x{width}, steady state")
    print(f"{'stage':>8} | {'s / block':>9} | {'share':>6}")
    for s in STAGES:
        print(f"{s:>8} | {row[s]:9.4f} | {row[s] / row['total']:6.1%}")
    fps = row["fps"]
    print(f"frames/s {fps:.2f}  (x{fps / RELEASE_FPS:.3f} of the release's {RELEASE_FPS:g} FPS on an H-series GPU)")


def scan_table(model, latent_hw, blocks: int, repeats: int) -> None:
    cfg = model.dit.cfg
    n = 3 * blocks
    r = np.random.default_rng(1)
    cond = StarConditions(*(jnp.asarray(r.normal(size=(1, n, *latent_hw, c)).astype(np.float32)) for c in (16, 16, 4)))
    key = jax.random.PRNGKey(0)

    def scan():
        jax.block_until_ready(rollout(model.dit, model.dit_params, model.text, cond, key))

    def loop():
        state = init_rollout_state(cfg, 1, latent_hw, key)
        for b in range(blocks):
            state, x = star_block_jit(model.dit, model.dit_params, state, model.text, cond.frames(3 * b, 3 * b + 3))
        jax.block_until_ready(x)

    t_scan, t_loop = best_time(scan, repeats), best_time(loop, repeats)
    print(f"\nDiT rollout, {blocks} blocks, latent {latent_hw[0]}x{latent_hw[1]}")
    print(f"{'path':>22} | {'s':>8} | {'blocks/s':>8} | ratio")
    print(f"{'python loop (ref)':>22} | {t_loop:8.4f} | {blocks / t_loop:8.2f} | 1.00")
    print(f"{'lax.scan (jit once)':>22} | {t_scan:8.4f} | {blocks / t_scan:8.2f} | {t_loop / t_scan:.2f}")


def _hlo_flops(fn, *args) -> float:
    """XLA's FLOP count of `fn` on abstract `args` (from the lowered HLO: nothing is compiled or run)."""
    cost = jax.jit(fn).lower(*args).cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float(cost["flops"])


def roofline(variant: str = "1.3B", hw: tuple[int, int] = (480, 832)) -> dict:
    """FLOPs of one steady-state block (12 frames, 3 latent frames) of the session by stage: the DiT
    (context fill + 4 steps, analytic `dit_flops`), the render encode (3 chunks of 4 frames of the
    Wan encoder) and the decode (Wan or TAEHV, 3 latent frames), the VAE parts counted by XLA on
    the lowered HLO of one chunk (abstract shapes: nothing is allocated). The warp is not counted
    (scatters, not arithmetic)."""
    from star_jax.models import taehv, vae as vae_lib
    from star_jax.models.flops import dit_flops
    from star_jax.models.variants import dit_variant, vae_variant

    H, W = hw
    cfg = dit_variant(variant)
    tpf = (H // 16) * (W // 16)
    dit = dit_flops(cfg, 6, tpf, cfg.text_len) + 4 * dit_flops(cfg, 3, tpf, cfg.text_len, cache_frames=6)
    vae = vae_lib.WanVAE(vae_variant(variant))
    f32 = jnp.float32
    params = jax.eval_shape(lambda: vae_lib.init_vae_params(vae, jax.random.PRNGKey(0), 16, 16))
    frame1, frames4 = (jax.ShapeDtypeStruct((1, n, H, W, 3), f32) for n in (1, 4))
    lat1 = jax.ShapeDtypeStruct((1, 1, H // 8, W // 8, vae.cfg.z_dim), f32)
    _, enc_cache = jax.eval_shape(lambda p, x: vae_lib.encode_chunk(vae, p, x, None, True), params, frame1)
    _, dec_cache = jax.eval_shape(lambda p, z: vae_lib.decode_chunk(vae, p, z, None, True), params, lat1)
    encode = 3 * _hlo_flops(lambda p, x, c: vae_lib.encode_chunk(vae, p, x, c, False), params, frames4, enc_cache)
    wan = 3 * _hlo_flops(lambda p, z, c: vae_lib.decode_chunk(vae, p, z, c, False), params, lat1, dec_cache)
    tae = taehv.TAEHV(taehv.taehv_variant("tiny" if variant == "tiny" else "wan2.1"))
    state = jax.eval_shape(lambda: taehv.init_decode_state(tae, 1, (H // 8, W // 8)))
    tiny = 3 * _hlo_flops(lambda p, z, s: taehv.decode_chunk(tae, p, z, s), taehv.taehv_param_shapes(tae), lat1, state)
    return dict(dit=dit, encode=encode, wan=wan, tiny=tiny)


def roofline_table(variant: str = "1.3B", hw: tuple[int, int] = (480, 832)) -> dict:
    """Table (0): FLOPs per block by stage and the FPS each pipeline would reach at an H100 / H200's
    dense bf16 peak if every stage ran at peak (an upper bound; convolutions run well below it)."""
    from star_jax.models.flops import PEAK_BF16_TFLOPS

    f = roofline(variant, hw)
    peak = PEAK_BF16_TFLOPS["H100"] * 1e12
    print(f"\nper-block FLOPs, {variant} at {hw[0]}x{hw[1]} (12 frames / block), roofline at "
          f"{peak / 1e12:g} TFLOP/s (H100 / H200 dense bf16)")
    print(f"{'stage':>24} | {'TFLOP':>8} | {'ms at peak':>10}")
    for name, key in (("DiT (fill + 4 steps)", "dit"), ("render encode (Wan)", "encode"),
                      ("decode (Wan)", "wan"), ("decode (TAEHV)", "tiny")):
        print(f"{name:>24} | {f[key] / 1e12:8.2f} | {f[key] / peak * 1e3:10.1f}")
    for name, dec in (("Wan decoder", "wan"), ("TAEHV decoder", "tiny")):
        total = f["dit"] + f["encode"] + f[dec]
        print(f"roofline FPS, {name}: {12 * peak / total:.1f}  (DiT {f['dit'] / total:.0%} of the FLOPs)")
    return f


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gpu", action="store_true", help="1.3B, 480x832, bf16 (needs a GPU)")
    ap.add_argument("--variant", default=None)
    ap.add_argument("--height", type=int, default=None)
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--blocks", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--attention", default=None,
                    help="the DiT's attention implementation (xla | dot_product | blockwise); default: the variant's")
    ap.add_argument("--sessions", default=",".join(SESSIONS), help=f"rows of table (2), from {list(SESSIONS)}")
    ap.add_argument("--no_scan", action="store_true", help="skip table (3), the DiT rollout alone")
    ap.add_argument("--roofline_only", action="store_true", help="print table (0) for the 1.3B at 480x832 and stop")
    a = ap.parse_args()
    sessions = a.sessions.split(",")
    if not set(sessions) <= set(SESSIONS):
        raise SystemExit(f"--sessions: expected names from {list(SESSIONS)}, got {sessions}")
    if a.gpu and jax.default_backend() != "gpu":
        raise SystemExit("--gpu: no GPU backend here")
    roofline_table()  # table (0): the 1.3B at 480x832 whatever runs below (abstract shapes: seconds on a CPU)
    if a.roofline_only:
        return
    variant = a.variant or ("1.3B" if a.gpu else "tiny")
    h, w = (a.height or (480 if a.gpu else 96)), (a.width or (832 if a.gpu else 160))
    t0 = time.perf_counter()
    model = random_star_model(variant, jax.random.PRNGKey(0), "bfloat16" if a.gpu else "float32")
    if a.attention:
        model = dataclasses.replace(model, dit=WanDiT(dataclasses.replace(model.dit.cfg, attention=a.attention),
                                                      block_causal=True))
    print(f"device {jax.devices()[0].device_kind}, variant {variant}, {model.dit.cfg.dtype}, "
          f"attention {model.dit.cfg.attention}, init {time.perf_counter() - t0:.1f}s")
    rows = changes_table(model, h, w, max(a.blocks, 3), sessions)
    staged = [r for r, k in zip(rows, sessions) if not SESSIONS[k][1].get("fused")] or rows
    session_table(rows[sessions.index("once")] if "once" in sessions else staged[-1], h, w)  # stage shares: staged
    if not a.no_scan:
        scan_table(model, (h // 8, w // 8), a.blocks, a.repeats)


if __name__ == "__main__":
    main()
