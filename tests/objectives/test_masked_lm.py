import pytest
import torch
import torch.nn.functional as F

from lightning_llm import registry
from lightning_llm.models.encoder import Encoder, EncoderConfig
from lightning_llm.objectives.causal_lm import IGNORE_INDEX
from lightning_llm.objectives.masked_lm import MaskedLM, mask_tokens
from lightning_llm.tokenizers import CharTokenizer

SPECIAL = torch.arange(7)  # pad, unk, bos, eos, mask, cls, sep of a trained tokenizer
MASK_ID = 4
VOCAB = 1000
ORDINARY = torch.arange(7, VOCAB)


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    tokenizer = CharTokenizer()
    tokenizer.train(["abcdefghijklmnopqrstuvwxyz .,"])
    return tokenizer


def mask(input_ids: torch.Tensor, mask_prob: float = 0.15, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    return mask_tokens(
        input_ids,
        mask_id=MASK_ID,
        special_ids=SPECIAL,
        random_ids=ORDINARY,
        mask_prob=mask_prob,
        generator=generator,
    )


def test_rates_follow_the_80_10_10_rule():
    input_ids = torch.randint(7, VOCAB, (256, 512), generator=torch.Generator().manual_seed(1))
    masked_ids, labels = mask(input_ids)
    picked = labels != IGNORE_INDEX
    n = picked.sum().item()
    assert n / input_ids.numel() == pytest.approx(0.15, abs=0.003)  # ~19.7k picks; sd of the rate ~0.0007
    to_mask = (masked_ids == MASK_ID) & picked
    unchanged = (masked_ids == input_ids) & picked
    to_random = picked & ~to_mask & ~unchanged
    assert to_mask.sum().item() / n == pytest.approx(0.8, abs=0.015)
    assert to_random.sum().item() / n == pytest.approx(0.1, abs=0.01)
    assert unchanged.sum().item() / n == pytest.approx(0.1, abs=0.01)
    assert torch.equal(masked_ids[~picked], input_ids[~picked])  # nothing else is touched
    assert torch.equal(labels[picked], input_ids[picked])
    assert not torch.isin(masked_ids[to_random], SPECIAL).any()  # random tokens are ordinary ones


def test_special_tokens_are_never_picked():
    input_ids = torch.randint(0, 20, (64, 128), generator=torch.Generator().manual_seed(2))  # ~1/3 special
    special = torch.isin(input_ids, SPECIAL)
    masked_ids, labels = mask(input_ids, mask_prob=0.5)
    assert (labels[special] == IGNORE_INDEX).all()
    assert torch.equal(masked_ids[special], input_ids[special])
    assert (labels[~special] != IGNORE_INDEX).float().mean().item() == pytest.approx(0.5, abs=0.03)


def test_every_row_with_ordinary_tokens_gets_at_least_one_pick():
    input_ids = torch.randint(7, VOCAB, (500, 4), generator=torch.Generator().manual_seed(3))
    input_ids[0] = torch.tensor([0, 0, 0, 0])  # all padding: nothing to predict
    input_ids[1] = torch.tensor([0, 0, 9, 0])  # one ordinary token: it must be picked
    _, labels = mask(input_ids, mask_prob=0.01)
    picked = labels != IGNORE_INDEX
    assert not picked[0].any()
    assert picked[1].tolist() == [False, False, True, False]
    assert picked[1:].any(dim=1).all()
    assert picked.sum().item() < 1.2 * 499  # about one per row: the minimum, not a higher rate


def test_same_generator_seed_same_masks():
    input_ids = torch.randint(7, VOCAB, (4, 32))
    a, b, c = mask(input_ids, seed=5), mask(input_ids, seed=5), mask(input_ids, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[1], c[1])


def test_objective_masks_reproducibly_from_the_global_seed(tokenizer):
    objective = MaskedLM(tokenizer=tokenizer)
    input_ids = torch.randint(7, tokenizer.vocab_size, (4, 32))
    torch.manual_seed(0)
    first = objective.mask(input_ids)
    second = objective.mask(input_ids)
    torch.manual_seed(0)
    again = objective.mask(input_ids)
    assert torch.equal(first[1], again[1]) and torch.equal(first[0], again[0])
    assert not torch.equal(first[1], second[1])  # a fresh mask for every batch


def test_evaluation_masks_a_batch_alike_whatever_the_random_state(tokenizer):
    """Each validation drew other masks from the run's RNG: val losses carried that noise, and summary.json's
    differed from the evaluate command's for the same weights."""
    objective = MaskedLM(tokenizer=tokenizer)
    ids = torch.randint(7, tokenizer.vocab_size, (4, 32), generator=torch.Generator().manual_seed(3))
    torch.manual_seed(0)
    first = objective.mask(ids, fixed=True)
    torch.manual_seed(1)
    again = objective.mask(ids, fixed=True)
    assert all(torch.equal(a, b) for a, b in zip(first, again, strict=True))
    other = objective.mask(ids.roll(1, dims=1), fixed=True)
    assert not torch.equal(first[1], other[1])  # another batch, other masks
    torch.manual_seed(0)
    trained = objective.mask(ids)
    torch.manual_seed(1)
    assert not torch.equal(trained[1], objective.mask(ids)[1])  # training: drawn afresh from the RNG


def test_objective_uses_the_tokenizer_ids(tokenizer):
    objective = MaskedLM(tokenizer=tokenizer, mask_prob=0.9)
    input_ids = torch.randint(0, tokenizer.vocab_size, (8, 64))
    masked_ids, labels = objective.mask(input_ids)
    specials = torch.tensor([tokenizer.pad_id, tokenizer.cls_id, tokenizer.eos_id, tokenizer.mask_id])
    assert (labels[torch.isin(input_ids, specials)] == IGNORE_INDEX).all()
    assert (masked_ids == tokenizer.mask_id).any()
    assert int(masked_ids.max()) < tokenizer.vocab_size


def test_loss_is_only_on_the_masked_positions(tokenizer):
    torch.manual_seed(0)
    model = Encoder(
        EncoderConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=32)
    ).eval()
    objective = registry.build("objective", "masked_lm", tokenizer=tokenizer)
    input_ids = torch.randint(7, tokenizer.vocab_size, (3, 32))
    batch = {"input_ids": input_ids.clone(), "labels": torch.roll(input_ids, -1, dims=1)}
    torch.manual_seed(1)
    loss, n_targets, scores = objective.loss(model, batch)
    masked_ids, labels = objective.mask(input_ids, fixed=True)  # an eval-mode model: masked by its ids
    assert isinstance(n_targets, torch.Tensor) and n_targets.item() == (labels != IGNORE_INDEX).sum().item()
    logits = model(masked_ids)  # the whole head, every position: what the loss must equal at the picked ones
    picked = labels != IGNORE_INDEX
    expected = F.cross_entropy(logits[picked], input_ids[picked], reduction="sum")
    torch.testing.assert_close(loss, expected)
    assert loss.dtype == torch.float32
    per_token = F.cross_entropy(logits.transpose(1, 2), labels, reduction="none")  # 0 where not picked
    torch.testing.assert_close(scores.nll, per_token, rtol=1e-5, atol=1e-6)
    assert torch.equal(scores.predicted[picked], logits.argmax(-1)[picked])
    assert torch.equal(batch["labels"], labels)  # metrics see the masking labels
    assert torch.equal(batch["input_ids"], input_ids)  # the inputs themselves are left alone
    torch.manual_seed(1)  # the same masking, the head run three masked tokens at a time
    chunked_objective = registry.build("objective", "masked_lm", tokenizer=tokenizer, logits_chunk=3)
    chunked, _, _ = chunked_objective.loss(model, {"input_ids": input_ids.clone()})
    torch.testing.assert_close(chunked, loss, rtol=1e-5, atol=0)


