"""The Flax umT5 encoder against transformers' UMT5EncoderModel (random tiny config, float32) through
the production converter, from both namings; and a float64 NumPy twin of Wan's `wan/modules/t5.py`
encoder fed Wan-named tensors."""

import dataclasses
import math

import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.checkpoint.convert import CheckpointError
from star_jax.checkpoint.umt5 import WAN_T5_FILE, convert_umt5_state, hf_to_wan_names, load_umt5_checkpoint
from star_jax.text.umt5 import UMT5Encoder, abstract_umt5_params, encode_tokens, relative_position_buckets, umt5_variant

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

TOL = 1e-5  # max |y - y_ref| / max |y_ref| over the real tokens
L = 40  # longer than max_distance (16): exact, log-spaced and clamped buckets all occur


def hf_encoder(cfg, seed=0):
    """A transformers UMT5EncoderModel with cfg's sizes, every parameter random (norm gains too)."""
    torch.manual_seed(seed)
    config = transformers.UMT5Config(
        vocab_size=cfg.vocab_size, d_model=cfg.dim, d_kv=cfg.dim_attn // cfg.num_heads, d_ff=cfg.ffn_dim,
        num_heads=cfg.num_heads, num_layers=cfg.num_layers, relative_attention_num_buckets=cfg.num_buckets,
        relative_attention_max_distance=cfg.max_distance, feed_forward_proj="gated-gelu", dropout_rate=0.0,
        layer_norm_epsilon=cfg.eps)
    model = transformers.UMT5EncoderModel(config).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            p.copy_(1.0 + 0.2 * torch.randn_like(p) if "layer_norm" in name else torch.randn_like(p) * 0.3)
    return model


def state_numpy(model):
    return {k: v.detach().float().numpy().copy() for k, v in model.state_dict().items()}


