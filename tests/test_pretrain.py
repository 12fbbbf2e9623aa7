"""Pretraining: packing, determinism, clear errors, and the shipped base model's stated quality."""

import json

import pytest
import torch

from rlhfbook_lab.lm.data import pack_statements, target_mask
from rlhfbook_lab.lm.models import load_model, num_parameters
from rlhfbook_lab.paths import CHECKPOINTS
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.pretrain import SHIPPED_QUALITY, PretrainConfig, heldout_loss, prefix_accuracy, pretrain


def test_pack_statements_keeps_statements_whole(tokenizer):
    ids, att = pack_statements(tokenizer, ["1 + 2 = 3.", "The blorp eats moss.", "4 + 4 = 8."], block_size=24)
    rows = [tokenizer.decode(r[m.bool()]) for r, m in zip(ids, att)]
    # row 1: BOS + 11 + 21 tokens would be 33 > 24, so the second statement starts a new row
    assert rows == ["<|bos|>1 + 2 = 3.\n", "<|bos|>The blorp eats moss.\n", "<|bos|>4 + 4 = 8.\n"]
    assert torch.all(ids[att == 0] == tokenizer.pad_token_id)


def test_pack_refuses_a_statement_longer_than_a_row(tokenizer):
    with pytest.raises(ValueError, match="does not fit in block_size=8"):
        pack_statements(tokenizer, ["The reverse of mirt is trim."], block_size=8)


def test_target_mask_skips_first_token_and_padding():
    att = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    assert target_mask(att).tolist() == [[0, 1, 1, 0], [0, 1, 1, 1]]


def _small_cfg(seed=0, steps=4):
    return PretrainConfig(batch_size=4, n_statements=400, train=TrainConfig(steps=steps, lr=2e-3, warmup_steps=1,
                                                                           seed=seed))


def test_same_seed_same_loss_curve(tokenizer):
    _, h1 = pretrain(_small_cfg(), tokenizer, progress=False)
    _, h2 = pretrain(_small_cfg(), tokenizer, progress=False)
    _, h3 = pretrain(_small_cfg(seed=1), tokenizer, progress=False)
    assert h1["losses/train"] == h2["losses/train"]
    assert h1["losses/train"] != h3["losses/train"]
    assert h1["losses/train"][-1] < h1["losses/train"][0]


def test_loss_curve_snapshot(tokenizer):
    """A tiny seeded run's curve, snapshotted: a silent change to the data, model, loss or loop moves it."""
    _, h = pretrain(_small_cfg(steps=4), tokenizer, progress=False)
    assert h["losses/train"] == pytest.approx(SNAPSHOT, abs=2e-3)


SNAPSHOT = [5.5480, 4.6692, 4.2933, 3.8930]


def test_pretrain_refuses_non_empty_output_before_training(tokenizer, tmp_path):
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "x").write_text("x")
    with pytest.raises(FileExistsError, match="not empty"):
        pretrain(PretrainConfig(), tokenizer, out=tmp_path / "out")


def test_pretrain_refuses_unwritable_output(tokenizer, tmp_path):
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(PermissionError):
        pretrain(PretrainConfig(), tokenizer, out=tmp_path / "a_file" / "out")
    assert (tmp_path / "a_file").read_text() == "x"


def test_pretrain_writes_a_loadable_checkpoint(tokenizer, tmp_path):
    pretrain(_small_cfg(steps=2), tokenizer, out=tmp_path / "base", progress=False)
    model, _ = load_model(tmp_path / "base", device="cpu")
    meta = json.loads((tmp_path / "base" / "training_meta.json").read_text())
    assert meta["config"]["train"]["steps"] == 2 and meta["parameters"] == num_parameters(model)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.fixture(scope="module")
def shipped():
    return load_model("base-tiny", device="cpu")


def test_shipped_base_model_heldout_loss(shipped):
    model, tok = shipped
    assert (CHECKPOINTS / "base-tiny" / "model.safetensors").stat().st_size < 10e6
    assert heldout_loss(model, tok) < SHIPPED_QUALITY["heldout_loss_max"]


def test_shipped_base_model_prefix_accuracy(shipped):
    model, tok = shipped
    acc = prefix_accuracy(model, tok)
    for family, floor in SHIPPED_QUALITY["prefix_accuracy_min"].items():
        assert acc[family] >= floor, (family, acc)