def test_tiny_encoder_learns_a_repetitive_corpus(tokenizer):
    torch.manual_seed(0)
    ids = torch.tensor(tokenizer.encode("abcdefgh" * 64))  # each letter is fixed by its neighbours
    windows = ids.view(16, 32)  # (B, T) packed windows, as the text data plugins serve them
    model = Encoder(
        EncoderConfig(
            vocab_size=tokenizer.vocab_size, n_layer=2, n_head=4, n_embd=64, block_size=32, dropout=0.0
        )
    )
    objective = MaskedLM(tokenizer=tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(50):
        loss_sum, n_targets, _ = objective.loss(model, {"input_ids": windows})
        loss = loss_sum / n_targets
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[0] > 3.0  # about log(vocab = 36): nothing known yet
    assert sum(losses[-5:]) / 5 < 0.2


@pytest.mark.parametrize("mask_prob", [0.0, 1.0, -0.1])
def test_mask_prob_must_be_a_probability(tokenizer, mask_prob):
    with pytest.raises(ValueError, match="objective.mask_prob must be in"):
        MaskedLM(tokenizer=tokenizer, mask_prob=mask_prob)


def test_registered_with_default_data():
    plugin = registry.get("objective", "masked_lm")
    assert plugin.target is MaskedLM and MaskedLM.default_data == "pydoc"
    assert [p.name for p in plugin.parameters()][-2:] == ["mask_prob", "logits_chunk"]


def test_the_joint_loss_is_the_sum_of_the_two_means():
    from lightning_llm.data.sentence_pairs import IS_NEXT, NOT_NEXT, PairCollator, SentencePair, encode_pair
    from lightning_llm.models.encoder import Encoder, EncoderConfig
    from lightning_llm.objectives.causal_lm import summed_cross_entropy
    from lightning_llm.objectives.masked_lm import MaskedLMWithNSP
    from lightning_llm.tokenizers import CharTokenizer

    tokenizer = CharTokenizer()
    tokenizer.train(["abcdefgh ijklmnop"])
    objective = MaskedLMWithNSP(tokenizer)
    torch.manual_seed(0)
    model = Encoder(EncoderConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16,
                                  block_size=32, num_classes=2)).eval()  # fmt: skip
    pairs = [SentencePair("abc def", "ghi", IS_NEXT), SentencePair("jkl", "mno p", NOT_NEXT)]
    batch = PairCollator(tokenizer.pad_id)([encode_pair(p, tokenizer, 32) for p in pairs])
    torch.manual_seed(1)
    loss, n_masked, next_logits = objective.loss(model, dict(batch))
    torch.manual_seed(1)
    masked, labels = objective.mask(batch["input_ids"], fixed=True)  # an eval-mode model
    hidden = model.encode(masked, batch["attention_mask"], batch["token_type_ids"])
    mlm, n = summed_cross_entropy(model.mlm_logits(hidden), labels)
    nsp = torch.nn.functional.cross_entropy(model.classify(hidden), batch["labels"])
    assert n == n_masked and next_logits.shape == (2, 2)
    assert torch.allclose(loss / n_masked, mlm / n + nsp)
    assert not torch.isin(labels[labels >= 0], torch.tensor([tokenizer.cls_id, tokenizer.sep_id])).any()