def inputs(cfg, seed=0):
    """Two sequences of L ids; the second has 23 real tokens then padding."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(2, cfg.vocab_size, size=(2, L)).astype(np.int32)
    mask = np.ones((2, L), bool)
    mask[1, 23:] = False
    ids[1, 23:] = 0
    return ids, mask


def run_hf(model, ids, mask):
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids).long(), attention_mask=torch.from_numpy(mask).long())
    return out.last_hidden_state.numpy()


def rel_err_real_rows(y, ref, mask):
    return np.abs(y - ref)[mask].max() / np.abs(ref[mask]).max()


@pytest.fixture(scope="module")
def tiny():
    cfg = umt5_variant("tiny")
    ref = hf_encoder(cfg)
    return cfg, ref, state_numpy(ref)


def test_parity_with_transformers_from_its_own_names(tiny):
    cfg, ref, sd = tiny
    _, inferred = convert_umt5_state(sd)
    assert inferred == dataclasses.replace(cfg, max_distance=128)  # sizes read off the tensors; 128 by default
    params, _ = convert_umt5_state(sd, cfg)
    ids, mask = inputs(cfg)
    y = np.asarray(encode_tokens(UMT5Encoder(cfg), params, jnp.asarray(ids), jnp.asarray(mask)))
    assert rel_err_real_rows(y, run_hf(ref, ids, mask), mask) <= TOL
    # padding is invisible to the real tokens: the 23-token row alone gives the same rows
    y_short = np.asarray(encode_tokens(UMT5Encoder(cfg), params, jnp.asarray(ids[1:, :23]), jnp.ones((1, 23), bool)))
    np.testing.assert_allclose(y_short[0], y[1, :23], rtol=1e-5, atol=1e-5)


def wan_t5_twin(state, ids, mask, num_buckets, max_distance, eps=1e-6):
    """float64 NumPy twin of Wan's T5Encoder (shared_pos=False), reading Wan's tensor names."""
    g = {k: v.astype(np.float64) for k, v in state.items()}
    layers = 1 + max(int(k.split(".")[1]) for k in g if k.startswith("blocks."))
    Lq = ids.shape[1]

    def norm(x, w):
        return w * x / np.sqrt((x * x).mean(-1, keepdims=True) + eps)

    def gelu(x):
        return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))

    def bucket(rel):  # T5RelativeEmbedding._relative_position_bucket, bidirectional, in float64
        n = num_buckets // 2
        out = (rel > 0) * n
        d = np.abs(rel)
        exact = n // 2
        with np.errstate(divide="ignore"):
            large = exact + (np.log(np.maximum(d, 1) / exact) / math.log(max_distance / exact) * (n - exact)).astype(np.int64)
        return out + np.where(d < exact, d, np.minimum(large, n - 1))

    x = g["token_embedding.weight"][ids]
    rel = np.arange(Lq)[None, :] - np.arange(Lq)[:, None]
    for i in range(layers):
        p = f"blocks.{i}."
        h = norm(x, g[p + "norm1.weight"])
        q, k, v = (h @ g[f"{p}attn.{n}.weight"].T for n in "qkv")
        heads = g[p + "pos_embedding.embedding.weight"].shape[1]
        q, k, v = (a.reshape(a.shape[0], Lq, heads, -1) for a in (q, k, v))
        logits = np.einsum("binc,bjnc->bnij", q, k) + g[p + "pos_embedding.embedding.weight"][bucket(rel)].transpose(
            2, 0, 1)[None]
        logits = np.where(mask[:, None, None, :], logits, -np.inf)
        a = np.exp(logits - logits.max(-1, keepdims=True))
        a /= a.sum(-1, keepdims=True)
        y = np.einsum("bnij,bjnc->binc", a, v).reshape(x.shape[0], Lq, -1)
        x = x + y @ g[p + "attn.o.weight"].T
        h = norm(x, g[p + "norm2.weight"])
        x = x + ((h @ g[p + "ffn.fc1.weight"].T) * gelu(h @ g[p + "ffn.gate.0.weight"].T)) @ g[p + "ffn.fc2.weight"].T
    return norm(x, g["norm.weight"])


def test_wan_naming_matches_a_float64_twin_of_wan_t5(tiny):
    """HF tensors renamed to Wan's names: the twin of Wan's encoder equals transformers (so the
    names mean what Wan's code does with them), and our converter's Wan path equals the twin."""
    cfg, ref, sd = tiny
    wan = hf_to_wan_names(sd)
    assert {"token_embedding.weight", "blocks.1.ffn.gate.0.weight", "blocks.1.pos_embedding.embedding.weight",
            "norm.weight"} <= set(wan) and len(wan) == len(sd) - 1  # shared / embed_tokens are one tensor
    ids, mask = inputs(cfg, seed=1)
    twin = wan_t5_twin(wan, ids, mask, cfg.num_buckets, cfg.max_distance)
    assert rel_err_real_rows(twin, run_hf(ref, ids, mask), mask) <= TOL
    params, _ = convert_umt5_state(wan, cfg)
    y = np.asarray(encode_tokens(UMT5Encoder(cfg), params, jnp.asarray(ids), jnp.asarray(mask)))
    assert rel_err_real_rows(y, twin, mask) <= TOL


def test_published_pth_and_transformers_folder_load(tiny, tmp_path):
    """Wan's folder layout (a bf16 torch pickle named as the release names it) keeps bf16 exactly;
    a transformers save_pretrained folder reads max_distance from its config.json."""
    cfg, ref, sd = tiny
    wan = {k: torch.from_numpy(v).to(torch.bfloat16) for k, v in hf_to_wan_names(sd).items()}
    (tmp_path / "wan").mkdir()
    torch.save(wan, tmp_path / "wan" / WAN_T5_FILE)
    params, got = load_umt5_checkpoint(str(tmp_path / "wan"), cfg)
    assert params["blocks"]["ffn"]["gate"]["kernel"].dtype.name == "bfloat16"
    np.testing.assert_array_equal(params["blocks"]["ffn"]["gate"]["kernel"][1].astype(np.float32),
                                  wan["blocks.1.ffn.gate.0.weight"].float().numpy().T)
    ref.save_pretrained(tmp_path / "hf")
    params, got = load_umt5_checkpoint(str(tmp_path / "hf"))
    assert got == cfg  # max_distance 16 came from config.json
    ids, mask = inputs(cfg, seed=2)
    y = np.asarray(encode_tokens(UMT5Encoder(got), params, jnp.asarray(ids), jnp.asarray(mask)))
    assert rel_err_real_rows(y, run_hf(ref, ids, mask), mask) <= TOL


def test_bad_checkpoints_list_every_problem(tiny, tmp_path):
    cfg, _, sd = tiny
    bad = dict(hf_to_wan_names(sd))
    del bad["blocks.1.attn.k.weight"]
    bad["blocks.0.mystery.weight"] = np.zeros(3)
    with pytest.raises(CheckpointError) as e:
        convert_umt5_state(bad, cfg)
    assert "blocks.1.attn.k.weight" in str(e.value) and "blocks.0.mystery.weight" in str(e.value)
    with pytest.raises(CheckpointError, match=r"mis_shaped.*blocks/ffn/fc1/kernel"):
        convert_umt5_state(hf_to_wan_names(sd), umt5_variant("tiny", ffn_dim=48))
    with pytest.raises(CheckpointError, match="no such umT5 checkpoint"):
        load_umt5_checkpoint(str(tmp_path / "nothing.pth"))
    with pytest.raises(CheckpointError, match="naming"):
        convert_umt5_state({"foo.weight": np.zeros(1)})


@pytest.mark.parametrize("buckets, max_distance", [(32, 128), (8, 16)])
def test_relative_buckets_equal_transformers(buckets, max_distance):
    from transformers.models.umt5.modeling_umt5 import UMT5Attention

    config = transformers.UMT5Config(relative_attention_num_buckets=buckets,
                                     relative_attention_max_distance=max_distance, is_decoder=False)
    attn = UMT5Attention(config, has_relative_attention_bias=True)
    n = 600
    rel = torch.arange(n)[None, :] - torch.arange(n)[:, None]
    np.testing.assert_array_equal(relative_position_buckets(n, buckets, max_distance),
                                  attn._relative_position_bucket(rel).numpy())


def test_umt5_xxl_parameter_count_matches_transformers_without_allocating():
    from star_jax.models.dit import count_params

    ours = count_params(abstract_umt5_params(umt5_variant("umt5-xxl")))
    config = transformers.UMT5Config(vocab_size=256384, d_model=4096, d_kv=64, d_ff=10240, num_heads=64,
                                     num_layers=24, feed_forward_proj="gated-gelu")
    with torch.device("meta"):
        ref = transformers.UMT5EncoderModel(config)
    assert ours == sum(p.numel() for p in ref.parameters())
    assert 5.6e9 < ours < 5.7e9
