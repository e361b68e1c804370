import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.models.sampling import beam_search, generate, greedy_search, sample

BOS, EOS, A, B = 2, 3, 4, 5
V = 6


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


# --------------------------------------------------------------------------- sample


def test_temperature_zero_is_argmax():
    logits = torch.randn(4, 10)
    assert torch.equal(sample(logits, temperature=0.0), logits.argmax(-1, keepdim=True))


def test_top_k_samples_only_the_k_most_likely():
    logits = torch.tensor([[0.0, 3.0, 1.0, 2.0, -1.0]]).expand(2000, 5)
    draws = sample(logits, top_k=2, generator=torch.Generator().manual_seed(0))
    assert set(draws.flatten().tolist()) == {1, 3}
    assert torch.equal(sample(logits[:3], top_k=1), torch.ones(3, 1, dtype=torch.long))


def test_top_p_keeps_the_smallest_set_reaching_p():
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    logits = probs.log().expand(4000, 4)
    draws = sample(logits, top_p=0.7, generator=torch.Generator().manual_seed(0))
    assert set(draws.flatten().tolist()) == {0, 1}  # 0.5 < 0.7 <= 0.5 + 0.3
    share = (draws == 0).float().mean().item()
    assert share == pytest.approx(0.5 / 0.8, abs=0.03)  # renormalised over the kept tokens
    only_top = sample(logits[:50], top_p=0.1, generator=torch.Generator().manual_seed(0))
    assert only_top.unique().tolist() == [0]  # the most likely token always stays


