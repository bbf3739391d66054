"""Prompt -> DiT text context: the tokenizer (a sentencepiece model trained here, and the
tokenizer.json transformers makes of it) against transformers' tokenizers called as Wan calls
them; umT5 prompt embeddings against Wan's rule computed with transformers; the on-disk cache;
the tiny variant's hashed-word encoder."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from star_jax.errors import InputError
from star_jax.models import WanDiT, dit_variant
from star_jax.text import prompt as prompt_mod
from star_jax.text.prompt import HashedWordEncoder, PromptCache, embed_prompt, prompt_encoder
from star_jax.text.tokenizer import clean_prompt, load_tokenizer
from star_jax.text.umt5 import umt5_variant

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
spm = pytest.importorskip("sentencepiece")

CORPUS = ["a coffee bar with a slow dolly in", "the camera orbits the table", "two people talk at the counter",
          "warm light, wooden chairs and plants", "a red cup on a white saucer", "the barista pours milk"]
PROMPTS = ["a coffee bar, slow dolly in", "  the barista\n\tpours   milk &amp;amp; talks  ", "Zebra ünïcode 123",
           "warm light and wooden chairs at the counter while two people talk about a red cup", ""]
TEXT_LEN = 16  # the tiny DiT's


@pytest.fixture(scope="module")
def wan_folder(tmp_path_factory):
    """A Wan-style model folder: models_t5_umt5-xxl-enc-bf16.pth (a random tiny umT5, kept float32 for
    tight parity) and google/umt5-xxl/ with spiece.model and the tokenizer.json transformers builds
    from it. Returns (folder, transformers encoder, transformers tokenizer)."""
    from star_jax.checkpoint.umt5 import WAN_T5_FILE, hf_to_wan_names
    from tests.text.test_umt5 import hf_encoder, state_numpy

    root = tmp_path_factory.mktemp("wan")
    tok_dir = root / "google" / "umt5-xxl"
    tok_dir.mkdir(parents=True)
    spm.SentencePieceTrainer.train(sentence_iterator=iter(CORPUS * 20), model_prefix=str(tok_dir / "spiece"),
                                   vocab_size=48, pad_id=0, eos_id=1, unk_id=2, bos_id=-1, minloglevel=2)
    spm_only = transformers.T5Tokenizer.from_pretrained(str(tok_dir), extra_ids=0)
    spm_only.save_pretrained(str(tok_dir))  # adds tokenizer.json (+ tokenizer_config.json), as published
    hf_tok = transformers.AutoTokenizer.from_pretrained(str(tok_dir))
    model = hf_encoder(umt5_variant("tiny", max_distance=128), seed=4)  # Wan's .pth implies T5's 128
    torch.save({k: torch.from_numpy(v) for k, v in hf_to_wan_names(state_numpy(model)).items()}, root / WAN_T5_FILE)
    return str(root), model, hf_tok


def wan_ids(hf_tok, prompt, text_len=TEXT_LEN):
    """Wan's HuggingfaceTokenizer call (after its whitespace cleaning)."""
    out = hf_tok([clean_prompt(prompt)], padding="max_length", truncation=True, max_length=text_len,
                 add_special_tokens=True)
    return np.asarray(out["input_ids"][0]), np.asarray(out["attention_mask"][0], bool)


def test_cleaning_is_wans_whitespace_rule():
    assert clean_prompt("  a&amp;amp;b \n\t c  ") == "a&b c"
    assert clean_prompt("x&lt;y") == "x<y"


@pytest.mark.parametrize("which", ["tokenizer.json", "spiece.model"])
def test_tokenizer_equals_transformers_as_wan_calls_it(wan_folder, which):
    folder, _, hf_tok = wan_folder
    tok = load_tokenizer(os.path.join(folder, "google", "umt5-xxl", which), TEXT_LEN)
    for p in PROMPTS:
        ids, mask = tok(p)
        want_ids, want_mask = wan_ids(hf_tok, p)
        np.testing.assert_array_equal(mask, want_mask, err_msg=p)
        np.testing.assert_array_equal(ids[mask], want_ids[want_mask], err_msg=p)
        assert ids[mask][-1] == 1  # </s> last, also when truncated
    assert tok(PROMPTS[3])[1].all()  # the long prompt fills text_len: it was truncated
    assert load_tokenizer(folder, TEXT_LEN).path.endswith(os.path.join("google", "umt5-xxl", "tokenizer.json"))


def test_umt5_prompt_embedding_is_wans_rule(wan_folder, tmp_path):
    """embed_prompt from the Wan-style folder = transformers' encoder on Wan's padded, masked
    tokens, trimmed to the real tokens; the tiny DiT takes it (and pads it back)."""
    folder, model, hf_tok = wan_folder
    for p in (PROMPTS[0], PROMPTS[3]):
        emb, source = embed_prompt(p, "tiny", text_encoder=folder, cache_dir=str(tmp_path))
        ids, mask = wan_ids(hf_tok, p)
        with torch.no_grad():
            h = model(input_ids=torch.from_numpy(ids[None]).long(),
                      attention_mask=torch.from_numpy(mask[None]).long()).last_hidden_state[0].numpy()
        want = h[: mask.sum()]
        assert emb.shape == (1, mask.sum(), 32) and emb.dtype == np.float32 and "umT5" in source
        assert np.abs(emb[0] - want).max() / np.abs(want).max() <= 1e-5
    y, _ = jax.eval_shape(WanDiT(dit_variant("tiny")).init_with_output, jax.random.key(0), jnp.zeros((1, 1, 4, 4, 36)),
                          jnp.zeros((1,)), jnp.asarray(emb))
    assert y[0].shape == (1, 1, 4, 4, 16)


