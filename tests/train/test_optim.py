"""The optimizer against independent references: the learning-rate schedule against its closed
form, and ten AdamW updates (warmup + cosine, global-norm clipping, weight decay on kernels only)
against torch.optim.AdamW with clip_grad_norm_."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from star_jax.errors import InputError
from star_jax.train.optim import OptimConfig, lr_schedule, make_optimizer

torch = pytest.importorskip("torch")


def closed_form_lr(k, lr, warm, total, end_factor):
    if k < warm:
        return lr * k / warm
    frac = min(1.0, (k - warm) / (total - warm))
    return lr * (end_factor + (1 - end_factor) * 0.5 * (1 + math.cos(math.pi * frac)))


def test_schedule_closed_forms():
    cfg = OptimConfig(lr=2e-3, warmup_steps=4, decay="cosine", end_lr_factor=0.1)
    sched = lr_schedule(cfg, 20)
    for k in range(25):
        np.testing.assert_allclose(float(sched(k)), closed_form_lr(k, 2e-3, 4, 20, 0.1), rtol=1e-6, atol=1e-12)
    lin = lr_schedule(OptimConfig(lr=1.0, warmup_steps=0, decay="linear", end_lr_factor=0.5), 10)
    assert [float(lin(k)) for k in (0, 5, 10, 30)] == pytest.approx([1.0, 0.75, 0.5, 0.5])
    const = lr_schedule(OptimConfig(lr=0.3, warmup_steps=2, decay="constant"), 100)
    assert [float(const(k)) for k in (0, 1, 2, 99)] == pytest.approx([0.0, 0.15, 0.3, 0.3])


def test_adamw_with_clip_and_kernel_only_decay_matches_torch():
    cfg = OptimConfig(lr=1e-2, warmup_steps=3, decay="cosine", end_lr_factor=0.2, b1=0.8, b2=0.95, eps=1e-6,
                      weight_decay=0.3, clip_norm=0.5)
    steps = 10
    rng = np.random.default_rng(0)
    params = {"dense": {"kernel": rng.normal(size=(3, 4)).astype(np.float32),
                        "bias": rng.normal(size=(4,)).astype(np.float32)}}
    grads = [{"dense": {"kernel": (rng.normal(size=(3, 4)) * s).astype(np.float32),
                        "bias": (rng.normal(size=(4,)) * s).astype(np.float32)}} for s in np.linspace(0.05, 2.0, steps)]

    tx, _ = make_optimizer(cfg, steps)
    p = jax.tree_util.tree_map(jnp.asarray, params)
    state = tx.init(p)
    ours = []
    for g in grads:
        updates, state = tx.update(jax.tree_util.tree_map(jnp.asarray, g), state, p)
        p = optax.apply_updates(p, updates)
        ours.append(jax.tree_util.tree_map(np.asarray, p))

    kernel = torch.tensor(params["dense"]["kernel"], requires_grad=True)
    bias = torch.tensor(params["dense"]["bias"], requires_grad=True)
    opt = torch.optim.AdamW([{"params": [kernel], "weight_decay": cfg.weight_decay},
                             {"params": [bias], "weight_decay": 0.0}],
                            lr=cfg.lr, betas=(cfg.b1, cfg.b2), eps=cfg.eps)
    for k, g in enumerate(grads):
        for group in opt.param_groups:
            group["lr"] = closed_form_lr(k, cfg.lr, cfg.warmup_steps, steps, cfg.end_lr_factor)
        kernel.grad = torch.tensor(g["dense"]["kernel"])
        bias.grad = torch.tensor(g["dense"]["bias"])
        norm = float(torch.sqrt(kernel.grad.square().sum() + bias.grad.square().sum()))
        if norm > cfg.clip_norm:  # clip_grad_norm_ adds 1e-6 to the norm; scale exactly as optax does
            for t in (kernel, bias):
                t.grad.mul_(cfg.clip_norm / norm)
        opt.step()
        np.testing.assert_allclose(ours[k]["dense"]["kernel"], kernel.detach().numpy(), rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(ours[k]["dense"]["bias"], bias.detach().numpy(), rtol=2e-5, atol=2e-6)
    # the clip was active in the later steps and weight decay moved the kernel only
    assert np.sqrt(sum(np.sum(x**2) for x in jax.tree_util.tree_leaves(grads[-1]))) > cfg.clip_norm


@pytest.mark.parametrize("kwargs, match", [(dict(decay="step"), "decay"), (dict(lr=0.0), "lr > 0"),
                                           (dict(grad_accum=0), "grad_accum >= 1")])
def test_bad_settings_are_input_errors(kwargs, match):
    with pytest.raises(InputError, match=match):
        OptimConfig(**kwargs)