def test_sampling_follows_the_softmax_at_the_temperature():
    logits = torch.tensor([[0.0, math.log(3.0)]]).expand(8000, 2)
    draws = sample(logits, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert (draws == 1).float().mean().item() == pytest.approx(0.75, abs=0.02)
    hot = sample(logits, temperature=1e3, generator=torch.Generator().manual_seed(0))
    assert (hot == 1).float().mean().item() == pytest.approx(0.5, abs=0.02)


# --------------------------------------------------------------------------- generate (decoder-only)


def tiny_gpt(**overrides):
    params = dict(vocab_size=20, n_layer=2, n_head=2, n_embd=16, block_size=12)
    return GPT(GPTConfig(**(params | overrides))).eval()


def test_generate_appends_tokens():
    model = tiny_gpt()
    prompt = torch.randint(0, 20, (3, 4))
    out = generate(model, prompt, 5, temperature=0.0)
    assert out.shape == (3, 9) and torch.equal(out[:, :4], prompt)
    assert torch.equal(generate(model, prompt, 0), prompt)
    with pytest.raises(ValueError, match="max_new_tokens must be >= 0"):
        generate(model, prompt, -1)


def test_generate_past_block_size_slides_the_window():
    """Prompt + new tokens exceed block_size: the model only ever sees the last block_size tokens, with
    or without a cache, and the result is the plain sliding-window recompute."""
    model = tiny_gpt()
    prompt = torch.randint(0, 20, (2, 10))
    expected = prompt
    for _ in range(8):
        next_id = model(expected[:, -12:])[:, -1].argmax(-1, keepdim=True)
        expected = torch.cat([expected, next_id], dim=1)
    for use_cache in (True, False):
        assert torch.equal(generate(model, prompt, 8, temperature=0.0, use_cache=use_cache), expected)


class AlwaysSeven(nn.Module):
    """A stand-in language model whose next token is always 7."""

    config = SimpleNamespace(block_size=16)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        logits = torch.zeros(*input_ids.shape, 20)
        logits[..., 7] = 1.0
        return logits


def test_generate_stops_once_every_row_produced_eos():
    prompt = torch.randint(0, 20, (2, 3))
    out = generate(AlwaysSeven(), prompt, 6, temperature=0.0, eos_id=7)
    assert out.shape == (2, 4) and out[:, -1].tolist() == [7, 7]
    assert generate(AlwaysSeven(), prompt, 6, temperature=0.0).shape == (2, 9)  # without eos_id: all 6


def test_generate_fills_finished_rows_with_eos():
    model = tiny_gpt()
    prompt = torch.randint(0, 20, (4, 3))
    free = generate(model, prompt, 8, generator=torch.Generator().manual_seed(5))
    eos = int(free[0, 4])  # the token row 0 samples second: treat it as eos
    out = generate(model, prompt, 8, generator=torch.Generator().manual_seed(5), eos_id=eos)
    for row in out.tolist():
        generated = row[3:]
        if eos in generated:
            first = generated.index(eos)
            assert all(token == eos for token in generated[first:])


# --------------------------------------------------------------------------- greedy and beam search


def toy_step(table: dict[tuple[int, ...], dict[int, float]]):
    """A step whose next-token distribution is written by hand: table[prefix] -> {token: probability};
    unlisted prefixes end with eos. Tokens without a probability get 1e-9."""

    def step(tokens: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
        probs = torch.full((tokens.size(0), V), 1e-9)
        for row, ids in enumerate(tokens.tolist()):
            for token, p in table.get(tuple(ids[1:]), {EOS: 1.0}).items():
                probs[row, token] = p
        return probs.log()

    return step


def sequence_log_prob(table, ids: list[int]) -> float:
    """log P(ids, eos) under the toy table."""
    total, prefix = 0.0, ()
    for token in [*ids, EOS]:
        total += math.log(table.get(prefix, {EOS: 1.0}).get(token, 1e-9))
        prefix = (*prefix, token)
    return total


# Greedy takes A (0.55) and is then stuck with continuations of 0.36 at best; B (0.45) then eos (0.9)
# is the better sequence: 0.405 against 0.55 * 0.36 * 0.5 = 0.099.
TRAP = {
    (): {A: 0.55, B: 0.45},
    (A,): {A: 0.36, B: 0.34, EOS: 0.30},
    (A, A): {EOS: 0.5, A: 0.25, B: 0.25},
    (B,): {EOS: 0.9, A: 0.05, B: 0.05},
}


def test_beam_search_finds_a_more_likely_sequence_than_greedy():
    step = toy_step(TRAP)
    greedy = greedy_search(step, 1, BOS, EOS, max_new_tokens=5, device=torch.device("cpu"))[0]
    beam = beam_search(step, 1, 2, BOS, EOS, 5, torch.device("cpu"), length_penalty=0.0)[0]
    assert greedy == [A, A] and beam == [B]
    assert sequence_log_prob(TRAP, beam) > sequence_log_prob(TRAP, greedy)


def test_beam_search_waits_for_a_live_beam_that_can_still_win():
    """Two unlikely hypotheses finish first ([B] at 0.06, [B, A] at 0.02) while [A, A] (0.89) is still
    growing; stopping as soon as K = 2 hypotheses are finished would return [B]."""
    table = {
        (): {A: 0.9, B: 0.1},
        (A,): {A: 0.99, EOS: 0.01},
        (A, A): {A: 0.99, EOS: 0.01},
        (B,): {EOS: 0.6, A: 0.4},
    }
    beam = beam_search(toy_step(table), 1, 2, BOS, EOS, 6, torch.device("cpu"), length_penalty=0.0)
    assert beam == [[A, A, A]]


def test_length_penalty_trades_likelihood_for_length():
    # [A] + eos has probability 0.3 over 2 tokens; [B, B] + eos 0.28 over 3: less likely in total, more
    # likely per token.
    table = {
        (): {A: 0.6, B: 0.4},
        (A,): {EOS: 0.5, A: 0.25, B: 0.25},
        (B,): {B: 0.7, EOS: 0.2, A: 0.1},
    }
    step, cpu = toy_step(table), torch.device("cpu")
    assert beam_search(step, 1, 2, BOS, EOS, 5, cpu, length_penalty=0.0) == [[A]]
    assert beam_search(step, 1, 2, BOS, EOS, 5, cpu, length_penalty=1.0) == [[B, B]]
    assert sequence_log_prob(table, [A]) / 2 < sequence_log_prob(table, [B, B]) / 3


def random_step(seed: int, vocab: int = 8, max_len: int = 12):
    """A fixed random next-token distribution depending on the row, the last token and the position."""
    table = torch.randn(4, vocab, max_len + 1, vocab, generator=torch.Generator().manual_seed(seed)) * 3

    def step(tokens: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
        rows = torch.arange(tokens.size(0)) // (tokens.size(0) // 2)  # the example each row belongs to
        return table[rows, tokens[:, -1], tokens.size(1)].log_softmax(-1)

    return step


@pytest.mark.parametrize("seed", range(5))
def test_beam_search_with_one_beam_is_greedy(seed):
    step, cpu = random_step(seed), torch.device("cpu")
    greedy = greedy_search(step, 2, BOS, EOS, 10, cpu)
    assert beam_search(step, 2, 1, BOS, EOS, 10, cpu) == greedy
    assert beam_search(step, 2, 1, BOS, EOS, 10, cpu, length_penalty=0.0) == greedy


def test_beam_search_reorders_rows_through_origin():
    """A stateful step (as a KV cache is) that follows origin gives what a stateless one gives."""
    stateless = random_step(7)
    state: dict[str, torch.Tensor] = {}

    def stateful(tokens: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
        if origin is not None:
            state["history"] = state["history"][origin]
        last = tokens[:, -1:]
        state["history"] = last if "history" not in state else torch.cat([state["history"], last], dim=1)
        return stateless(state["history"], None)

    cpu = torch.device("cpu")
    assert beam_search(stateful, 2, 3, BOS, EOS, 10, cpu) == beam_search(stateless, 2, 3, BOS, EOS, 10, cpu)


def test_search_arguments_are_checked():
    with pytest.raises(ValueError, match="num_beams must be >= 1"):
        beam_search(toy_step(TRAP), 1, 0, BOS, EOS, 5, torch.device("cpu"))
    with pytest.raises(ValueError, match="max_new_tokens must be >= 1"):
        greedy_search(toy_step(TRAP), 1, BOS, EOS, 0, torch.device("cpu"))


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_left_padded_prompts_generate_as_each_would_alone(positions):
    """Prompts of different lengths in one batch (left padding, its attention mask): each row's greedy
    tokens are the ones it gets alone, with learned and with rotary positions."""
    from lightning_llm.models.gpt import GPT, GPTConfig
    from lightning_llm.models.sampling import left_pad

    torch.manual_seed(0)
    config = GPTConfig(vocab_size=97, n_layer=2, n_head=2, n_embd=32, block_size=64, positions=positions)
    model = GPT(config).eval()
    prompts = [[5, 6, 7, 8, 9, 10], [11, 12], [13, 14, 15, 16], [17]]
    ids, mask = left_pad(prompts, pad_id=0)
    assert ids[1].tolist() == [0, 0, 0, 0, 11, 12] and mask[1].tolist() == [False] * 4 + [True] * 2
    batch = generate(model, ids, 20, temperature=0.0, attention_mask=mask)
    for row, prompt in enumerate(prompts):
        alone = generate(model, torch.tensor([prompt]), 20, temperature=0.0)
        assert batch[row, -20:].tolist() == alone[0, -20:].tolist()


def test_a_mask_that_is_not_left_padding_is_refused():
    from lightning_llm.models.gpt import GPT, GPTConfig

    model = GPT(GPTConfig(vocab_size=97, n_layer=1, n_head=2, n_embd=32, block_size=16)).eval()
    ids = torch.ones(2, 4, dtype=torch.long)
    right_padded = torch.tensor([[True, True, True, True], [True, True, False, False]])
    with pytest.raises(ValueError, match="left padding"):
        generate(model, ids, 3, temperature=0.0, attention_mask=right_padded)
    with pytest.raises(ValueError, match="need the KV cache"):
        generate(
            model, ids, 3, temperature=0.0, attention_mask=torch.ones(2, 4, dtype=torch.bool), use_cache=False
        )


def test_a_plugin_model_without_config_generates_over_the_whole_prefix():
    """``config.block_size`` is an optional extra of a model plugin: without it nothing is cropped or
    cached (a run's samples at the end of training used to fail on the missing attribute)."""

    class Plain(nn.Module):
        def __init__(self):
            super().__init__()
            self.seen: list[int] = []

        def forward(self, idx):
            self.seen.append(idx.size(1))
            return torch.nn.functional.one_hot((idx + 1) % 7, 7).float()  # next token: previous + 1

    model = Plain()
    out = generate(model, torch.tensor([[0, 1]]), max_new_tokens=4, temperature=0.0)
    assert out.tolist() == [[0, 1, 2, 3, 4, 5]]
    assert model.seen == [2, 3, 4, 5]
