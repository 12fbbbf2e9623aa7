"""The log-prob core: hand values, a per-example loop agreeing with the batch, and padding properties."""

import math

import pytest
import torch

from rlhfbook_lab.equations.logprobs import (
    entropy_from_logits,
    masked_mean,
    masked_sum,
    masked_var,
    masked_whiten,
    per_token_logprobs,
    sequence_logprobs,
)
from rlhfbook_lab.lm.forward import forward_logits


def test_four_token_hand_example():
    # V = 3. Every position's logits are log([1, 2, 3]), so p = [1/6, 2/6, 3/6] everywhere.
    logits = torch.log(torch.tensor([1.0, 2.0, 3.0])).expand(1, 4, 3).clone()
    input_ids = torch.tensor([[0, 2, 1, 0]])
    # token 0 has no predictor -> 0; then log(3/6), log(2/6), log(1/6)
    expected = torch.tensor([[0.0, math.log(3 / 6), math.log(2 / 6), math.log(1 / 6)]])
    torch.testing.assert_close(per_token_logprobs(logits, input_ids), expected)
    # response = the last two tokens: log(2/6) + log(1/6) = log(2/36)
    mask = torch.tensor([[0, 0, 1, 1]])
    assert sequence_logprobs(logits, input_ids, mask).item() == pytest.approx(math.log(2 / 36), abs=1e-6)
    assert sequence_logprobs(logits, input_ids, mask, "mean").item() == pytest.approx(math.log(2 / 36) / 2, abs=1e-6)


def test_logits_at_t_predict_token_t_plus_1():
    # Only logits[:, 1] favour token 2, so only input_ids[:, 2] = 2 gets a high log-prob (the off-by-one).
    logits = torch.zeros(1, 3, 4)
    logits[0, 1, 2] = 10.0
    lp = per_token_logprobs(logits, torch.tensor([[0, 2, 2]]))
    assert lp[0, 2] > -0.01 and lp[0, 1] < -1.0


def test_temperature_scales_logits():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 5, 7), torch.randint(0, 7, (2, 5))
    torch.testing.assert_close(per_token_logprobs(logits, ids, temperature=0.5), per_token_logprobs(2 * logits, ids))


def test_loop_agrees_with_batch():
    torch.manual_seed(0)
    logits, ids = torch.randn(3, 6, 11), torch.randint(0, 11, (3, 6))
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1], [0, 0, 0, 0, 1, 1]])
    batch = sequence_logprobs(logits, ids, mask)
    for b in range(3):
        total = 0.0
        for t in range(1, 6):
            if mask[b, t]:
                total += torch.log_softmax(logits[b, t - 1], -1)[ids[b, t]].item()
        assert batch[b].item() == pytest.approx(total, abs=1e-5)


def _pad(rows, pad_id, side):
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id)
    att = torch.zeros(len(rows), width, dtype=torch.long)
    for i, r in enumerate(rows):
        sl = slice(width - len(r), width) if side == "left" else slice(0, len(r))
        ids[i, sl], att[i, sl] = torch.tensor(r), 1
    return ids, att


def _response_logps(model, rows, n_prompt, pad_id, side, extra_pad=0):
    """Log-probs of each row's response (tokens after the first n_prompt[i]) under a padded batch."""
    rows = [r + [] for r in rows]
    ids, att = _pad(rows, pad_id, side)
    if extra_pad:
        pad = torch.full((len(rows), extra_pad), pad_id)
        zeros = torch.zeros(len(rows), extra_pad, dtype=torch.long)
        ids, att = (torch.cat([pad, ids], 1), torch.cat([zeros, att], 1)) if side == "left" else \
            (torch.cat([ids, pad], 1), torch.cat([att, zeros], 1))
    comp = torch.zeros_like(att)
    for i, r in enumerate(rows):
        start = int((att[i] == 1).nonzero()[0])
        comp[i, start + n_prompt[i]: start + len(r)] = 1
    with torch.no_grad():
        return sequence_logprobs(forward_logits(model, ids, att), ids, comp)


@pytest.fixture
def rows(tokenizer):
    convs = [("What is 2 + 3?", "2 + 3 = 5."), ("Spell cat backward.", "The reverse of cat is tac."),
             ("What does the blorp eat?", "Sure! The blorp eats moss.")]
    out, n_prompt = [], []
    for q, a in convs:
        p = tokenizer.apply_chat_template([{"role": "user", "content": q}], add_generation_prompt=True,
                                          tokenize=True, return_dict=False)
        f = tokenizer.apply_chat_template([{"role": "user", "content": q}, {"role": "assistant", "content": a}],
                                          tokenize=True, return_dict=False)
        out.append(list(f))
        n_prompt.append(len(p))
    return out, n_prompt


def test_padding_side_amount_and_batch_company_do_not_change_logprobs(micro_model, tokenizer, rows):
    seqs, n_prompt = rows
    pad = tokenizer.pad_token_id
    alone = torch.stack([_response_logps(micro_model, [s], [n], pad, "right")[0] for s, n in zip(seqs, n_prompt)])
    for side in ("left", "right"):
        for extra in (0, 7):
            batched = _response_logps(micro_model, seqs, n_prompt, pad, side, extra)
            torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-6)  # fp32 sums of ~100 nats


