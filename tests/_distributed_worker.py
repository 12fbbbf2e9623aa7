"""Run a few steps of SFT, the reward model and DPO on the micro model, one RL update on a fixed rollout, and a
short GRPO run; save the final weights and the loss curves (each rank to ``OUT.rankR``). Launched by
``tests/test_distributed.py`` under ``torchrun --nproc_per_node 2`` and called in-process for the single-process
run it is compared with."""

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
from rlhfbook_lab.trainers.rl import RLConfig, compute_advantages, train_rl
from rlhfbook_lab.trainers.rl.loop import _Run
from rlhfbook_lab.trainers.rl.rollout import collect_rollout
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
    out["rl_update"] = rl_update(tokenizer)
    policy = tiny_llama(tokenizer, seed=4, layers=2)
    cfg = RLConfig.preset("grpo", steps=2, prompts_per_step=4, group_size=4, max_new_tokens=8, eval_prompts=0,
                          lr=1e-2)
    _, h = train_rl(policy, tokenizer, cfg, reward_fn=lambda p, r: [float(len(x) % 3) for x in r], progress=False)
    out["grpo_run"] = (h["kl/seq"], h["rewards/score"], {k: v.clone() for k, v in policy.state_dict().items()})
    return out


def rl_update(tokenizer, loss_agg: str = "token_mean") -> tuple:
    """One rollout of 4 prompts × 4, drawn the same on every process (same seed, same prompts), advantages from
    whole groups; then each process updates on its half of the groups (all of it on one process), 2 epochs."""
    policy = tiny_llama(tokenizer, seed=3, layers=2)
    cfg = RLConfig.preset("grpo", steps=1, prompts_per_step=4, group_size=4, max_new_tokens=8, eval_prompts=0,
                          lr=1e-2, loss_agg=loss_agg, ppo_epochs=2, num_minibatches=1)
    run = _Run(policy, tokenizer, cfg, None, lambda p, r: [float(len(x) % 3) for x in r])
    torch.manual_seed(7)
    prompts = [world.make_problem("addition", ab).prompt for ab in ((11, 15), (13, 20), (21, 30), (24, 17))]
    rollout, _ = collect_rollout(policy, tokenizer, prompts, cfg, run.ref_model, run.reward)
    adv = compute_advantages(rollout.scores, rollout.old_logps, rollout.ref_logps, rollout.completion_mask, cfg)
    rollout.advantages = adv.advantages
    share = 16 // distributed.world_size()
    mine = rollout.rows(list(range(distributed.rank() * share, (distributed.rank() + 1) * share)))
    metrics = run.update(mine, cfg.beta, 0)
    return metrics["charts/grad_norm"], {k: v.clone() for k, v in policy.state_dict().items()}


if __name__ == "__main__":
    distributed.init()
    result = run_all()
    torch.save({"world_size": distributed.world_size(), "runs": result}, f"{sys.argv[1]}.rank{distributed.rank()}")
