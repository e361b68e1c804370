"""token_entropy against hand computations and the uniform case, its sum states, and in a CLI run."""

import math

import pytest
import torch
from llm_token_entropy import TokenEntropy, summed_entropy

import lightning_llm
from lightning_llm.tokenizers import Tokenizer


def test_is_registered_by_its_package():
    plugin = lightning_llm.get("metric", "token_entropy")  # through the installed package's entry point
    assert plugin.source == "llm-token-entropy" and plugin.target is TokenEntropy
    assert [(p.name, p.default) for p in plugin.parameters()] == [("ignore_index", -100)]


def test_matches_a_hand_computation():
    logits = torch.tensor([[[0.0, 0.0], [math.log(3.0), 0.0], [5.0, -5.0]]])  # (B=1, T=3, V=2)
    labels = torch.tensor([[1, 0, -100]])  # the third position is not scored
    # p = (1/2, 1/2): H = log 2.  p = (3/4, 1/4): H = -(3/4 log 3/4 + 1/4 log 1/4) = log 4 - 3/4 log 3.
    expected = (math.log(2) + math.log(4) - 0.75 * math.log(3)) / 2
    metric = TokenEntropy()
    metric.update(logits, labels)
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    total, count = summed_entropy(logits, labels)
    assert total.item() == pytest.approx(2 * expected, rel=1e-6) and count.item() == 2


@pytest.mark.parametrize("vocab_size", [2, 7, 1000])
def test_uniform_logits_give_log_vocab_size(vocab_size):
    metric = TokenEntropy()
    metric.update(torch.full((3, 5, vocab_size), 4.2), torch.zeros(3, 5, dtype=torch.long))
    assert metric.compute().item() == pytest.approx(math.log(vocab_size), rel=1e-6)


def test_a_certain_prediction_has_zero_entropy_even_with_minus_inf_logits():
    logits = torch.tensor([[0.0, -math.inf, -math.inf]])  # p = (1, 0, 0); 0 * log 0 counts as 0, not nan
    assert summed_entropy(logits, torch.tensor([0]))[0].item() == 0.0


def test_sum_states_merge_exactly():
    """Two processes' states add up to one process's over all the data (what DDP's sum reduction does)."""
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 9, 11), torch.randint(0, 11, (6, 9))
    labels[labels == 3] = -100
    whole, first, second = TokenEntropy(), TokenEntropy(), TokenEntropy()
    whole.update(logits, labels)
    first.update(logits[:2], labels[:2])
    second.update(logits[2:], labels[2:])
    first.merge_state(second)
    torch.testing.assert_close(first.compute(), whole.compute())
    assert whole._reductions.keys() == {"entropy_sum", "n_tokens"}


def test_shape_mismatch_is_explained():
    with pytest.raises(ValueError, match="need labels of shape"):
        TokenEntropy().update(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_works_as_a_metric_in_a_cli_run(train_cli):
    run_dir, summary = train_cli("metrics=[perplexity,token_entropy]")
    vocab_size = Tokenizer.from_file(run_dir / "tokenizer.json").vocab_size
    for stage in ("val", "test"):
        assert 0.0 < summary[f"{stage}_token_entropy"] <= math.log(vocab_size) + 1e-6
    assert "val_perplexity" in summary and "val_accuracy" not in summary
