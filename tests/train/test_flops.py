"""The analytic DiT FLOP count (star_jax.models.flops) against the matrix products the compiled
program really contains: every `dot_general` of the lowered forward, counted from its operand
shapes, for one layer (the scanned layer body appears once in the program)."""

import math
import re

import flax.linen as nn
import jax
import jax.numpy as jnp
import pytest

from star_jax.models.dit import WanDiT
from star_jax.models.flops import dit_flops, peak_tflops, training_flops
from star_jax.models.variants import dit_variant

_DOT = re.compile(r"stablehlo\.dot_general .*contracting_dims = \[([\d, ]*)\] x \[[\d, ]*\].*: "
                  r"\(tensor<([\dx]+)x\w+>, tensor<[\dx]+x\w+>\) -> tensor<([\dx]+)x\w+>")


def program_matmul_flops(text: str) -> int:
    """2 x (output elements) x (contracted size) summed over the dot_generals of a StableHLO module."""
    total = 0
    for m in _DOT.finditer(text):
        contract = [int(i) for i in m.group(1).split(",") if i.strip()]
        lhs = [int(d) for d in m.group(2).split("x")]
        out = [int(d) for d in m.group(3).split("x")]
        total += 2 * math.prod(out) * math.prod(lhs[i] for i in contract)
    return total


@pytest.mark.parametrize("kw, frames, hw", [
    (dict(), 3, (8, 8)),
    (dict(dim=96, ffn_dim=160, num_heads=3, text_dim=24, text_len=7, freq_dim=16), 6, (4, 12)),
])
def test_forward_flops_equal_the_programs_matmuls(kw, frames, hw):
    cfg = dit_variant("tiny", num_layers=1, **kw)
    model = WanDiT(cfg)
    x = jax.ShapeDtypeStruct((1, frames, *hw, cfg.in_dim), jnp.float32)
    t = jax.ShapeDtypeStruct((1, frames), jnp.float32)
    c = jax.ShapeDtypeStruct((1, cfg.text_len, cfg.text_dim), jnp.float32)
    params = nn.meta.unbox(jax.eval_shape(model.init, jax.random.key(0), x, t, c)["params"])
    text = jax.jit(lambda p, x, t, c: model.apply({"params": p}, x, t, c)[0]).lower(params, x, t, c).as_text()
    counted = program_matmul_flops(text)
    assert counted > 0
    tokens = (hw[0] // 2) * (hw[1] // 2)
    assert dit_flops(cfg, frames, tokens, cfg.text_len) == counted
    # each further layer adds the same per-layer work
    two = dit_variant("tiny", num_layers=2, **kw)
    per_layer = dit_flops(two, frames, tokens, cfg.text_len) - dit_flops(cfg, frames, tokens, cfg.text_len)
    assert per_layer == dit_flops(dit_variant("tiny", num_layers=3, **kw), frames, tokens, cfg.text_len) - \
        dit_flops(two, frames, tokens, cfg.text_len)


def test_training_and_peak():
    assert training_flops(10.0) == 30.0
    assert peak_tflops("NVIDIA H100 80GB HBM3") == 989.0
    assert peak_tflops("NVIDIA H200") == 989.0
    assert peak_tflops("cpu") is None
