"""The conversion command line end to end, and the analytic FLOP count's closed forms."""

import jax
import numpy as np
import pytest

from benchmarks.dit_bench import dit_flops
from star_jax.checkpoint import convert_dit_state, restore_params
from star_jax.checkpoint.convert import main as convert_main
from star_jax.models import dit_variant
from tests.models.torch_refs import diffusers_dit, state_numpy

torch = pytest.importorskip("torch")


def test_convert_cli_writes_a_restorable_checkpoint(tmp_path, capsys):
    from safetensors.torch import save_file

    cfg = dit_variant("tiny", in_dim=36, num_layers=1)
    sd = state_numpy(diffusers_dit(cfg, seed=5))
    save_file({k: torch.from_numpy(v) for k, v in sd.items()}, str(tmp_path / "w.safetensors"))
    out = tmp_path / "ckpt"
    # the tiny variant has 2 layers: a 1-layer checkpoint must be refused with the missing keys named
    with pytest.raises(Exception, match="blocks.1"):
        convert_main(["--src", str(tmp_path / "w.safetensors"), "--variant", "tiny", "--out", str(out)])
    assert not out.exists()
    cfg2 = dit_variant("tiny", in_dim=36)
    sd2 = state_numpy(diffusers_dit(cfg2, seed=6))
    save_file({k: torch.from_numpy(v) for k, v in sd2.items()}, str(tmp_path / "w2.safetensors"))
    convert_main(["--src", str(tmp_path / "w2.safetensors"), "--variant", "tiny", "--out", str(out)])
    assert "converted" in capsys.readouterr().out
    restored = restore_params(str(out))
    expected = convert_dit_state(sd2, cfg2)
    for a, b in zip(jax.tree_util.tree_leaves(expected), jax.tree_util.tree_leaves(restored)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    with pytest.raises(SystemExit, match="exists"):
        convert_main(["--src", str(tmp_path / "w2.safetensors"), "--variant", "tiny", "--out", str(out)])


def test_flop_count_closed_forms():
    cfg = dit_variant("tiny", num_layers=1)
    tpf, d = 6, cfg.dim
    full = dit_flops(cfg, 6, tpf, 0)
    causal = dit_flops(cfg, 6, tpf, 0, block_causal=True)
    L = 6 * tpf
    # 2 blocks of 3 frames: the mean query sees 3/4 of the keys -> attention term shrinks by 1/4
    assert full - causal == pytest.approx(2 * 2 * L * (L / 4) * d)
    # a 6-frame cache adds exactly its keys to the attention term of a 3-frame block
    base, cached = dit_flops(cfg, 3, tpf, 0), dit_flops(cfg, 3, tpf, 0, cache_frames=6)
    assert cached - base == pytest.approx(2 * 2 * (3 * tpf) * (6 * tpf) * d)
