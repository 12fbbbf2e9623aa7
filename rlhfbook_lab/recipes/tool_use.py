"""The lesson 13 recipe: teach ``sft-tiny`` to call the calculator on three-digit sums (``world.tool_use``).

A short SFT from the shipped ``sft-tiny`` on replies such as ``[calculator(690+381) -> 1071] The answer is 1071.``,
the tool's result (`` 1071]``) masked out of the targets (``lm.tools.tool_sft_dataset``). Measured once
(``python -c "from rlhfbook_lab.recipes.tool_use import train_tool_caller; ..."``, seed 0, 2 CPU cores): 60 steps
of 16 (≈ 19 CPU-s) reach 100 % held-out accuracy with the tool on 100 problems, 0 % with the tool disabled, and
copy a lying tool's answer 100 % of the time. No checkpoint ships: it trains in seconds.
"""

from __future__ import annotations

from rlhfbook_lab.lm.data import build_sft_dataset
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.tools import tool_sft_dataset
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.sft import SFTConfig, sft
from rlhfbook_lab.world import tool_use

__all__ = ["train_tool_caller"]


def train_tool_caller(steps: int = 60, batch_size: int = 16, lr: float = 1e-3, num_examples: int = 1000,
                      calls: bool = True, mask_results: bool = True, seed: int = 0, start: str = "sft-tiny",
                      progress: bool = False):
    """Fine-tune ``start`` on ``num_examples`` ``addition3`` conversations; return ``(model, tokenizer, history)``.

    Args:
        calls: replies call the calculator (``False``: the same problems answered alone, the baseline).
        mask_results: the tool's result tokens are not targets (``False``: the model is also trained to write
            them, as if it had produced them: the exercise).
    """
    model, tokenizer = load_model(start)
    conversations = tool_use.tool_instruction_data(num_examples, seed, calls=calls)
    data = (tool_sft_dataset(tokenizer, conversations) if mask_results
            else build_sft_dataset(tokenizer, conversations, 160))
    cfg = SFTConfig(train=TrainConfig(steps=steps, lr=lr, warmup_steps=5, bf16=False, log_every=10**6, seed=seed),
                    batch_size=batch_size)
    history = sft(model, tokenizer, data, cfg, progress=progress)
    return model, tokenizer, history
