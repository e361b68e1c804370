import pytest
import torch
import torch.nn.functional as F

from lightning_llm import registry
from lightning_llm.models.encoder import Encoder, EncoderConfig
from lightning_llm.objectives.classification import Classification
from lightning_llm.tokenizers import CharTokenizer

PAD, CLS = 0, 5
VOCAB, CLASSES, BLOCK = 40, 4, 16
BAND = 7  # class k's sequences are made of the tokens 11 + 7k ... 11 + 7k + 6


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    tokenizer = CharTokenizer()
    tokenizer.train(["abcdefghijklmnopqrstuvwxyz"])
    return tokenizer


def toy_batch(n: int, seed: int) -> dict[str, torch.Tensor]:
    """<cls> + tokens from the label's own band of the vocabulary, padded to BLOCK: linearly separable,
    once the <cls> position has gathered the tokens after it (and only the real ones)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, CLASSES, (n,), generator=g)
    lengths = torch.randint(2, BLOCK + 1, (n,), generator=g)  # <cls> included
    input_ids = 11 + BAND * labels[:, None] + torch.randint(0, BAND, (n, BLOCK), generator=g)
    input_ids[:, 0] = CLS
    attention_mask = torch.arange(BLOCK)[None, :] < lengths[:, None]
    input_ids[~attention_mask] = PAD
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


def tiny_classifier(**overrides):
    params = dict(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, block_size=BLOCK, num_classes=CLASSES)
    return Encoder(EncoderConfig(**(params | overrides)))


def test_loss_is_summed_cross_entropy_over_sequences(tokenizer):
    torch.manual_seed(0)
    model = tiny_classifier().eval()
    batch = toy_batch(6, seed=0)
    loss, n, logits = registry.build("objective", "classification", tokenizer=tokenizer).loss(model, batch)
    assert logits.shape == (6, CLASSES)
    assert isinstance(n, torch.Tensor) and n.item() == 6
    expected = model.classify(model.encode(batch["input_ids"], batch["attention_mask"]))
    torch.testing.assert_close(logits, expected)
    torch.testing.assert_close(loss, F.cross_entropy(expected, batch["labels"], reduction="sum"))
    assert loss.dtype == torch.float32


def test_padding_does_not_change_the_prediction(tokenizer):
    torch.manual_seed(0)
    model = tiny_classifier().eval()
    batch = toy_batch(8, seed=1)
    changed = dict(batch, input_ids=batch["input_ids"].masked_fill(~batch["attention_mask"], 33))
    objective = Classification(tokenizer=tokenizer)
    torch.testing.assert_close(objective.loss(model, batch)[2], objective.loss(model, changed)[2])


def test_tiny_encoder_learns_a_separable_task(tokenizer):
    torch.manual_seed(0)
    model = tiny_classifier(dropout=0.0)
    objective = Classification(tokenizer=tokenizer)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for step in range(40):
        loss_sum, n, _ = objective.loss(model, toy_batch(32, seed=step))
        optimizer.zero_grad()
        (loss_sum / n).backward()
        optimizer.step()
    held_out = toy_batch(256, seed=10_000)
    with torch.no_grad():
        _, _, logits = objective.loss(model.eval(), held_out)
    accuracy = (logits.argmax(-1) == held_out["labels"]).float().mean().item()
    assert accuracy > 0.9  # chance is 0.25


def test_labels_must_be_one_per_sequence(tokenizer):
    model = tiny_classifier()
    batch = toy_batch(2, seed=0)
    batch["labels"] = torch.zeros(2, BLOCK, dtype=torch.long)  # a language-model batch
    with pytest.raises(ValueError, match=r"labels of shape \(batch,\) = \(2,\), got \(2, 16\)"):
        Classification(tokenizer=tokenizer).loss(model, batch)


def test_class_logits_of_another_shape_are_named(tokenizer):
    """Logits per token (B, T, K) from a model plugin's classify met the label check's advice about data."""
    model = tiny_classifier()
    model.classify = lambda hidden: hidden  # (B, T, C): not pooled
    with pytest.raises(ValueError, match=r"class logits of shape \(batch, classes\); .* shape \(2, 16, 32\)"):
        Classification(tokenizer=tokenizer).loss(model, toy_batch(2, seed=0))


def test_registered_with_default_data():
    assert registry.get("objective", "classification").target is Classification
    assert Classification.default_data == "pydoc_topics"
