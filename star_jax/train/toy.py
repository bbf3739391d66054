"""The smallest task: a two-layer MLP regressing a fixed random function, parameters annotated
with the logical axes (embed / mlp) so it shards like the DiT. It shows the Task contract in
a page and checks the trainer (sharding, resume, multi-host) in seconds rather than the
minutes a DiT step takes to compile on a CPU.

    config.task = "toy"; config.toy = dict(dim=16, hidden=32, num_examples=256, seed=0, input_noise=0.01)

Example i: x ~ N(0, I_dim), y = tanh(x A) B (A, B fixed by the seed). The loss adds
input_noise * N(0, 1) to x (drawn from the step's key, so resume must restore the rng too).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from star_jax import sharding as sh
from star_jax.errors import InputError
from star_jax.train.config import section
from star_jax.train.task import Task


@dataclasses.dataclass(frozen=True)
class ToyConfig:
    dim: int = 16
    hidden: int = 32
    num_examples: int = 256
    seed: int = 0
    input_noise: float = 0.01

    def __post_init__(self):
        if min(self.dim, self.hidden, self.num_examples) < 1:
            raise InputError(f"config.toy: dim, hidden, num_examples must be >= 1, got {self}")


class ToyMLP(nn.Module):
    dim: int
    hidden: int

    @nn.compact
    def __call__(self, x):
        """x (B, dim) -> (B, dim)."""
        def dense(features, names, name):
            return nn.Dense(features, name=name, dtype=jnp.float32, param_dtype=jnp.float32,
                            kernel_init=nn.with_logical_partitioning(nn.initializers.lecun_normal(), names),
                            bias_init=nn.with_logical_partitioning(nn.initializers.zeros_init(), names[-1:]))

        h = nn.gelu(dense(self.hidden, (sh.EMBED, sh.MLP), "up")(x))
        return dense(self.dim, (sh.MLP, sh.EMBED), "down")(h)


class ToySource:
    """Random-access source of {"x": (dim,), "y": (dim,)} float32, deterministic in (seed, i)."""

    def __init__(self, cfg: ToyConfig):
        self.cfg = cfg
        rng = np.random.default_rng([cfg.seed, 2**31])
        self.a = rng.standard_normal((cfg.dim, cfg.dim)).astype(np.float32) / np.sqrt(cfg.dim)
        self.b = rng.standard_normal((cfg.dim, cfg.dim)).astype(np.float32)

    def __len__(self) -> int:
        return self.cfg.num_examples

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        x = np.random.default_rng([self.cfg.seed, int(index)]).standard_normal(self.cfg.dim).astype(np.float32)
        return {"x": x, "y": (np.tanh(x @ self.a) @ self.b).astype(np.float32)}


def toy_loss(model: ToyMLP, input_noise: float, params, batch, rng):
    x = batch["x"] + input_noise * jax.random.normal(rng, batch["x"].shape, jnp.float32)
    err = model.apply({"params": params}, x) - batch["y"]
    return jnp.mean(jnp.square(err)), {"abs_err": jnp.mean(jnp.abs(err))}


def make_toy_task(config) -> Task:
    cfg = section(ToyConfig, config, "toy")
    model = ToyMLP(cfg.dim, cfg.hidden)
    spec = {"x": jax.ShapeDtypeStruct((cfg.dim,), jnp.float32), "y": jax.ShapeDtypeStruct((cfg.dim,), jnp.float32)}
    return Task(name="toy", init=lambda rng: model.init(rng, jnp.zeros((1, cfg.dim), jnp.float32))["params"],
                loss_fn=lambda p, b, r: toy_loss(model, cfg.input_noise, p, b, r), example_spec=spec,
                source=ToySource(cfg), flops_per_example=4.0 * cfg.dim * cfg.hidden, sections=("toy",))