def test_wan_diffusers_and_single_file_layouts_give_the_same_embedding(wan_folder, tmp_path):
    """The Wan folder, a diffusers-style folder (text_encoder/ safetensors + config.json, tokenizer/)
    and the bare .pth with an explicit tokenizer: one encoder id each way, the same embedding."""
    folder, model, hf_tok = wan_folder
    model.save_pretrained(tmp_path / "diffusers" / "text_encoder")
    hf_tok.save_pretrained(tmp_path / "diffusers" / "tokenizer")
    pth = os.path.join(folder, "models_t5_umt5-xxl-enc-bf16.pth")
    tok = os.path.join(folder, "google", "umt5-xxl", "spiece.model")
    encoders = [prompt_encoder("tiny", folder), prompt_encoder("tiny", str(tmp_path / "diffusers")),
                prompt_encoder("tiny", pth, tokenizer=tok)]
    ids = [e.id for e in encoders]
    assert ids[0].split(":tok=")[0] == ids[2].split(":tok=")[0]  # the same .pth found in the folder or given
    assert len(set(ids)) == 3  # other weight files (safetensors) / another tokenizer file: other cache keys
    embs = [e(PROMPTS[1]) for e in encoders]
    for e in embs[1:]:
        np.testing.assert_allclose(e, embs[0], rtol=1e-5, atol=1e-5)


def test_cache_hit_reads_no_weights_and_keys_by_encoder(wan_folder, tmp_path, monkeypatch):
    folder, _, _ = wan_folder
    first, src1 = embed_prompt(PROMPTS[0], "tiny", text_encoder=folder, cache_dir=str(tmp_path))
    assert "(cached)" not in src1
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].endswith(".npz")  # atomic writer left no temp file

    def no_weights(*a, **k):
        raise AssertionError("a cache hit must not load the umT5 weights")

    monkeypatch.setattr(prompt_mod, "_load_umt5", no_weights)
    again, src2 = embed_prompt(PROMPTS[0], "tiny", text_encoder=folder, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(again, first)
    assert src2.endswith("(cached)")
    # another encoder (the hashed table) with the same prompt is another entry
    tiny, _ = embed_prompt(PROMPTS[0], "tiny", cache_dir=str(tmp_path))
    assert len(os.listdir(tmp_path)) == 2 and tiny.shape[-1] == 32 and not np.array_equal(tiny, first)
    # a damaged entry is a miss, recomputed and rewritten
    monkeypatch.undo()
    enc = prompt_encoder("tiny", folder)
    path = PromptCache(str(tmp_path)).path(enc.id, PROMPTS[0])
    with open(path, "wb") as f:
        f.write(b"not an npz")
    fixed, src3 = embed_prompt(PROMPTS[0], "tiny", text_encoder=folder, cache_dir=str(tmp_path))
    np.testing.assert_array_equal(fixed, first)
    assert "(cached)" not in src3 and PromptCache(str(tmp_path)).get(enc.id, PROMPTS[0]) is not None


def test_hashed_word_encoder_is_deterministic_and_shaped():
    enc = HashedWordEncoder(text_dim=32, text_len=TEXT_LEN)
    a = enc("A coffee bar")
    np.testing.assert_array_equal(a, HashedWordEncoder(32, TEXT_LEN)("a  COFFEE bar "))  # case, spaces
    assert a.shape == (4, 32) and a.dtype == np.float32  # 3 words + end row
    np.testing.assert_array_equal(a[-1], enc("")[0])  # the end row
    np.testing.assert_array_equal(a[1], enc("coffee")[0])  # a word's row does not depend on its neighbours
    assert enc(" ".join(["w"] * 40)).shape == (TEXT_LEN, 32)
    assert not np.allclose(a, HashedWordEncoder(32, TEXT_LEN, seed=1)("a coffee bar"))
    assert enc.id != HashedWordEncoder(32, TEXT_LEN, seed=1).id


def test_bad_text_inputs_are_refused(wan_folder, tmp_path):
    folder, _, _ = wan_folder
    with pytest.raises(InputError, match=r"variant '1.3B' needs a umT5 text encoder"):
        embed_prompt("a cat", "1.3B")
    with pytest.raises(InputError, match="no such text encoder"):
        embed_prompt("a cat", "tiny", text_encoder=str(tmp_path / "missing"))
    lone = tmp_path / "lone"
    lone.mkdir()
    os.symlink(os.path.join(folder, "models_t5_umt5-xxl-enc-bf16.pth"), lone / "models_t5_umt5-xxl-enc-bf16.pth")
    with pytest.raises(InputError, match="no tokenizer found"):
        embed_prompt("a cat", "tiny", text_encoder=str(lone))
    with pytest.raises(InputError, match=r"shape \(\d+, 32\), the 1.3B DiT takes \(L <= 512, 4096\)"):
        embed_prompt("a cat", "1.3B", text_encoder=folder)
