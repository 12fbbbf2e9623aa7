"""Any causal LM, not only the shipped Llama: small random models of other architectures, built in code and sized to
the course tokenizer (which has a chat template), run one step of every trainer and the sampler.

``RLHFBOOK_MODEL=<hub id or local path>`` (``lm/models.py``) hands the trainers whatever ``AutoModelForCausalLM``
loads; these tests are the evidence that the trainers do not lean on Llama internals: GPT-2 (learned positions,
LayerNorm, GELU, fused c_attn), Qwen2 (q/k/v biases), Qwen3 (q/k RMSNorm), a Llama with grouped-query attention and
one with untied input and output embeddings.
"""

import math

import pytest
import torch
from _compare import assert_same_samples
from _models import tiny_llama
from transformers import GPT2Config, GPT2LMHeadModel, Qwen2Config, Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM

from rlhfbook_lab import world
from rlhfbook_lab.equations.numerics import assert_numerically_equal
from rlhfbook_lab.lm.forward import sequence_logps
from rlhfbook_lab.lm.generation import generate, supports_cached_sampling
from rlhfbook_lab.lm.models import load_model
from rlhfbook_lab.lm.preference_data import off_policy_pairs
from rlhfbook_lab.lm.reward_model import RewardModel
from rlhfbook_lab.trainers.dpo import DPOConfig, train_dpo
from rlhfbook_lab.trainers.loop import TrainConfig
from rlhfbook_lab.trainers.reward import RMConfig, train_reward_model
from rlhfbook_lab.trainers.rl import RLConfig, train_rl
from rlhfbook_lab.trainers.sft import SFTConfig, sft


def _ids(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


def _ready(model, tokenizer):
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model.eval()


def gpt2(tokenizer):
    torch.manual_seed(0)
    cfg = GPT2Config(n_embd=32, n_layer=2, n_head=2, n_positions=256, **_ids(tokenizer))
    return _ready(GPT2LMHeadModel(cfg), tokenizer)


def qwen2(tokenizer):
    torch.manual_seed(0)
    cfg = Qwen2Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1,
                      intermediate_size=64, max_position_embeddings=256, tie_word_embeddings=True, **_ids(tokenizer))
    return _ready(Qwen2ForCausalLM(cfg), tokenizer)


def qwen3(tokenizer):
    torch.manual_seed(0)
    cfg = Qwen3Config(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, num_key_value_heads=1, head_dim=16,
                      intermediate_size=64, max_position_embeddings=256, tie_word_embeddings=False,
                      **_ids(tokenizer))
    return _ready(Qwen3ForCausalLM(cfg), tokenizer)


def llama_gqa(tokenizer):
    return tiny_llama(tokenizer, seed=0, layers=2, kv_heads=1)


def llama_untied(tokenizer):
    model = tiny_llama(tokenizer, seed=0, layers=2)
    torch.manual_seed(1)
    cfg = model.config
    cfg.tie_word_embeddings = False
    untied = type(model)(cfg)
    untied.load_state_dict(model.state_dict(), strict=False)
    return _ready(untied, tokenizer)


BUILDERS = {"gpt2": gpt2, "qwen2": qwen2, "qwen3": qwen3, "llama-gqa": llama_gqa, "llama-untied": llama_untied}


@pytest.fixture(params=list(BUILDERS))
def arch(request, tokenizer):
    return request.param, BUILDERS[request.param](tokenizer)


def test_the_builders_give_what_they_say(tokenizer):
    """The zoo is what its names claim (a test that the tests test something)."""
    assert gpt2(tokenizer).config.model_type == "gpt2"
    assert qwen2(tokenizer).model.layers[0].self_attn.q_proj.bias is not None
    assert hasattr(qwen3(tokenizer).model.layers[0].self_attn, "q_norm")
    assert llama_gqa(tokenizer).config.num_key_value_heads == 1
    m = llama_untied(tokenizer)
    assert m.lm_head.weight.data_ptr() != m.model.embed_tokens.weight.data_ptr()


def _weights(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()]).clone()


def test_sft_step(arch, tokenizer):
    _, model = arch
    before = _weights(model)
    cfg = SFTConfig(train=TrainConfig(steps=2, lr=1e-2, warmup_steps=0, bf16=False, seed=0), batch_size=4)
    history = sft(model, tokenizer, world.instruction_data(8, seed=1), cfg, progress=False)
    assert all(math.isfinite(v) for v in history["losses/train"])
    assert not torch.equal(before, _weights(model))


def test_reward_model_step(arch, tokenizer):
    _, model = arch
    pairs = off_policy_pairs([world.make_problem("addition", (a, 2 * a + 3)) for a in range(10, 18)],
                             styles=("reference", "polite_pileup"), pairs_per_prompt=None, seed=0).rows
    rm = RewardModel.from_causal_lm(model, seed=0)
    before = _weights(rm)
    cfg = RMConfig(train=TrainConfig(steps=2, lr=1e-2, warmup_steps=0, bf16=False, seed=0), batch_size=4)
    history = train_reward_model(rm, tokenizer, pairs, cfg, progress=False)
    assert all(math.isfinite(v) for v in history["losses/train"])
    assert not torch.equal(before, _weights(rm))


def test_dpo_step_starts_at_ln2(arch, tokenizer):
    """Policy = reference at step 0, so every margin is 0 and the loss is ln 2, whatever the architecture."""
    _, model = arch
    p = world.make_problem("addition", (12, 30))
    pairs = [{"prompt": p.prompt, "chosen": world.render_response(p),
              "rejected": world.render_response(p, opener="Sure!", fillers=2)}] * 4
    cfg = DPOConfig(loss="dpo", beta=0.1, batch_size=4,
                    train=TrainConfig(steps=1, lr=1e-3, warmup_steps=0, bf16=False, seed=0))
    history = train_dpo(model, tokenizer, pairs, cfg, progress=False)
    assert history["losses/train"][0] == pytest.approx(math.log(2), abs=1e-5)


