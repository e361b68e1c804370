"""The chunked output layer + cross-entropy equals the eager one (loss, gradients, per-token scores)."""

import pytest
import torch
import torch.nn.functional as F

from lightning_llm.metrics.text import Accuracy, Perplexity
from lightning_llm.models.chunked_head import AUTO_CHUNK_LOGITS, chunk_tokens, linear_cross_entropy
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.objectives.causal_lm import CausalLM, summed_cross_entropy


def inputs(n=37, c=16, v=50, bias=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(n, c, generator=g, requires_grad=True)
    weight = torch.randn(v, c, generator=g, requires_grad=True)
    b = torch.randn(v, generator=g, requires_grad=True) if bias else None
    labels = torch.randint(0, v, (n,), generator=g)
    labels[::5] = -100  # ignored positions
    return hidden, weight, b, labels


def grads(loss, tensors):
    return torch.autograd.grad(loss, [t for t in tensors if t is not None])


def assert_relatively_close(got, expected, name=""):
    """Within 1e-5 of the reference's norm: float32 sums in another order differ by ~1e-7 relative, which
    an element near zero turns into a large elementwise ratio."""
    error = float((got - expected).norm() / expected.norm().clamp(min=1e-30))
    assert error < 1e-5, f"{name}: relative error {error:.2e}"


@pytest.mark.parametrize("chunk", [1, 7, 37, 100])
@pytest.mark.parametrize("bias", [True, False])
def test_loss_gradients_and_scores_equal_the_eager_cross_entropy(chunk, bias):
    hidden, weight, b, labels = inputs(bias=bias)
    logits = F.linear(hidden, weight, b)
    eager = F.cross_entropy(logits, labels, reduction="sum")
    loss, n_tokens, scores = linear_cross_entropy(hidden, weight, labels, chunk, bias=b)
    torch.testing.assert_close(loss, eager, rtol=1e-5, atol=0)
    assert int(n_tokens) == int((labels != -100).sum())
    for got, expected in zip(
        grads(3 * loss, (hidden, weight, b)), grads(3 * eager, (hidden, weight, b)), strict=True
    ):
        assert_relatively_close(got, expected)
    per_token = F.cross_entropy(logits, labels, reduction="none")  # 0 at ignored positions
    torch.testing.assert_close(scores.nll, per_token.detach(), rtol=1e-5, atol=1e-6)
    assert torch.equal(scores.predicted, logits.argmax(-1))


def test_label_smoothing_equals_torchs():
    hidden, weight, b, labels = inputs()
    eager = F.cross_entropy(F.linear(hidden, weight, b), labels, reduction="sum", label_smoothing=0.1)
    loss, _, scores = linear_cross_entropy(hidden, weight, labels, 6, bias=b, label_smoothing=0.1)
    torch.testing.assert_close(loss, eager, rtol=1e-5, atol=0)
    for got, expected in zip(
        grads(loss, (hidden, weight, b)), grads(eager, (hidden, weight, b)), strict=True
    ):
        assert_relatively_close(got, expected)
    plain = F.cross_entropy(F.linear(hidden, weight, b), labels, reduction="none")
    torch.testing.assert_close(scores.nll, plain.detach(), rtol=1e-5, atol=1e-6)  # perplexity's, unsmoothed


def test_without_gradients_it_only_scores():
    hidden, weight, b, labels = inputs()
    with torch.no_grad():
        loss, _, scores = linear_cross_entropy(hidden, weight, labels, 8, bias=b)
    assert not loss.requires_grad
    torch.testing.assert_close(loss, F.cross_entropy(F.linear(hidden, weight, b), labels, reduction="sum"))


def test_auto_chunks_only_logits_larger_than_the_budget():
    assert chunk_tokens(1024, 4096, None) == 0  # 4M logits: computed whole
    assert chunk_tokens(16 * 1024, 50304, None) == AUTO_CHUNK_LOGITS // 50304
    assert chunk_tokens(16 * 1024, 50304, 0) == 0 and chunk_tokens(10, 10, 3) == 3


def tiny_gpt(**overrides) -> GPT:
    torch.manual_seed(0)
    params = dict(vocab_size=97, n_layer=2, n_head=2, n_embd=32, block_size=16, dropout=0.0) | overrides
    return GPT(GPTConfig(**params))


@pytest.mark.parametrize("tie", [True, False])
def test_gpt_chunked_loss_equals_its_logits_loss_with_the_same_gradients(tie):
    model = tiny_gpt(tie_embeddings=tie)
    g = torch.Generator().manual_seed(1)
    ids, labels = torch.randint(0, 97, (3, 16), generator=g), torch.randint(0, 97, (3, 16), generator=g)
    labels[0, :5] = -100
    eager, n_eager = summed_cross_entropy(model(ids), labels)
    expected = grads(eager, list(model.parameters()))
    loss, n_tokens, _ = model(ids, labels=labels, loss_chunk=5)
    torch.testing.assert_close(loss, eager, rtol=1e-5, atol=0)
    assert int(n_tokens) == int(n_eager)
    for (name, _), got, want in zip(
        model.named_parameters(), grads(loss, list(model.parameters())), expected, strict=True
    ):
        assert_relatively_close(got, want, name)


def test_causal_lm_metrics_from_chunks_equal_those_from_logits():
    model = tiny_gpt()
    g = torch.Generator().manual_seed(2)
    batch = {
        "input_ids": torch.randint(0, 97, (4, 16), generator=g),
        "labels": torch.randint(0, 97, (4, 16), generator=g),
    }
    batch["labels"][1, 3:] = -100
    results = []
    for chunk in (0, 6):
        loss, n_tokens, outputs = CausalLM(logits_chunk=chunk).loss(model, dict(batch))
        perplexity, accuracy = Perplexity(), Accuracy()
        perplexity.update(outputs, batch["labels"])
        accuracy.update(outputs, batch["labels"])
        results.append(
            (float(loss.detach()), int(n_tokens), float(perplexity.compute()), float(accuracy.compute()))
        )
    assert results[0] == pytest.approx(results[1], rel=1e-5)
    with pytest.raises(ValueError, match="logits_chunk must be >= 0"):
        CausalLM(logits_chunk=-1)


def test_seq2seq_chunked_loss_with_label_smoothing_equals_its_logits_loss():
    from lightning_llm.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
    from lightning_llm.objectives.seq2seq import Seq2Seq

    torch.manual_seed(0)
    config = EncoderDecoderConfig(vocab_size=71, n_layer=1, n_head=2, n_embd=32, block_size=16, dropout=0.0)
    model = EncoderDecoder(config)
    g = torch.Generator().manual_seed(3)
    batch = {
        "input_ids": torch.randint(0, 71, (3, 12), generator=g),
        "attention_mask": torch.ones(3, 12, dtype=torch.bool),
        "decoder_input_ids": torch.randint(0, 71, (3, 10), generator=g),
        "labels": torch.randint(0, 71, (3, 10), generator=g),
    }
    batch["labels"][2, 6:] = -100
    eager_loss, eager_n, _ = Seq2Seq(None, label_smoothing=0.1, logits_chunk=0).loss(model, batch)
    expected = grads(eager_loss, list(model.parameters()))
    loss, n_tokens, scores = Seq2Seq(None, label_smoothing=0.1, logits_chunk=4).loss(model, batch)
    torch.testing.assert_close(loss, eager_loss, rtol=1e-5, atol=0)
    assert int(n_tokens) == int(eager_n) and scores.nll.shape == batch["labels"].shape
    for (name, _), got, want in zip(
        model.named_parameters(), grads(loss, list(model.parameters())), expected, strict=True
    ):
        assert_relatively_close(got, want, name)
