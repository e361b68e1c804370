import pytest
import torch
import torch.nn.functional as F

from lightning_llm import registry
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.objectives.causal_lm import IGNORE_INDEX, CausalLM


def padded_batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    input_ids = torch.randint(0, 50, (3, 10), generator=generator)
    labels = torch.roll(input_ids, -1, dims=1)
    labels[:, -1] = IGNORE_INDEX  # no next token after the last one
    labels[1, 6:] = IGNORE_INDEX  # a shorter, padded sequence
    return {"input_ids": input_ids, "labels": labels}


def test_summed_loss_over_tokens_equals_mean_cross_entropy():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, block_size=10))
    batch = padded_batch()
    loss, n_target_tokens, logits = registry.build("objective", "causal_lm").loss(model, batch)
    assert isinstance(n_target_tokens, torch.Tensor) and n_target_tokens.item() == 3 * 9 - 3
    assert logits.shape == (3, 10, 50)
    expected = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
    torch.testing.assert_close(loss / n_target_tokens, expected)
    loss.backward()
    assert model.wte.weight.grad is not None


def test_loss_is_float32_for_low_precision_logits():
    logits = torch.randn(2, 4, 8, dtype=torch.bfloat16)
    batch = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": torch.randint(0, 8, (2, 4))}
    loss, n_target_tokens, _ = CausalLM().loss(lambda input_ids: logits, batch)
    assert loss.dtype == torch.float32
    expected = F.cross_entropy(logits.float().flatten(0, 1), batch["labels"].flatten(), reduction="sum")
    torch.testing.assert_close(loss, expected)
    assert n_target_tokens.item() == 8


def test_one_label_a_text_is_named_for_the_data_it_is():
    """model=gpt on classification data: torch's "Expected input batch_size (420) to match target batch_size
    (12)" named neither the data nor a choice."""
    import pytest

    model = GPT(GPTConfig(vocab_size=50, n_layer=1, n_head=2, n_embd=16, block_size=10))
    batch = {"input_ids": torch.zeros(3, 10, dtype=torch.long), "labels": torch.zeros(3, dtype=torch.long)}
    with pytest.raises(ValueError, match=r"causal_lm needs a label for each input token, shape \(3, 10\)"):
        registry.build("objective", "causal_lm").loss(model, batch)


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ((torch.zeros(2, 4, 8),), r"model\(input_ids\) to return logits of shape \(2, 4, 'V'\); .* a tuple"),
        (torch.zeros(2, 8), r"logits of shape \(2, 4, 'V'\); the model returned shape \(2, 8\)"),
        (torch.zeros(4, 2, 8), r"the model returned shape \(4, 2, 8\)"),  # (T, B, V): torch would train on it
    ],
)
def test_a_model_output_that_is_not_token_logits_is_named(output, expected):
    """A model plugin's wrong output was torch's message about its internals, or (time-major) no message."""
    batch = {"input_ids": torch.zeros(2, 4, dtype=torch.long), "labels": torch.randint(0, 8, (2, 4))}
    with pytest.raises(ValueError, match=f"causal_lm needs .*{expected}"):
        CausalLM().loss(lambda input_ids: output, batch)
