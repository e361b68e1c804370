import math

import pytest
from torchmetrics import Metric

from lightning_llm import registry
from lightning_llm.data.pairs import reverse_words_pairs
from lightning_llm.data.sources import pydoc_topics
from lightning_llm.metrics.generation import BLEU, ROUGE

SENTENCES = ["the cat sat on the mat", "a quick brown fox jumps over the lazy dog", "to be or not to be"]


def score(metric: Metric, predictions: list[str], references: list[str]) -> float:
    metric.update(predictions, references)
    return metric.compute().item()


@pytest.mark.parametrize("name", ["bleu", "rouge"])
def test_registered_text_metrics(name):
    metric = registry.build("metric", name)
    assert isinstance(metric, Metric)
    assert type(metric).input_kind == "text"
    assert metric.higher_is_better


@pytest.mark.parametrize("metric", [BLEU, ROUGE])
def test_identical_text_scores_one(metric):
    assert score(metric(), SENTENCES, SENTENCES) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [BLEU, ROUGE])
def test_unrelated_text_scores_zero(metric):
    assert score(metric(), ["x y z w v"], ["a b c d e"]) == 0.0


def test_bleu_by_hand():
    # BLEU-2 of "a b c d" against "a b c e": unigram precision 3/4, bigram 2/3, no brevity penalty.
    assert score(BLEU(n_gram=2), ["a b c d"], ["a b c e"]) == pytest.approx(math.sqrt(3 / 4 * 2 / 3))
    # A prediction half the reference's length: precisions 1, brevity penalty exp(1 - 4 / 2).
    assert score(BLEU(n_gram=2), ["a b"], ["a b c d"]) == pytest.approx(math.exp(-1))


def test_bleu_is_corpus_level_and_accumulates():
    predictions, references = ["a b c d e", "x y"], ["a b c d f", "x y"]
    two = BLEU()
    two.update(predictions[:1], references[:1])
    two.update(predictions[1:], references[1:])
    one = BLEU()
    one.update(predictions, references)
    assert two.compute() == one.compute()
    # counts pooled over both: 1-grams 6/7, 2-grams 4/5, 3-grams 2/3, 4-grams 1/2 ("x y" has no 3- or 4-gram)
    assert one.compute().item() == pytest.approx((6 / 7 * 4 / 5 * 2 / 3 * 1 / 2) ** 0.25, rel=1e-6)


def test_rouge_l_by_hand():
    # LCS of "a b c d" and "a c d e f" is "a c d": precision 3/4, recall 3/5, F = 2PR / (P + R) = 2/3.
    assert score(ROUGE(), ["a b c d"], ["a c d e f"]) == pytest.approx(2 / 3)
    # The mean over examples, punctuation and case ignored: (1 + 0) / 2.
    assert score(ROUGE(), ["The Cat, sat.", "dog"], ["the cat sat", "mouse"]) == pytest.approx(0.5)


def test_rouge_keeps_letters_of_every_script():
    # The standard [^a-z0-9] normaliser would delete every word here and score 0.
    assert score(ROUGE(), ["καλημέρα κόσμε"], ["καλημέρα κόσμε"]) == pytest.approx(1.0)
    assert score(ROUGE(), ["naïve café"], ["naïve bar"]) == pytest.approx(0.5)


def test_rouge_before_any_example_is_nan():
    with pytest.warns(UserWarning, match="called before the ``update``"):
        assert math.isnan(ROUGE().compute().item())


def test_copying_the_source_scores_below_reversing_it():
    pairs = reverse_words_pairs(pydoc_topics(), num_examples=300)
    sources = [pair.source for pair in pairs]
    targets = [pair.target for pair in pairs]
    copy_bleu, copy_rouge = score(BLEU(), sources, targets), score(ROUGE(), sources, targets)
    assert copy_bleu < 0.05  # the copy shares unigrams only; reversed 2-grams rarely occur
    assert copy_rouge < 0.45  # the LCS of a sequence and its reversal is about one word
    assert score(BLEU(), targets, targets) == pytest.approx(1.0)
    assert score(ROUGE(), targets, targets) == pytest.approx(1.0)


@pytest.mark.parametrize("metric", [BLEU, ROUGE])
def test_bad_inputs(metric):
    with pytest.raises(ValueError, match="got 2 predictions but 1 references"):
        metric().update(["a", "b"], ["a"])
    with pytest.raises(TypeError, match="predictions must be a list of strings"):
        metric().update("a b", ["a b"])


@pytest.mark.parametrize("metric", [BLEU, ROUGE])
def test_ddp_sync_gives_the_value_over_all_processes(metric):
    """Simulate a 2-process all_gather: "rank 0" receives its own states and those of "rank 1"."""
    predictions = ["a b c d e", "x y z", "the cat sat on the mat", "one two"]
    references = ["a b c d f", "x y", "the cat sat on a mat", "two one"]
    rank0, rank1, everything = metric(), metric(), metric()
    rank0.update(predictions[:1], references[:1])  # processes may see different numbers of examples
    rank1.update(predictions[1:], references[1:])
    everything.update(predictions, references)
    rank1_states = [getattr(rank1, name) for name in rank1._defaults]

    def all_gather(tensor, group=None):
        return [tensor, rank1_states.pop(0)]

    rank0.dist_sync_fn = all_gather
    rank0.distributed_available_fn = lambda: True
    assert rank0.compute().item() == pytest.approx(everything.compute().item(), rel=1e-6)
    assert not rank1_states  # every state was gathered
