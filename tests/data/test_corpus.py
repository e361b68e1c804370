import random
from collections import Counter

import pytest

from lightning_llm.data.corpus import (
    SPLITS,
    CorpusTooSmallError,
    assign_split,
    check_fraction,
    split_corpus,
    split_paragraphs,
)
from lightning_llm.data.sources import pydoc_topics


def synthetic_documents(n_docs=50, paragraphs_per_doc=100, seed=0):
    rng = random.Random(seed)
    words = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta"]
    return [
        "\n\n".join(
            f"doc {d} para {p}: " + " ".join(rng.choices(words, k=8)) for p in range(paragraphs_per_doc)
        )
        for d in range(n_docs)
    ]


def paragraphs_of(texts):
    return [p for text in texts for p in split_paragraphs(text)]


def test_paragraphs_split_at_blank_lines_and_keep_indentation():
    doc = "Title\n*****\n\n\n   code line\n   more\n  \t\nlast  \n"
    assert split_paragraphs(doc) == ["Title\n*****", "   code line\n   more", "last"]
    assert split_paragraphs("\n \n") == []


def test_split_is_deterministic_and_seed_dependent():
    docs = synthetic_documents()
    first, again = split_corpus(docs), split_corpus(docs)
    assert first.texts == again.texts
    assert first.fingerprint == again.fingerprint
    other = split_corpus(docs, seed=7)
    assert other.texts != first.texts
    assert other.fingerprint != first.fingerprint


def test_splits_are_disjoint_cover_everything_and_keep_order():
    docs = synthetic_documents()
    corpus = split_corpus(docs, val_fraction=0.1, test_fraction=0.2)
    everything = paragraphs_of(docs)
    by_split = {split: paragraphs_of(corpus.texts[split]) for split in SPLITS}
    assert Counter(p for split in SPLITS for p in by_split[split]) == Counter(everything)
    members = {split: set(by_split[split]) for split in SPLITS}
    for split in SPLITS:
        assert by_split[split] == [p for p in everything if p in members[split]]  # corpus order kept
        assert all(not members[split] & members[other] for other in SPLITS if other != split)


def test_fractions_are_roughly_honoured():
    corpus = split_corpus(synthetic_documents(), val_fraction=0.1, test_fraction=0.2)
    counts = {split: len(paragraphs_of(corpus.texts[split])) for split in SPLITS}
    total = sum(counts.values())
    assert total == 5000
    assert abs(counts["val"] / total - 0.1) < 0.02
    assert abs(counts["test"] / total - 0.2) < 0.02


def test_pydoc_split_is_mostly_train():
    corpus = split_corpus(pydoc_topics())
    sizes = {split: sum(map(len, texts)) for split, texts in corpus.texts.items()}
    assert 0.8 < sizes["train"] / sum(sizes.values()) < 0.95
    assert min(sizes.values()) > 10_000


def test_consecutive_same_split_paragraphs_stay_together():
    docs = synthetic_documents(n_docs=1, paragraphs_per_doc=200)
    corpus = split_corpus(docs)
    # with 90% train, long runs of train paragraphs form far fewer texts than paragraphs
    assert len(corpus.texts["train"]) < len(paragraphs_of(corpus.texts["train"])) / 3


def test_duplicate_paragraphs_land_in_the_same_split():
    kwargs = {"val_fraction": 0.3, "test_fraction": 0.3, "seed": 1}
    assert len({assign_split("the same words", **kwargs) for _ in range(5)}) == 1


def test_fingerprint_covers_text_and_parameters():
    docs = synthetic_documents(n_docs=5)
    base = split_corpus(docs).fingerprint
    assert split_corpus(docs[:-1] + [docs[-1] + "!"]).fingerprint != base
    assert split_corpus(docs, val_fraction=0.06).fingerprint != base


def test_zero_fraction_leaves_that_split_empty():
    corpus = split_corpus(synthetic_documents(n_docs=2), val_fraction=0.0, test_fraction=0.0)
    assert corpus.texts["val"] == corpus.texts["test"] == []
    assert len(paragraphs_of(corpus.texts["train"])) == 200


def test_too_small_corpus_names_the_empty_split():
    with pytest.raises(
        CorpusTooSmallError, match=r"gave the (val|test) split none.*data\.(val|test)_fraction"
    ):
        split_corpus(["just one paragraph"] * 3)


def test_blank_corpus_is_an_error():
    with pytest.raises(CorpusTooSmallError, match="no text"):
        split_corpus(["", "\n\n  \n"])


@pytest.mark.parametrize("value", [-0.1, 0.5, 0.9])
def test_bad_fraction_names_the_key(value):
    with pytest.raises(ValueError, match=r"data\.val_fraction must be in \[0, 0\.5\)"):
        check_fraction("data.val_fraction", value)
    with pytest.raises(ValueError, match="test_fraction must be in"):
        split_corpus(["text"], test_fraction=value)
