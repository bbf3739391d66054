"""The conversion command line end to end (dry run, the user's naming in reports, the staged
--out), and the analytic FLOP count's closed forms."""

import json

import jax
import numpy as np
import pytest

from star_jax.checkpoint import CheckpointError, check_dit_file, convert_dit_state, restore_params
from star_jax.checkpoint.convert import diffusers_to_wan_names, main as convert_main, wan_to_diffusers_name
from star_jax.models import dit_variant
from star_jax.models.flops import dit_flops
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
    with pytest.raises(CheckpointError, match="already exists"):
        convert_main(["--src", str(tmp_path / "w2.safetensors"), "--variant", "tiny", "--out", str(out)])
    # the bundle records the DiT's conditioning convention beside it (converted weights: the release's)
    assert json.load(open(tmp_path / "star_model.json")) == {"conditioning": "inspatio-release", "format": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt", "star_model.json", "w.safetensors",
                                                          "w2.safetensors"]  # no leftovers
    # a bundle that records another convention is refused before anything is converted
    with pytest.raises(CheckpointError, match="trained with conditioning 'inspatio-release'"):
        convert_main(["--src", str(tmp_path / "w2.safetensors"), "--variant", "tiny", "--out", str(tmp_path / "e"),
                      "--conditioning", "star-jax-v0"])
    assert not (tmp_path / "e").exists()

    # --dry_run: names and shapes from the header, nothing written
    convert_main(["--src", str(tmp_path / "w2.safetensors"), "--variant", "tiny", "--out", str(tmp_path / "d"),
                  "--dry_run"])
    assert "dry run" in capsys.readouterr().out and not (tmp_path / "d").exists()


def test_reports_use_the_files_naming(tmp_path):
    """Missing / unexpected / mis-shaped keys are listed in the naming of the user's file."""
    from safetensors.numpy import save_file

    cfg = dit_variant("tiny", in_dim=36)
    sd = state_numpy(diffusers_dit(cfg, seed=1))
    # wan -> diffusers is the exact inverse of diffusers -> wan on every key of a real diffusers model
    assert sorted(map(wan_to_diffusers_name, diffusers_to_wan_names(sd))) == sorted(sd)
    bad = dict(sd)
    bad.pop("blocks.1.attn2.to_k.weight")
    bad["blocks.0.mystery.weight"] = np.zeros(3, np.float32)
    with pytest.raises(CheckpointError) as e:
        convert_dit_state(bad, cfg)
    msg = str(e.value)
    assert "missing (1): blocks.1.attn2.to_k.weight" in msg and "unexpected (1): blocks.0.mystery.weight" in msg
    assert "cross_attn" not in msg and "\n" not in msg
    # a checkpoint for 16 input channels: its patch embedding and its head are named as in the file
    sd16 = state_numpy(diffusers_dit(dit_variant("tiny", in_dim=16), seed=1))
    with pytest.raises(CheckpointError, match=r"mis_shaped \(1\): patch_embedding.weight \[patch_embedding/kernel\]"):
        convert_dit_state(sd16, cfg)
    wan16 = {"model.diffusion_model." + k: v for k, v in diffusers_to_wan_names(sd16).items()}
    wan16["model.diffusion_model.blocks.0.self_attn.q.weight"] = np.zeros((2, 2), np.float32)
    with pytest.raises(CheckpointError, match=r"model.diffusion_model.blocks.0.self_attn.q.weight "
                                              r"\[blocks/self_attn/q/kernel\]: checkpoint \(2, 2\)"):
        convert_dit_state(wan16, dit_variant("tiny", in_dim=16))
    # the header-only check finds the same problems without loading a tensor
    save_file(bad, str(tmp_path / "bad.safetensors"))
    with pytest.raises(CheckpointError, match="missing \\(1\\): blocks.1.attn2.to_k.weight"):
        check_dit_file(str(tmp_path / "bad.safetensors"), cfg)
    save_file(sd, str(tmp_path / "good.safetensors"))
    check_dit_file(str(tmp_path / "good.safetensors"), cfg)


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
