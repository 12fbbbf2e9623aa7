"""The RL loop's configuration (:class:`RLConfig`) and each algorithm's preset (:data:`PRESETS`, :data:`FAST`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from rlhfbook_lab import world
from rlhfbook_lab.checks import check_int, check_number
from rlhfbook_lab.config import build, fields_of
from rlhfbook_lab.equations.kl import ESTIMATORS
from rlhfbook_lab.equations.policy_gradient import ADVANTAGE_ESTIMATORS, AGGREGATION_MODES, POLICY_LOSSES
from rlhfbook_lab.trainers.loop import TrainConfig

ALGORITHMS = ("reinforce", "rloo", "grpo", "dr_grpo", "ppo", "dapo", "gspo", "cispo")


REWARD_SOURCES = ("gold", "verifier", "rm")


KL_PENALTIES = ("reward", "loss")


ADVANTAGES = (*ADVANTAGE_ESTIMATORS, "gae")


@dataclass
class RLConfig:
    """Everything that defines an RL run. Build one with :meth:`preset` (or :meth:`fast`); the plain defaults
    are the GRPO preset."""

    algo: str = "grpo"
    """Which preset this came from (a label written to ``training_meta.json``; the fields below decide)."""
    # --- rollouts ------------------------------------------------------------------------------------------
    prompts_per_step: int = 16
    """Distinct training prompts per rollout (the world's train split, families in turn)."""
    group_size: int = 8
    """G: completions sampled per prompt (rows of a group are contiguous). RLOO/GRPO need G >= 2."""
    max_new_tokens: int = 48
    """Completion budget in tokens (characters, for the world's tokenizer); an unfinished reply keeps its
    score (the gold judge already docks a reply that does not end cleanly). Also Dr. GRPO's constant L_max."""
    temperature: float = 1.0
    """Sampling temperature. At 1 the sampler's log-probs are reused as log π_old; at another one log π_old is
    recomputed untempered (the policy trained is π itself; the tempered samples make the batch off-policy)."""
    families: tuple[str, ...] = world.FAMILIES
    """Task families the training prompts are drawn from (e.g. ``("addition",)`` for RLVR)."""
    dynamic_sampling: bool = False
    """DAPO's dynamic sampling: drop groups whose rewards are all equal (no gradient:
    ``policy_gradient.informative_groups``) and refill the rollout with groups of fresh prompts, sampling at most
    ``max_sampling_rounds`` batches of ``prompts_per_step`` prompts; slots still empty then take dropped groups
    (zero advantage), so the rollout always has ``prompts_per_step`` groups. Needs ``group_size >= 2``."""
    max_sampling_rounds: int = 3
    """With ``dynamic_sampling``: most batches of prompts sampled per rollout (1: drop nothing)."""
    # --- reward --------------------------------------------------------------------------------------------
    reward: str = "gold"
    """Reward source: ``"gold"`` (the world's judge), ``"verifier"`` (correct 1 / wrong 0) or ``"rm"``."""
    reward_model: str | None = None
    """With ``reward="rm"``: a folder or shipped name of a reward model (``reward_trainer.load_reward_model``);
    ``None`` means ``"rm-tiny"``."""
    # --- KL regularisation ---------------------------------------------------------------------------------
    beta: float = 0.04
    """KL coefficient β >= 0 (the start value when ``kl_target`` is set)."""
    kl_penalty: str = "loss"
    """Where the KL goes: ``"reward"`` (per-token penalty in the reward) or ``"loss"`` (a loss term)."""
    kl_estimator: str = "k3"
    """``"k1"``, ``"k2"`` or ``"k3"`` (see ``kl``'s docstring: as a loss, k1 has zero expected gradient, k2
    follows ∇KL(π‖π_ref), k3 follows ∇KL(π_ref‖π))."""
    kl_target: float | None = None
    """If set, adapt β to hold this KL (nats per sequence; ``kl.AdaptiveKLController``, Ziegler et al.)."""
    kl_horizon: float = 10_000.0
    """The adaptive controller's horizon (samples)."""
    # --- advantages ----------------------------------------------------------------------------------------
    advantage: str = "grpo"
    """``"reinforce"``, ``"rloo"``, ``"grpo"``, ``"dr_grpo"``, ``"maxrl"`` (one per sequence; maxrl divides by the
    group mean, for rewards >= 0 such as the verifier's) or ``"gae"`` (per token, with a value head: PPO)."""
    gamma: float = 1.0
    """GAE discount γ."""
    lam: float = 0.95
    """GAE λ."""
    whiten_advantages: bool = False
    """Whiten the advantages over the rollout's response tokens (PPO, as TRL)."""
    # --- optimisation --------------------------------------------------------------------------------------
    train: TrainConfig = field(default_factory=lambda: TrainConfig(steps=30, lr=1e-4, warmup_steps=0,
                                                                   min_lr_ratio=1.0, weight_decay=0.0, bf16=False))
    """The shared loop's settings, as the other trainers have them. Here ``train.steps`` counts *rollouts*, each
    followed by ``ppo_epochs × num_minibatches`` optimizer steps, and the schedule (``train.warmup_steps``,
    ``train.min_lr_ratio``: constant by default) moves every parameter group's lr by rollout; ``train.lr`` is
    the policy's AdamW lr, ``train.seed`` seeds prompt choice, sampling and minibatch order; bf16 autocast
    (``None``: on CUDA only) is ~40× slower on a CPU, so off. ``train.grad_accum`` must stay 1."""
    ppo_epochs: int = 1
    """Passes over each rollout."""
    num_minibatches: int = 1
    """Optimizer steps per pass; must divide ``prompts_per_step * group_size``."""
    policy_loss: str = "ppo"
    """The clipped surrogate (``policy_gradient.POLICY_LOSSES``): ``"ppo"`` (per-token ratio), ``"gspo"``
    (one ratio per sequence, clipped per sequence) or ``"cispo"`` (clipped, detached ratio weighting every
    token's REINFORCE term). All three give the same gradient on-policy (the first minibatch)."""
    clip_eps_low: float = 0.2
    """Clip ε below 1, >= 0 (>= 1: the lower clip never binds)."""
    clip_eps_high: float | None = None
    """Clip ε above 1 (``None``: ``clip_eps_low``; DAPO raises it)."""
    loss_agg: str = "seq_mean_token_mean"
    """How per-token losses become a scalar: a mode of ``policy_gradient.aggregate_loss``."""
    vf_coef: float = 0.1
    """Weight of the value loss (PPO)."""
    value_lr: float | None = None
    """Learning rate of the value head (PPO; ``None``: ``train.lr``). The head starts from zero and must catch up with
    the returns quickly, so PPO's preset gives it a larger one."""
    clip_range_value: float | None = 0.2
    """PPO's value clipping range (``None``: no clipping)."""
    ent_coef: float = 0.0
    """Weight of the entropy bonus (0: entropy is only measured)."""
    sft_coef: float = 0.0
    """InstructGPT's PPO-ptx: add ``sft_coef ×`` the SFT loss (mean NLL per token) on a batch of the shipped
    SFT data to every minibatch's loss. 0 turns it off (and loads no data)."""
    sft_batch_size: int = 16
    """SFT conversations per minibatch when ``sft_coef > 0``."""
    # --- evaluation ----------------------------------------------------------------------------------------
    eval_prompts: int = 200
    """Held-out prompts (``world.heldout_prompts(n, seed=0)``) judged greedily before training, every
    ``eval_every`` rollouts, and after; 0 skips evaluation."""
    eval_every: int = 0
    """Evaluate every this many rollouts (0: only before and after)."""
    eval_families: tuple[str, ...] | None = None
    """Families of the held-out evaluation prompts (``None``: all of them, in turn)."""

    def __post_init__(self):
        self.families = tuple(self.families)
        if self.eval_families is not None:
            self.eval_families = tuple(self.eval_families)
        check_config(self)

    @classmethod
    def preset(cls, algo: str, **overrides) -> "RLConfig":
        """The configuration of ``algo`` (one of :data:`ALGORITHMS`, table :data:`PRESETS`), with any field
        overridden by keyword (``config.override``)."""
        if algo not in PRESETS:
            raise ValueError(f"algo must be one of {ALGORITHMS}; got {algo!r}")
        return build(cls, PRESETS, algo, {"algo": algo}, **overrides)

    @classmethod
    def fast(cls, algo: str = "grpo", **overrides) -> "RLConfig":
        """A preset cut down to about 30 s of CPU (one thread) that still raises the gold score: fewer rollouts,
        smaller ones, 100 evaluation prompts (:data:`FAST`). Overrides as in :meth:`preset`."""
        if algo not in PRESETS:
            raise ValueError(f"algo must be one of {ALGORITHMS}; got {algo!r}")
        return build(cls, PRESETS, algo, {"algo": algo}, FAST[algo], **overrides)

    def differs_from(self, other: "RLConfig") -> dict[str, tuple]:
        """``{dotted field: (self's value, other's value)}`` for the settings that differ."""
        mine, theirs = fields_of(self), fields_of(other)
        return {k: (mine[k][1], theirs[k][1]) for k in mine if mine[k][1] != theirs[k][1]}


PRESETS: dict[str, dict] = {
    # REINFORCE / RLOO (Ahmadian et al. 2024): KL in the reward (k1), one advantage per sequence from the summed
    # reward, the plain policy gradient Σ_t log π (summed over tokens; L_max only rescales it), on-policy.
    "reinforce": dict(advantage="reinforce", kl_penalty="reward", kl_estimator="k1",
                      loss_agg="seq_mean_token_sum_norm"),
    "rloo": dict(advantage="rloo", kl_penalty="reward", kl_estimator="k1", loss_agg="seq_mean_token_sum_norm"),
    # GRPO (DeepSeekMath): group-normalised advantages of the raw score, β·k3 as a loss, per-sequence token mean.
    "grpo": dict(advantage="grpo", kl_penalty="loss", kl_estimator="k3", loss_agg="seq_mean_token_mean"),
    # Dr. GRPO (Liu et al. 2025): no std division, a constant-length token sum; with a k2 loss (the bandit's
    # finding: this pair reaches ~99 % of J*, canonical GRPO ~80 %).
    "dr_grpo": dict(advantage="dr_grpo", kl_penalty="loss", kl_estimator="k2", loss_agg="seq_mean_token_sum_norm"),
    # PPO (InstructGPT, TRL): KL in the reward (k1), GAE with a value head, whitened advantages, several epochs
    # of minibatches, the token mean. λ = 1 and a faster value head (module docstring); half GRPO's lr, since
    # it takes four optimizer steps per rollout (at 1e-4 held-out correctness fell from 0.71 to 0.62).
    "ppo": dict(advantage="gae", kl_penalty="reward", kl_estimator="k1", loss_agg="token_mean",
                whiten_advantages=True, ppo_epochs=2, num_minibatches=2, lam=1.0, value_lr=1e-3, **{"train.lr": 5e-5}),
    # DAPO (Yu et al. 2025): clip-higher (ε_high 0.28 > ε_low 0.2: low-probability tokens may grow), the
    # token-level mean, no KL, and dynamic sampling (unanimous groups, which get zero advantage and only dilute
    # the token mean, are dropped and refilled from fresh prompts).
    "dapo": dict(advantage="grpo", beta=0.0, clip_eps_low=0.2, clip_eps_high=0.28, loss_agg="token_mean",
                 dynamic_sampling=True),
    # GSPO (Zheng et al. 2025): one importance ratio per sequence, clipped per sequence in a tiny range, two
    # minibatches so that the second one is off-policy and the ratio matters.
    "gspo": dict(advantage="grpo", beta=0.0, policy_loss="gspo", clip_eps_low=3e-4, clip_eps_high=4e-4,
                 loss_agg="seq_mean_token_mean", num_minibatches=2),
    # CISPO (MiniMax-M1, 2025): clipped, detached ratios weight every token's REINFORCE term; no lower clip.
    "cispo": dict(advantage="grpo", beta=0.0, policy_loss="cispo", clip_eps_low=1.0, clip_eps_high=0.28,
                  loss_agg="token_mean", num_minibatches=2),
}
"""The fields each algorithm sets (everything else is :class:`RLConfig`'s default). What each preset achieves from
``sft-tiny`` (gold, correctness, KL, CPU time; with the gold reward and with ``rm-tiny``) is measured in the README
("Measured: RL presets"), where a re-measurement updates it."""


FAST: dict[str, dict] = {algo: {"train.steps": 4, "train.lr": 3e-4, "eval_prompts": 100} for algo in ALGORITHMS}
FAST["ppo"] = {"train.steps": 8, "train.lr": 1e-4, "group_size": 4, "eval_prompts": 100}
"""What :meth:`RLConfig.fast` changes on top of the preset: fewer rollouts at a larger lr, 100 evaluation prompts.
PPO takes more, smaller rollouts at a smaller lr: larger steps lowered its held-out gold (README, "Measured: RL
presets")."""


def check_config(cfg: RLConfig) -> None:
    """Raise ``ValueError`` naming the field for every out-of-range setting."""
    def need(ok: bool, name: str, expected: str) -> None:
        if not ok:
            raise ValueError(f"{name} must be {expected}; got {getattr(cfg, name)!r}")

    for name in ("prompts_per_step", "group_size", "max_new_tokens", "ppo_epochs", "num_minibatches",
                 "sft_batch_size", "max_sampling_rounds"):
        check_int(name, getattr(cfg, name), minimum=1)
    check_int("eval_prompts", cfg.eval_prompts, minimum=0)
    check_int("eval_every", cfg.eval_every, minimum=0)
    check_number("temperature", cfg.temperature, minimum=0, strict=True)
    need(len(cfg.families) > 0 and all(f in world.FAMILIES for f in cfg.families), "families",
         f"a non-empty tuple of {world.FAMILIES}")
    need(cfg.eval_families is None or (len(cfg.eval_families) > 0 and all(f in world.FAMILIES
                                                                         for f in cfg.eval_families)),
         "eval_families", f"None or a non-empty tuple of {world.FAMILIES}")
    need(cfg.reward in REWARD_SOURCES, "reward", f"one of {REWARD_SOURCES}")
    check_number("beta", cfg.beta, minimum=0)
    need(cfg.kl_penalty in KL_PENALTIES, "kl_penalty", f"one of {KL_PENALTIES}")
    need(cfg.kl_estimator in ESTIMATORS, "kl_estimator", f"one of {ESTIMATORS}")
    if cfg.kl_target is not None:
        check_number("kl_target", cfg.kl_target, minimum=0, strict=True)
    check_number("kl_horizon", cfg.kl_horizon, minimum=0, strict=True)
    need(cfg.advantage in ADVANTAGES, "advantage", f"one of {ADVANTAGES}")
    need(cfg.advantage in ("reinforce", "gae") or cfg.group_size >= 2, "group_size",
         f">= 2 for advantage={cfg.advantage!r} (a group of one has no baseline)")
    need(not cfg.dynamic_sampling or cfg.group_size >= 2, "group_size",
         ">= 2 with dynamic_sampling (a group of one is always unanimous)")
    need(cfg.advantage != "reinforce" or cfg.prompts_per_step * cfg.group_size >= 2, "prompts_per_step",
         "such that prompts_per_step * group_size >= 2 (REINFORCE's batch-mean baseline)")
    check_number("gamma", cfg.gamma, minimum=0, maximum=1)
    check_number("lam", cfg.lam, minimum=0, maximum=1)
    check_number("train.lr", cfg.train.lr, minimum=0, strict=True)
    check_int("train.grad_accum", cfg.train.grad_accum, minimum=1, maximum=1)  # a rollout is one batch
    if cfg.value_lr is not None:
        check_number("value_lr", cfg.value_lr, minimum=0, strict=True)
    need((cfg.prompts_per_step * cfg.group_size) % cfg.num_minibatches == 0, "num_minibatches",
         f"a divisor of prompts_per_step * group_size = {cfg.prompts_per_step * cfg.group_size}")
    need(cfg.policy_loss in POLICY_LOSSES, "policy_loss", f"one of {POLICY_LOSSES}")
    check_number("clip_eps_low", cfg.clip_eps_low, minimum=0)
    need(cfg.clip_eps_high is None or cfg.clip_eps_high >= 0, "clip_eps_high", "None or >= 0")
    need(cfg.loss_agg in AGGREGATION_MODES, "loss_agg", f"one of {AGGREGATION_MODES}")
    for name in ("vf_coef", "ent_coef", "sft_coef"):
        check_number(name, getattr(cfg, name), minimum=0)
    need(cfg.clip_range_value is None or cfg.clip_range_value > 0, "clip_range_value", "None or > 0")