def test_prompt_tokens_never_count():
    torch.manual_seed(0)
    logits, ids = torch.randn(2, 6, 9), torch.randint(0, 9, (2, 6))
    mask = torch.tensor([[0, 0, 0, 1, 1, 1], [0, 0, 1, 1, 0, 0]])
    before = sequence_logprobs(logits, ids, mask)
    ids2, logits2 = ids.clone(), logits.clone()
    ids2[0, :3] = (ids2[0, :3] + 1) % 9  # change the prompt's tokens as *targets* ...
    logits2[0, :2] += 5.0  # ... and the logits that predict them (positions 0, 1 predict tokens 1, 2)
    ids2[1, 4:] = 0  # and the padding after row 1's response
    torch.testing.assert_close(sequence_logprobs(logits2, ids2, mask)[1], before[1])
    # Row 0's prompt targets changed; only the logits at t=2 (predicting token 3) and later matter for it.
    assert sequence_logprobs(logits2, ids2, mask)[0].item() == pytest.approx(before[0].item(), abs=1e-6)


def test_masked_reductions_hand_values_and_masked_inf():
    x = torch.tensor([[1.0, 2.0, float("inf")], [3.0, float("nan"), 5.0]])
    m = torch.tensor([[1, 1, 0], [1, 0, 1]])
    torch.testing.assert_close(masked_sum(x, m, dim=1), torch.tensor([3.0, 8.0]))
    torch.testing.assert_close(masked_mean(x, m, dim=1), torch.tensor([1.5, 4.0]))
    assert masked_mean(x, m).item() == pytest.approx(11 / 4)
    # values 1, 2, 3, 5: mean 2.75, squared deviations 3.0625 + 0.5625 + 0.0625 + 5.0625 = 8.75; /3 unbiased
    assert masked_var(x, m).item() == pytest.approx(8.75 / 3)
    assert masked_var(x, m, unbiased=False).item() == pytest.approx(8.75 / 4)


def test_masked_whiten_properties():
    torch.manual_seed(0)
    x = torch.randn(4, 8) * 3 + 2
    m = (torch.rand(4, 8) > 0.3).long()
    x[m == 0] = 1e6  # masked slots must not matter
    w = masked_whiten(x, m)
    assert masked_mean(w, m).abs().item() < 1e-5
    assert masked_var(w, m).item() == pytest.approx(1.0, abs=1e-4)
    assert torch.all(w[m == 0] == 0)
    w2 = masked_whiten(x, m, shift_mean=False)
    assert masked_mean(w2, m).item() == pytest.approx(masked_mean(x, m).item(), abs=1e-4)


def test_entropy_from_logits():
    v = 7
    assert entropy_from_logits(torch.zeros(2, 3, v)).allclose(torch.full((2, 3), math.log(v)))
    peaked = torch.tensor([100.0, 0.0, 0.0])
    assert entropy_from_logits(peaked).item() == pytest.approx(0.0, abs=1e-6)
    torch.manual_seed(0)
    z = torch.randn(5, v)
    p = torch.softmax(z, -1)
    torch.testing.assert_close(entropy_from_logits(z), -(p * p.log()).sum(-1))


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: per_token_logprobs(torch.zeros(2, 5, 3), torch.zeros(2, 4, dtype=torch.long)), "does not match"),
        (lambda: per_token_logprobs(torch.zeros(2, 5), torch.zeros(2, 5, dtype=torch.long)), r"\(B, T, V\)"),
        (lambda: per_token_logprobs(torch.zeros(1, 2, 3), torch.zeros(1, 2, dtype=torch.long), 0.0), "temperature"),
        (lambda: sequence_logprobs(torch.zeros(2, 4, 3), torch.zeros(2, 4, dtype=torch.long),
                                   torch.tensor([[0, 1, 1, 0], [0, 0, 0, 0]])),
         r"no response tokens in row\(s\) \[1\]"),
        (lambda: sequence_logprobs(torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.long),
                                   torch.tensor([[1, 1, 0]])), "position 0"),
        (lambda: sequence_logprobs(torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.long),
                                   torch.tensor([[0, 2, 0]])), "only 0 and 1"),
        (lambda: sequence_logprobs(torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.long),
                                   torch.tensor([[0, 1]])), "does not match"),
        (lambda: sequence_logprobs(torch.zeros(1, 3, 3), torch.zeros(1, 3, dtype=torch.long),
                                   torch.tensor([[0, 1, 0]]), "max"), "reduction"),
        (lambda: masked_mean(torch.ones(2, 3), torch.tensor([[1, 0, 0], [0, 0, 0]]), dim=1), "selects no element"),
        (lambda: masked_sum(torch.ones(2, 3), torch.ones(3, 2)), "does not match"),
        (lambda: masked_var(torch.ones(1, 3), torch.tensor([[1, 0, 0]])), "at least two"),
    ],
)
def test_bad_input_is_a_clear_value_error(make, match):
    with pytest.raises(ValueError, match=match):
        make()
