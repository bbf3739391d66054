"""The model bundle's conditioning convention: stored beside the checkpoint, followed when
loading, and a checkpoint whose stored convention differs from the pipeline's is refused (the
full load into a session is in test_session.py, which has a model at hand)."""

import json

import pytest

from star_jax.checkpoint import CheckpointError
from star_jax.inference import load_star_model, write_star_model_json
from star_jax.inference.model import checkpoint_conditioning, read_star_model_json


def _folders(tmp_path):
    for name in ("dit", "vae"):
        (tmp_path / name).mkdir()
    return str(tmp_path / "dit"), str(tmp_path / "vae")


def test_refuses_a_checkpoint_of_another_convention(tmp_path):
    dit, vae = _folders(tmp_path)  # empty folders: the refusal must come before any restore
    write_star_model_json(str(tmp_path), "star-jax-v0")
    want = (f"{tmp_path / 'star_model.json'}: the DiT was trained with conditioning 'star-jax-v0', but the "
            f"pipeline asks for 'inspatio-release'")
    with pytest.raises(CheckpointError, match=want.replace(".", r"\.")):
        load_star_model("tiny", dit, vae, conditioning="inspatio-release")
    cond, src = checkpoint_conditioning(dit)  # nothing asked: the stored convention is used
    assert cond.name == "star-jax-v0" and src == str(tmp_path / "star_model.json")


def test_star_model_json_is_written_once_and_read_strictly(tmp_path):
    path = write_star_model_json(str(tmp_path))
    assert json.load(open(path)) == {"conditioning": "inspatio-release", "format": 1}
    assert write_star_model_json(str(tmp_path), "inspatio-release") == path  # same convention: fine
    with pytest.raises(CheckpointError, match="records conditioning 'inspatio-release'; refusing to overwrite"):
        write_star_model_json(str(tmp_path), "star-jax-v0")
    bad = tmp_path / "bad.json"
    bad.write_text('{"conditioning": "fraction"}')
    with pytest.raises(CheckpointError, match="bad.json: conditioning convention 'fraction': expected one of"):
        read_star_model_json(str(bad))
    bad.write_text('{"format": 1}')
    with pytest.raises(CheckpointError, match="bad.json: field 'conditioning' must be a convention name, found None"):
        read_star_model_json(str(bad))
    bad.write_text("{")
    with pytest.raises(CheckpointError, match="bad.json: cannot read it as JSON"):
        read_star_model_json(str(bad))


def test_without_a_record_the_release_convention_is_assumed_and_said(tmp_path):
    dit, _ = _folders(tmp_path)
    cond, src = checkpoint_conditioning(dit)
    assert cond.name == "inspatio-release" and src.startswith("assumed:") and "star_model.json" in src
    cond, src = checkpoint_conditioning(dit, "star-jax-v0")
    assert cond.name == "star-jax-v0" and src.startswith("given by the caller")
