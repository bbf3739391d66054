"""The DA3 weight converter: the released sizes' names and shapes (from the package's own models),
parameter counts, the `model.` prefix and safetensors' de-duplicated shared norm, errors that list
every offending key, loading from a file; the encoder's input checks."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict

torch = pytest.importorskip("torch")
pytest.importorskip("depth_anything_3")

from star_jax.checkpoint.storage import CheckpointError, shape_placeholders  # noqa: E402
from star_jax.errors import InputError  # noqa: E402
from star_jax.geometry.encoder import (  # noqa: E402
    GeometryEncoder,
    convert_da3_state,
    encoder_variant,
    load_da3_checkpoint,
)
from star_jax.geometry.encoder.convert import UNUSED_BY_FORWARD, encoder_shapes  # noqa: E402
from tests.geometry.encoder.da3_reference import reference_model, reference_variant, state_numpy  # noqa: E402

SHARED_AUX_NORM = re.compile(r"output_conv2_aux\.\d\.2\.")


@pytest.mark.parametrize("name, expected", [("small", 34_299_463), ("base", 135_366_599)])
def test_released_sizes_convert_and_count(name, expected):
    """The package's DA3-SMALL / DA3-BASE (configs/da3-*.yaml, random init): every tensor name and
    shape converts, and our parameter count equals the reference's minus the tensors of the three
    aux levels its forward never reads."""
    ref = reference_variant(name)
    named = dict(ref.named_parameters())  # shared tensors once
    total = sum(p.numel() for p in named.values())
    unused = sum(p.numel() for n, p in named.items() if UNUSED_BY_FORWARD.match(n) and not SHARED_AUX_NORM.search(n))
    ours = sum(int(np.prod(s)) for s in encoder_shapes(encoder_variant(name)).values())
    assert total == expected
    assert ours == total - unused, (ours, total, unused)
    shapes = {f"model.{k}": tuple(v.shape) for k, v in ref.state_dict().items()
              if not re.search(r"output_conv2_aux\.[123]\.2\.", k)}  # as safetensors stores the shared norm
    params = convert_da3_state(shape_placeholders(shapes), encoder_variant(name))
    assert flatten_dict(params, sep="/").keys() == encoder_shapes(encoder_variant(name)).keys()


@pytest.fixture(scope="module")
def tiny_state():
    return state_numpy(reference_model(encoder_variant("tiny")))


def test_mismatches_are_listed_together(tiny_state):
    state = dict(tiny_state)
    del state["backbone.pretrained.blocks.5.attn.qkv.weight"]
    state["head.sky_head.weight"] = np.zeros(3, np.float32)
    state["cam_dec.fc_t.weight"] = np.zeros((4, 64), np.float32)
    with pytest.raises(CheckpointError) as e:
        convert_da3_state(state, encoder_variant("tiny"), source="ckpt.safetensors")
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith("ckpt.safetensors:")
    assert "missing (1): backbone.pretrained.blocks.5.attn.qkv.weight" in msg
    assert "unexpected (1): head.sky_head.weight" in msg
    assert "mis_shaped (1): cam_dec.fc_t.weight: checkpoint (4, 64)" in msg


def test_checkpoint_of_another_size_is_refused(tiny_state):
    small = {k: tuple(v.shape) for k, v in reference_variant("small").state_dict().items()}
    with pytest.raises(CheckpointError, match="'tiny' geometry encoder .is it another size"):
        convert_da3_state(shape_placeholders(small), encoder_variant("tiny"))


def test_load_from_safetensors_file(tiny_state, tmp_path):
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({f"model.{k}": v for k, v in tiny_state.items()}, str(path))
    params = load_da3_checkpoint(str(path), encoder_variant("tiny"))
    direct = convert_da3_state(tiny_state, encoder_variant("tiny"))
    a, b = flatten_dict(params, sep="/"), flatten_dict(direct, sep="/")
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    np.testing.assert_array_equal(a["backbone/blocks_0/attn/qkv/kernel"],
                                  tiny_state["backbone.pretrained.blocks.0.attn.qkv.weight"].T)
    with pytest.raises(CheckpointError, match="no such file"):
        load_da3_checkpoint(str(tmp_path / "absent.pth"), encoder_variant("tiny"))


def test_variants_and_input_checks():
    with pytest.raises(InputError, match="expected one of"):
        encoder_variant("huge")
    with pytest.raises(InputError, match="out_layers"):
        encoder_variant("tiny", out_layers=(3, 5, 6, 9))
    cfg = encoder_variant("tiny")
    model = GeometryEncoder(cfg)
    x = jnp.zeros((1, 2, 28, 28, 3))
    params = jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0), x))["params"]
    with pytest.raises(InputError, match="multiple of the patch size 14"):
        jax.eval_shape(lambda p: model.apply({"params": p}, jnp.zeros((1, 2, 30, 28, 3))), params)
    with pytest.raises(InputError, match="both w2c and K"):
        jax.eval_shape(lambda p: model.apply({"params": p}, x, jnp.zeros((1, 2, 4, 4))), params)
    with pytest.raises(InputError, match=r"must be \(B, S, H, W, 3\)"):
        jax.eval_shape(lambda p: model.apply({"params": p}, x[0]), params)


def test_logical_axes_shard_the_base_model(mesh8):
    """The backbone's matmul weights carry logical names: under the default rules the base model's
    qkv kernels split over fsdp x tensor, the rest (DPT convs, norms) is replicated."""
    from star_jax import sharding as sh
    from star_jax.geometry.encoder.model import abstract_params

    shardings = flatten_dict(sh.param_shardings(abstract_params(encoder_variant("base")), mesh8), sep="/")
    assert tuple(shardings["backbone/blocks_4/attn/qkv/kernel"].spec) == ("fsdp", "tensor")
    assert tuple(shardings["backbone/blocks_4/fc2/kernel"].spec) == ("tensor", "fsdp")
    assert tuple(shardings["head/layer1_rn/kernel"].spec) == ()
