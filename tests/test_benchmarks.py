"""The benchmarks' correctness checks (benchmarks/), never their timings. On a tiny random model: our trainers, TRL's
and the bare floor step compute the same first loss from the same weights and batch (reward model, DPO); the GRPO
benchmark configures both trainers alike and counts completion tokens right. Skipped without TRL (the `bench`
extra)."""

import importlib
import math
import sys
from pathlib import Path

import pytest
from _models import tiny_llama

pytest.importorskip("trl")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
common = importlib.import_module("_common")


@pytest.fixture(scope="module")
def pairs(tokenizer):
    return common.bench_pairs(tokenizer, n_pairs=4, max_length=60)


def test_reward_step0_losses_agree(tokenizer, pairs):
    bench = importlib.import_module("bench_reward")
    losses = bench.step0_losses(tiny_llama(tokenizer, seed=0, layers=2), tokenizer, pairs)
    assert set(losses) == {"ours", "trl", "floor"}
    assert abs(losses["ours"] - losses["trl"]) < 1e-5, losses
    assert abs(losses["ours"] - losses["floor"]) < 1e-5, losses
    assert losses["ours"] != math.log(2)  # the random head separates the pair: the check is not a constant


def test_dpo_step0_losses_agree_against_a_different_reference(tokenizer, pairs):
    bench = importlib.import_module("bench_dpo")
    policy, ref = tiny_llama(tokenizer, seed=0, layers=2), tiny_llama(tokenizer, seed=1, layers=2)
    losses = bench.step0_losses(policy, ref, tokenizer, pairs)
    assert set(losses) == set(bench.VARIANTS)
    assert abs(losses["ours"] - math.log(2)) > 1e-3, losses  # policy != reference: not the ln 2 of step 0
    for name, value in losses.items():
        assert abs(value - losses["trl"]) < 1e-5, (name, losses)


def test_dpo_step0_loss_is_ln2_when_policy_is_reference(tokenizer, pairs):
    bench = importlib.import_module("bench_dpo")
    policy = tiny_llama(tokenizer, seed=0, layers=2)
    losses = bench.step0_losses(policy, policy, tokenizer, pairs, variants=("ours", "trl"))
    for value in losses.values():
        assert abs(value - math.log(2)) < 1e-6, losses


def test_grpo_benchmark_configures_both_trainers_alike(tmp_path):
    bench = importlib.import_module("bench_grpo")
    ours = bench.rl_config(3, prompts=2, group_size=4, max_new_tokens=16)
    theirs = bench.trl_config(str(tmp_path), prompts=2, group_size=4, max_new_tokens=16)
    assert (theirs.num_generations, theirs.per_device_train_batch_size) == (ours.group_size, 2 * 4)
    assert (theirs.steps_per_generation, theirs.num_iterations, theirs.gradient_accumulation_steps) == (1, 1, 1)
    assert (ours.ppo_epochs, ours.num_minibatches) == (1, 1)
    assert theirs.max_completion_length == ours.max_new_tokens == 16
    assert theirs.beta == ours.beta > 0 and theirs.epsilon == ours.clip_eps_low
    assert theirs.learning_rate == ours.train.lr and theirs.max_grad_norm == ours.train.grad_clip
    assert (theirs.loss_type, ours.loss_agg) == ("grpo", "seq_mean_token_mean")
    assert (theirs.scale_rewards, ours.advantage) == ("group", "grpo")
    assert not (theirs.bf16 or theirs.gradient_checkpointing) and ours.train.bf16 is False


def test_grpo_generate_timer_counts_completion_tokens_up_to_eos():
    import torch

    bench = importlib.import_module("bench_grpo")
    eos, pad = 2, 0

    class Fake:
        def generate(self, input_ids, attention_mask=None, **kw):  # a 2-token prompt, then 6 sampled tokens
            return torch.tensor([[5, 6, 7, 8, eos, pad, pad, pad],  # EOS at the 3rd sampled token: 3 tokens
                                 [5, 6, eos, pad, pad, pad, pad, pad],  # EOS first: 1 token
                                 [5, 6, 7, 7, 7, 7, 7, 7]])  # no EOS: all 6 sampled tokens

    fake = Fake()
    timer = bench.GenerateTimer(fake, "generate", bench.hf_generate_tokens(eos))
    fake.generate(input_ids=torch.ones(3, 2, dtype=torch.long))
    assert timer.tokens == [3 + 1 + 6] and len(timer.seconds) == len(timer.starts) == 1


def test_pool_benchmark_runs_both_engines_on_the_same_pool(capsys):
    """bench_pool.py end to end at a toy size: both engines sample the pool and the table names each once."""
    bench = importlib.import_module("bench_pool")
    bench.main(["--prompts", "2", "--n", "4", "--repeats", "1", "--max-new-tokens", "8"])
    out = capsys.readouterr().out
    assert "pool of 4 replies × 2 problems" in out
    rows = [line.split()[0] for line in out.splitlines() if line.startswith(("ours ", "hf "))]
    assert rows == ["ours", "hf"]