def test_grpo_step(arch, tokenizer):
    """One GRPO rollout: the sampler's log-probs are the recomputed ones (π = π_ref, so KL ≈ 0), weights move."""
    _, model = arch
    before = _weights(model)
    cfg = RLConfig.preset("grpo", steps=1, prompts_per_step=2, group_size=4, max_new_tokens=8, eval_prompts=0,
                          lr=1e-2)
    _, history = train_rl(model, tokenizer, cfg, reward_fn=lambda p, r: [float(i % 2) for i in range(len(r))],
                          progress=False)  # every group holds both rewards: no zero advantage
    assert history["kl/seq"][0] == pytest.approx(0.0, abs=1e-4)
    assert not torch.equal(before, _weights(model))


PROMPTS = ["What is 12 + 35?", "Spell mirt backward.", "Which creature glows?"]


def test_sampler_log_probs_are_the_models(arch, tokenizer):
    """Second implementation (numerical): the sampler's own log-probs at temperature 1 equal the log-prob core's
    recomputation on the sampled sequences, for every architecture (the cached engine where it applies, else
    ``model.generate``)."""
    name, model = arch
    g = generate(model, tokenizer, PROMPTS, max_new_tokens=10, num_return_sequences=2, seed=3)
    with torch.no_grad():
        _, logps = sequence_logps(model, g.input_ids, g.attention_mask, g.completion_mask)
    mask = g.completion_mask.bool()
    assert mask.sum() > 0
    assert_numerically_equal(g.logprobs[mask], logps[mask], what=name)


def _perturbed(model, seed: int = 7):
    """The model with every bias and norm weight moved off its initial value (zeros, ones), so that a sampler
    that skipped a bias or a q/k norm would draw other tokens: the agreement test below can fail."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith("bias") or "norm" in name:
                p.add_(0.5 * torch.randn(p.shape, generator=g))
    return model


def llama_biased(tokenizer):
    """A Llama with attention and MLP biases (``attention_bias``, ``mlp_bias``: q, k, v, o, gate, up, down)."""
    model = tiny_llama(tokenizer, seed=0, layers=2)
    cfg = model.config
    cfg.attention_bias = cfg.mlp_bias = True
    torch.manual_seed(2)
    return _ready(type(model)(cfg), tokenizer)


@pytest.mark.parametrize("name", ["llama-gqa", "llama-untied", "llama-biased", "qwen2", "qwen3"])
def test_cached_engine_draws_what_generate_draws(name, tokenizer):
    """The Llama family (grouped-query, untied, with biases), Qwen2 (q/k/v biases) and Qwen3 (per-head q/k RMSNorm)
    take the cached sampler, which draws the same tokens as ``model.generate`` (numerical kind: tokens up to each
    row's first near-tie, log-probs within the dtype's tolerance; ``assert_same_samples``). Biases and norm weights
    are perturbed first, so a sampler that ignored one would fail."""
    model = _perturbed(llama_biased(tokenizer) if name == "llama-biased" else BUILDERS[name](tokenizer))
    assert supports_cached_sampling(model)
    kw = dict(prompts=PROMPTS, max_new_tokens=12, num_return_sequences=2, seed=5)
    assert_same_samples(generate(model, tokenizer, engine="cached", **kw),
                        generate(model, tokenizer, engine="hf", **kw))


def test_what_the_cached_engine_does_not_know_goes_to_generate(tokenizer):
    """GPT-2 (LayerNorm, GELU) and a Qwen2 with a sliding window are not the cached engine's: ``engine='auto'``
    samples them with ``model.generate`` and ``engine='cached'`` refuses with the list of what it knows."""
    sliding = qwen2(tokenizer)
    sliding.config.layer_types = ["sliding_attention"] * sliding.config.num_hidden_layers
    for model in (gpt2(tokenizer), sliding):
        assert not supports_cached_sampling(model)
        with pytest.raises(ValueError, match="Qwen3ForCausalLM"):
            generate(model, tokenizer, PROMPTS[:1], max_new_tokens=2, engine="cached")


@pytest.mark.parametrize("pad", ["eos", None])
def test_a_tokenizer_that_pads_with_eos_is_refused_with_the_fix(tmp_path, tokenizer, pad):
    """Padding with EOS would mask every real EOS out of the losses (the model never learns to stop): the loader
    refuses such a checkpoint (or one with no pad token) and says how to add a pad token; the fix-up it names works."""
    import copy

    tok = copy.deepcopy(tokenizer)
    tok.pad_token = tok.eos_token if pad == "eos" else None
    model = gpt2(tokenizer)
    model.save_pretrained(tmp_path / "m")
    tok.save_pretrained(tmp_path / "m")
    with pytest.raises(ValueError, match="pad token distinct from EOS.*add_special_tokens"):
        load_model(tmp_path / "m", device="cpu")
    tok.add_special_tokens({"pad_token": "<|pad|>"})
    model.resize_token_embeddings(len(tok))
    model.config.pad_token_id = tok.pad_token_id
    model.save_pretrained(tmp_path / "fixed")
    tok.save_pretrained(tmp_path / "fixed")
    loaded, loaded_tok = load_model(tmp_path / "fixed", device="cpu")
    assert loaded_tok.pad_token_id not in (None, loaded_tok.eos_token_id)
