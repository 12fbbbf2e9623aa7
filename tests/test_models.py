"""Models: presets, atomic save/load, padding-independent positions, clear errors."""

import copy
import json

import pytest
import torch

from rlhfbook_lab.lm.forward import eval_mode, forward_logits, position_ids_from_mask
from rlhfbook_lab.lm.models import PRESETS, init_model, load_model, make_config, num_parameters, save_model


def test_tiny_preset_size(tokenizer):
    cfg = make_config("tiny", tokenizer)
    assert cfg.vocab_size == len(tokenizer) and cfg.tie_word_embeddings
    assert cfg.pad_token_id != cfg.eos_token_id
    # embeddings 262*192 + 4 layers * (attn 4*192^2 + mlp 3*192*512 + 2 norms*192) + final norm 192
    expected = 262 * 192 + 4 * (4 * 192 * 192 + 3 * 192 * 512 + 2 * 192) + 192
    assert num_parameters(init_model("tiny", tokenizer)) == expected
    assert set(PRESETS) >= {"tiny", "small"}


def test_unknown_preset(tokenizer):
    with pytest.raises(ValueError, match="unknown preset 'huge'"):
        make_config("huge", tokenizer)


def test_init_is_seeded(tokenizer):
    a, b = init_model("tiny", tokenizer, seed=3), init_model("tiny", tokenizer, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))


def test_position_ids_hand_values():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 0, 0]])
    assert position_ids_from_mask(mask).tolist() == [[0, 0, 0, 1, 2], [0, 1, 2, 2, 2]]


def test_forward_logits_shape_mismatch(micro_model):
    with pytest.raises(ValueError, match="does not match"):
        forward_logits(micro_model, torch.zeros(2, 4, dtype=torch.long), torch.ones(2, 3, dtype=torch.long))


def test_save_load_round_trip(micro_model, tokenizer, tmp_path):
    out = save_model(micro_model, tokenizer, tmp_path / "m")
    model, tok = load_model(out, device="cpu")
    ids = torch.tensor([[1, 4, 60, 77, 70]])
    att = torch.ones_like(ids)
    torch.testing.assert_close(forward_logits(model, ids, att), forward_logits(micro_model, ids, att))
    assert tok.pad_token_id == tokenizer.pad_token_id and tok.eos_token_id == tokenizer.eos_token_id
    assert (out / "model.safetensors").exists()


def test_save_refuses_non_empty_folder(micro_model, tokenizer, tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "keep.txt").write_text("precious")
    with pytest.raises(FileExistsError, match="not empty"):
        save_model(micro_model, tokenizer, tmp_path / "m")
    assert (tmp_path / "m" / "keep.txt").read_text() == "precious"
    save_model(micro_model, tokenizer, tmp_path / "m", overwrite=True)
    assert not (tmp_path / "m" / "keep.txt").exists()


def test_save_into_unwritable_place(micro_model, tokenizer, tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(PermissionError, match="cannot create the output folder"):
        save_model(micro_model, tokenizer, tmp_path / "a_file" / "m")


def test_interrupted_save_leaves_nothing(micro_model, tokenizer, tmp_path, monkeypatch):
    def broken_save(path, **kw):
        (tmp_path / "partial_marker").write_text(path)
        open(f"{path}/model.safetensors", "w").write("half")
        raise RuntimeError("disk full")

    monkeypatch.setattr(micro_model, "save_pretrained", broken_save)
    with pytest.raises(RuntimeError, match="disk full"):
        save_model(micro_model, tokenizer, tmp_path / "m")
    assert not (tmp_path / "m").exists()
    assert [p.name for p in tmp_path.iterdir()] == ["partial_marker"]  # the temporary folder is gone


def test_load_missing_checkpoint(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no model at"):
        load_model(tmp_path / "empty")


def test_rlhfbook_model_env_selects_the_model(micro_model, tokenizer, tmp_path, monkeypatch):
    out = save_model(micro_model, tokenizer, tmp_path / "m")
    monkeypatch.setenv("RLHFBOOK_MODEL", str(out))
    model, _ = load_model(device="cpu")
    assert json.loads((out / "config.json").read_text())["hidden_size"] == model.config.hidden_size == 32


@pytest.mark.parametrize("training", [True, False])
def test_eval_mode_restores_the_mode_even_when_the_block_raises(micro_model, training):
    """Property: inside ``eval_mode`` the model is in eval mode; after it, in the mode it had, also after an
    exception (generation, scoring and evaluation all switch through it)."""
    model = copy.deepcopy(micro_model).train(training)
    with eval_mode(model):
        assert not model.training and not any(m.training for m in model.modules())
    assert model.training == training
    with pytest.raises(RuntimeError, match="boom"):
        with eval_mode(model):
            raise RuntimeError("boom")
    assert model.training == training and all(m.training == training for m in model.modules())


def test_generation_restores_the_mode_when_sampling_fails(micro_model, tokenizer, monkeypatch):
    """The sampler leaves a training model in training mode even when the decode loop raises."""
    import rlhfbook_lab.lm.generation as generation

    model = copy.deepcopy(micro_model).train()
    monkeypatch.setattr(generation, "sample_cached", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        generation.generate(model, tokenizer, ["What is 2 + 3?"], engine="cached")
    assert model.training
