"""Teacher train-step cost: what remat and the attention implementation buy, measured through the
trainer's own setup (mesh, shardings, donation) on the teacher config (synthetic data).

    python -m benchmarks.train_bench                        # (i) + (ii): ~15 min on 2 shared cores
    python -m benchmarks.train_bench --skip_1p3b            # (i) only: ~4 min (four compiles)
    python -m benchmarks.train_bench --gpu --batch 2 --steps 3 --attention dot_product,blockwise   # (iii)

(i) the tiny teacher (experiments/train_teacher.py:variant=tiny) on the CPU: steps/s for
    attention xla / blockwise x remat off / on, each as a ratio to the first row, in one process.
(ii) the 1.3B teacher (variant=1.3B: 480x832, 12 latent frames, 37,440 tokens per example, bf16
    compute, float32 master weights and Adam, EMA) at batch 8 on an 8-device CPU mesh (fsdp,
    a subprocess with --xla_force_host_platform_device_count=8): compiled only, never run; XLA's
    memory analysis per device (arguments = the sharded state and batch, outputs, temporaries;
    XLA:CPU reports no generated-code size) for remat off / on x attention, against an 80 GB
    accelerator; plus the fitting configuration on one device at batch 2 and 4 (what one GPU
    holds: the state unsharded), and the
    analytic FLOPs per step (star_jax.models.flops: 3 forwards, 4 with full remat). Seven compiles of
    55-100 s each; peak host memory a few GB.
(iii) --gpu: the 1.3B teacher really trained on one GPU (bf16, remat nothing_saveable, the
    attention(s) of --attention, default dot_product = cuDNN flash) at --batch examples per step:
    step time, TFLOP/s and MFU (model FLOPs = 3 forwards; peak from star_jax.models.flops),
    peak device memory. No data needed. Writes benchmarks/results/train_bench_<device>.md.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

N_DEVICES_1P3B = 8  # CPU devices forced in the compile subprocess
# (attention, remat, devices, batch): the 8-device fsdp rows, then one device (a single GPU's view)
ROWS_1P3B = (("xla", "none", 8, 8), ("xla", "nothing_saveable", 8, 8), ("blockwise", "none", 8, 8),
             ("blockwise", "nothing_saveable", 8, 8), ("blockwise", "dots_with_no_batch_dims_saveable", 8, 8),
             ("blockwise", "nothing_saveable", 1, 2), ("blockwise", "nothing_saveable", 1, 4))
GB = 1e9


def teacher_config(variant: str, attention: str, remat: str, batch: int, mesh: str = "1x-1x1", chunk: int = 1024,
                   **extra):
    from experiments.train_teacher import get_config

    args = ",".join([f"variant={variant}", f"batch={batch}", f"mesh={mesh}", "examples=64", "steps=100",
                     "workdir=/tmp/train_bench_unused"] + [f"{k}={v}" for k, v in extra.items()])
    config = get_config(args)
    with config.unlocked():
        config.model.dit.attention = attention
        config.model.dit.attention_chunk = chunk
        config.model.dit.remat = remat
        config.run.tensorboard = False
    return config


def synthetic_batch(s, seed: int = 0):
    """A global batch of the task's spec on the run's batch sharding (random latents, +-1 mask)."""
    import jax
    import jax.numpy as jnp

    out = {}
    for i, (name, spec) in enumerate(sorted(s.global_spec.items())):
        key = jax.random.fold_in(jax.random.key(seed), i)
        x = jax.random.normal(key, spec.shape, jnp.float32)
        out[name] = jax.device_put(jnp.sign(x) if name == "mask" else x, s.batch_sharding).astype(spec.dtype)
    return out


def time_steps(s, steps: int):
    """(compile s, best step s, compiled) for `steps` timed steps after one warm-up step."""
    import jax

    from star_jax.train.step import init_on_mesh

    t0 = time.perf_counter()
    compiled = s.compile()
    compile_s = time.perf_counter() - t0
    state = init_on_mesh(s.init_fn, s.shardings, s.mesh, jax.random.PRNGKey(0))
    batch = synthetic_batch(s)
    state, metrics = compiled(state, batch)
    jax.block_until_ready(metrics)
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        state, metrics = compiled(state, batch)
        jax.block_until_ready(metrics)
        times.append(time.perf_counter() - t)
    if not np.isfinite(float(metrics["loss"])):
        raise RuntimeError(f"non-finite loss {float(metrics['loss'])}")
    return compile_s, float(np.median(times)), compiled


def tiny_cpu(steps: int) -> list[str]:
    import jax

    from star_jax.train.loop import setup

    rows = []
    for attention, remat in (("xla", "none"), ("xla", "nothing_saveable"), ("blockwise", "none"),
                             ("blockwise", "nothing_saveable")):
        s = setup(teacher_config("tiny", attention, remat, batch=8, chunk=128), devices=jax.devices()[:1])
        compile_s, step_s, compiled = time_steps(s, steps)
        temp = compiled.memory_analysis().temp_size_in_bytes
        rows.append((attention, remat, compile_s, step_s, temp))
    ref = rows[0][3]
    lines = [f"Tiny teacher step on CPU ({jax.devices()[0].device_kind}, {os.cpu_count()} cores), batch 8, "
             f"96x160 (6 latent frames x 60 tokens), float32; blockwise chunk 128; median of {steps} steps:", "",
             "| attention | remat | compile s | step ms | steps/s | vs xla, no remat | XLA temp MB |",
             "|---|---|---:|---:|---:|---:|---:|"]
    for attention, remat, compile_s, step_s, temp in rows:
        lines.append(f"| {attention} | {remat} | {compile_s:.1f} | {step_s * 1e3:.0f} | {1 / step_s:.2f} | "
                     f"{ref / step_s:.2f}x | {temp / 1e6:.1f} |")
    return lines


def compile_1p3b_rows() -> list[dict]:
    """In this process (8 CPU devices already forced): one dict per ROWS_1P3B configuration."""
    import jax

    from star_jax.train.loop import setup

    out = []
    for attention, remat, devices, batch in ROWS_1P3B:
        s = setup(teacher_config("1.3B", attention, remat, batch=batch, mesh="1x-1x1"), devices=jax.devices()[:devices])
        t0 = time.perf_counter()
        m = s.compile().memory_analysis()
        fwd = s.task.flops_per_example * s.run.batch_size
        out.append(dict(attention=attention, remat=remat, compile_s=time.perf_counter() - t0,
                        argument=m.argument_size_in_bytes, output=m.output_size_in_bytes,
                        temp=m.temp_size_in_bytes, code=m.generated_code_size_in_bytes,
                        alias=m.alias_size_in_bytes, devices=devices, batch=batch, params=s.num_params,
                        model_flops=3 * fwd, hw_flops=(4 if remat != "none" else 3) * fwd))
        print(json.dumps(out[-1]), flush=True)
    return out


def compile_1p3b(timeout_s: int) -> list[str]:
    env = dict(os.environ, XLA_FLAGS=f"--xla_force_host_platform_device_count={N_DEVICES_1P3B}",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-m", "benchmarks.train_bench", "--_compile_rows"], env=env,
                          capture_output=True, text=True, timeout=timeout_s,
                          cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not rows:
        raise RuntimeError(f"1.3B compile subprocess failed ({proc.returncode}): {proc.stderr[-2000:]}")
    r0 = rows[0]
    per_example = r0["model_flops"] / r0["batch"]
    lines = [f"1.3B teacher ({r0['params'] / 1e9:.2f} B params), 480x832, 12 latent frames (37,440 tokens per "
             f"example), on CPU devices (fsdp over the devices: 8 devices = one example each), bf16 compute, "
             f"float32 state (params, Adam, EMA), compiled only; XLA memory analysis per device, GB (donated "
             f"state: outputs alias the arguments). Model FLOPs per example {per_example / 1e15:.2f} PFLOP "
             f"(3 forwards); with remat the hardware does 4 forwards ({per_example * 4 / 3 / 1e15:.2f} PFLOP).", "",
             "| devices | batch | attention | remat | arguments | outputs | temporaries | args + temp | fits 80 GB "
             "| compile s |",
             "|---:|---:|---|---|---:|---:|---:|---:|:---:|---:|"]
    for r in rows:
        total = r["argument"] + r["temp"]
        lines.append(f"| {r['devices']} | {r['batch']} | {r['attention']} | {r['remat']} | {r['argument'] / GB:.2f} | "
                     f"{r['output'] / GB:.2f} | "
                     f"{r['temp'] / GB:.2f} | {total / GB:.2f} | "
                     f"{'yes' if total < 80 * GB else 'no'} | {r['compile_s']:.0f} |")
    return lines


def gpu(batch: int, steps: int, attentions: list[str], remat: str, variant: str = "1.3B") -> list[str]:
    import jax

    from star_jax.models.flops import peak_tflops
    from star_jax.train.loop import setup

    dev = jax.devices()[0]
    peak = peak_tflops(dev.device_kind)
    size = "480x832, 12 latent frames (37,440 tokens per example)" if variant == "1.3B" else "its config's size"
    lines = [f"{variant} teacher train step on one {dev.device_kind} (JAX {jax.__version__}): {size}, batch {batch}, "
             f"{'bf16' if variant == '1.3B' else 'float32'} compute, float32 master weights + AdamW + EMA, "
             f"remat {remat}; median of {steps} steps after a warm-up step; model FLOPs = 3 forwards "
             f"(peak {peak} TFLOP/s bf16 dense).", "",
             "| attention | compile s | step s | examples/s | model TFLOP/s | MFU | peak memory GB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for attention in attentions:
        s = setup(teacher_config(variant, attention, remat, batch=batch, mesh="1x1x1"), devices=[dev])
        try:
            compile_s, step_s, _ = time_steps(s, steps)
        except Exception as e:  # noqa: BLE001 - e.g. out of memory at this batch: a row saying so
            lines.append(f"| {attention} | failed: {type(e).__name__}: {str(e).splitlines()[0][:120]} | | | | | |")
            print(lines[-1], flush=True)
            continue
        tflops = s.flops_per_step / step_s / 1e12
        mem = (dev.memory_stats() or {}).get("peak_bytes_in_use", float("nan"))
        mfu = f"{tflops / peak:.1%}" if peak else "n/a"
        lines.append(f"| {attention} | {compile_s:.0f} | {step_s:.3f} | {batch / step_s:.2f} | {tflops:.3g} | "
                     f"{mfu} | {mem / GB:.1f} |")
        print(lines[-1], flush=True)
    return lines


def write_result(name: str, lines: list[str], command: str) -> str:
    from star_jax.io.files import atomic_path

    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results", f"{name}.md")
    with atomic_path(path) as tmp, open(tmp, "w") as f:
        f.write(f"<!-- {command}; {time.strftime('%Y-%m-%d')} -->\n" + "\n".join(lines) + "\n")
    return path


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per row (after one warm-up step)")
    ap.add_argument("--gpu", action="store_true", help="(iii): the 1.3B teacher step on one GPU")
    ap.add_argument("--batch", type=int, default=1, help="--gpu: examples per step")
    ap.add_argument("--attention", default="dot_product", help="--gpu: comma-separated attention implementations")
    ap.add_argument("--remat", default="nothing_saveable", help="--gpu: remat policy")
    ap.add_argument("--variant", default="1.3B", help="--gpu: the teacher variant (tiny: a smoke test on any device)")
    ap.add_argument("--skip_1p3b", action="store_true", help="CPU: only the tiny step table (i)")
    ap.add_argument("--compile_timeout", type=int, default=3600, help="seconds for the 1.3B compile subprocess")
    ap.add_argument("--_compile_rows", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a._compile_rows:
        compile_1p3b_rows()
        return
    command = "python -m benchmarks.train_bench " + " ".join(sys.argv[1:])
    if a.gpu:
        import jax

        lines = gpu(a.batch, a.steps, a.attention.split(","), a.remat, a.variant)
        device = jax.devices()[0].device_kind.replace(" ", "_") + ("" if a.variant == "1.3B" else f"_{a.variant}")
    else:
        lines = tiny_cpu(a.steps)
        print("\n".join(lines), flush=True)
        if not a.skip_1p3b:
            lines += [""] + compile_1p3b(a.compile_timeout)
        device = "cpu"
    print("\n".join(lines))
    print("wrote", write_result(f"train_bench_{device}", lines, command))


if __name__ == "__main__":
    main()
