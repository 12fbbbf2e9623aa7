"""The one tiny random model the tests build (far smaller than the `tiny` preset: a forward pass costs ~1 ms)."""

import torch
from transformers import LlamaConfig, LlamaForCausalLM


def tiny_llama(tokenizer, seed: int = 0, layers: int = 1, kv_heads: int = 2) -> LlamaForCausalLM:
    """A fresh, seeded random Llama (hidden 32, 2 heads, MLP 64) sized to ``tokenizer``, in eval mode;
    ``kv_heads=1`` gives grouped-query attention (both query heads share one key/value head)."""
    torch.manual_seed(seed)
    cfg = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                      num_key_value_heads=kv_heads, intermediate_size=64, max_position_embeddings=256,
                      tie_word_embeddings=True, bos_token_id=tokenizer.bos_token_id,
                      eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = LlamaForCausalLM(cfg).eval()
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model
