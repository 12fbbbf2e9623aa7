"""Run a few steps of SFT, the reward model and DPO on the micro model, and save the final weights and the loss
curves (rank 0). Launched by ``tests/test_distributed.py`` under ``torchrun --nproc_per_node 2`` and called
in-process for the single-process run it is compared with."""

import sys

import torch
from _models import tiny_llama

from rlhfbook_lab import world
from rlhfbook_lab.lm import distributed
from rlhfbook_lab.lm.preference_data import off_policy_pairs
from rlhfbook_lab.lm.reward_model import RewardModel
from rlhfbook_lab.lm.tokenizer import load_tokenizer
from rlhfbook_lab.trainers.dpo import DPOConfig, train_dpo
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.reward import RMConfig, train_reward_model
from rlhfbook_lab.trainers.sft import SFTConfig, sft

STEPS = 3


def train_cfg() -> TrainConfig:
    # grad_accum 2 and a clip that binds: both must stay exact across processes
    return TrainConfig(steps=STEPS, lr=1e-2, warmup_steps=1, bf16=False, seed=0, grad_accum=2, grad_clip=0.5)


def run_all() -> dict:
    tokenizer = load_tokenizer()
    out = {}
    model = tiny_llama(tokenizer, seed=0, layers=2)
    h = sft(model, tokenizer, world.instruction_data(32, seed=1), SFTConfig(train=train_cfg(), batch_size=8),
            progress=False)
    out["sft"] = (h["losses/train"], h["charts/grad_norm"], {k: v.clone() for k, v in model.state_dict().items()})
    problems = [world.make_problem("addition", (a, 2 * a + 3)) for a in range(10, 26)]
    pairs = off_policy_pairs(problems, styles=("reference", "polite_pileup"), pairs_per_prompt=None, seed=0).rows
    rm = RewardModel.from_causal_lm(tiny_llama(tokenizer, seed=1, layers=2), seed=0)
    h = train_reward_model(rm, tokenizer, pairs, RMConfig(train=train_cfg(), batch_size=4), progress=False)
    out["rm"] = (h["losses/train"], h["charts/grad_norm"], {k: v.clone() for k, v in rm.state_dict().items()})
    policy = tiny_llama(tokenizer, seed=2, layers=2)
    dpo_pairs = [{"prompt": r["prompt"], "chosen": r["chosen"], "rejected": r["rejected"]} for r in pairs]
    h = train_dpo(policy, tokenizer, dpo_pairs, DPOConfig(loss="dpo", beta=0.1, batch_size=4, train=train_cfg()),
                  progress=False)
    out["dpo"] = (h["losses/train"], h["charts/grad_norm"], {k: v.clone() for k, v in policy.state_dict().items()})
    return out


if __name__ == "__main__":
    distributed.init()
    result = run_all()
    if distributed.is_main():
        torch.save({"world_size": distributed.world_size(), "runs": result}, sys.argv[1])
