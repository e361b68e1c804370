import math

import pytest
import torch
import torch.nn.functional as F

from lightning_llm import registry
from lightning_llm.metrics.text import Accuracy, Perplexity, summed_nll


def batch(seed: int, batch_size: int = 3, seq_len: int = 7, vocab: int = 11):
    generator = torch.Generator().manual_seed(seed)
    logits = torch.randn(batch_size, seq_len, vocab, generator=generator)
    labels = torch.randint(0, vocab, (batch_size, seq_len), generator=generator)
    labels[0, 4:] = -100
    return logits, labels


def test_perplexity_is_exp_of_mean_cross_entropy():
    logits, labels = batch(0)
    metric = registry.build("metric", "perplexity")
    metric.update(logits, labels)
    expected = math.exp(F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100).item())
    assert metric.compute().item() == pytest.approx(expected, rel=1e-6)
    assert metric.nll_sum.dtype == torch.float64


@pytest.mark.parametrize("chunk_elements", [11, 5 * 11, 1000])  # a row at a time, 5 rows, all 21 at once
def test_summed_nll_in_chunks_equals_one_pass(chunk_elements):
    """Large vocabularies are scored a few rows at a time (bounded float32 memory); the sum is the same."""
    logits, labels = batch(3)
    nll, n_tokens = summed_nll(logits, labels, ignore_index=-100, chunk_elements=chunk_elements)
    expected = F.cross_entropy(logits.flatten(0, 1), labels.flatten(), ignore_index=-100, reduction="sum")
    assert nll.item() == pytest.approx(expected.item(), rel=1e-6)
    assert n_tokens.item() == 3 * 7 - 3


def test_perplexity_accumulates_like_one_big_update():
    (logits_a, labels_a), (logits_b, labels_b) = batch(1), batch(2, batch_size=5)
    two = Perplexity()
    two.update(logits_a, labels_a)
    two.update(logits_b, labels_b)
    one = Perplexity()
    one.update(torch.cat([logits_a, logits_b]), torch.cat([labels_a, labels_b]))
    assert two.compute().item() == pytest.approx(one.compute().item(), rel=1e-6)  # float32 sums per update
    assert two.n_tokens == one.n_tokens == 3 * 7 - 3 + 5 * 7 - 3
    two.reset()
    assert two.n_tokens == 0


def test_perplexity_of_a_perfect_and_a_uniform_model():
    labels = torch.tensor([[1, 2, -100]])
    perfect = torch.full((1, 3, 4), -1e4).scatter(2, torch.tensor([[[1], [2], [0]]]), 0.0)
    metric = Perplexity()
    metric.update(perfect, labels)
    assert metric.compute().item() == pytest.approx(1.0)
    metric = Perplexity()
    metric.update(torch.zeros(1, 3, 4), labels)
    assert metric.compute().item() == pytest.approx(4.0)  # uniform over 4 tokens


def test_accuracy_skips_ignored_tokens():
    logits = torch.tensor([[[0.0, 5.0, 0.0], [5.0, 0.0, 0.0], [0.0, 0.0, 5.0], [5.0, 0.0, 0.0]]])
    labels = torch.tensor([[1, 2, 2, -100]])  # right, wrong, right, ignored (the last would be right)
    metric = registry.build("metric", "accuracy")
    metric.update(logits, labels)
    assert metric.compute().item() == pytest.approx(2 / 3)
    metric.update(logits[:, :1], torch.tensor([[0]]))  # one more, wrong
    assert metric.compute().item() == pytest.approx(2 / 4)


def test_accuracy_for_sequence_classification():
    metric = Accuracy()
    metric.update(torch.tensor([[0.1, 0.9], [0.8, 0.2]]), torch.tensor([1, 1]))
    assert metric.compute().item() == pytest.approx(0.5)


@pytest.mark.parametrize("metric", [Perplexity(), Accuracy()])
def test_mismatched_shapes_are_refused(metric):
    with pytest.raises(ValueError, match=r"logits of shape \(2, 3, 5\) need labels of shape \(2, 3\)"):
        metric.update(torch.zeros(2, 3, 5), torch.zeros(2, 4, dtype=torch.long))


def test_ignore_index_can_be_a_class_id():
    metric = Accuracy(ignore_index=0)  # e.g. a padding id: right predictions of it do not count
    metric.update(torch.tensor([[5.0, 0.0], [5.0, 0.0], [0.0, 5.0]]), torch.tensor([0, 1, 1]))
    assert metric.compute().item() == pytest.approx(1 / 2)
