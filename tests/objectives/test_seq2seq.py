import math
from types import SimpleNamespace

import pytest
import torch

from lightning_llm import registry
from lightning_llm.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from lightning_llm.objectives.seq2seq import Seq2Seq
from lightning_llm.tokenizers.char import CharTokenizer

VOCAB = 20
PAD, BOS, EOS = 0, 2, 3


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    tok = CharTokenizer()
    tok.train(["abc cba", "hello world"])
    return tok


def padded_batch() -> dict:
    """Two pairs of different lengths, padded the way the seq2seq data module pads them."""
    return {
        "input_ids": torch.tensor([[7, 8, 9, 10], [11, 12, PAD, PAD]]),
        "attention_mask": torch.tensor([[True, True, True, True], [True, True, False, False]]),
        "decoder_input_ids": torch.tensor([[BOS, 10, 9, 8, 7], [BOS, 12, 11, PAD, PAD]]),
        "labels": torch.tensor([[10, 9, 8, 7, EOS], [12, 11, EOS, -100, -100]]),
        "target_text": ["dcba", "fe"],
    }


def tiny_model():
    return EncoderDecoder(
        EncoderDecoderConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=16, block_size=8, dropout=0.0)
    ).eval()


def test_registered_with_its_default_data():
    assert registry.get("objective", "seq2seq").target is Seq2Seq
    assert Seq2Seq.default_data == "reverse_words"


def test_loss_is_summed_cross_entropy_over_real_target_tokens(tokenizer):
    model, batch = tiny_model(), padded_batch()
    loss, n_targets, outputs = Seq2Seq(tokenizer).loss(model, batch)
    assert n_targets.item() == 8 and loss.dtype == torch.float32
    assert outputs.shape == (2, 5, VOCAB)
    # by hand: -log softmax(logits)[label] at every labelled position, each example run on its own
    expected = 0.0
    for i, length in enumerate([4, 2]):
        logits = model(
            batch["input_ids"][i : i + 1, :length], None, batch["decoder_input_ids"][i : i + 1, : length + 1]
        )[0]
        for t, label in enumerate(batch["labels"][i, : length + 1].tolist()):
            expected -= logits[t].log_softmax(-1)[label].item()
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_label_smoothing_mixes_in_the_uniform_cross_entropy(tokenizer):
    model, batch, eps = tiny_model(), padded_batch(), 0.1
    loss, _, logits = Seq2Seq(tokenizer, label_smoothing=eps).loss(model, batch)
    log_probs = logits.log_softmax(-1)
    counted = batch["labels"] != -100
    nll = -log_probs.gather(-1, batch["labels"].clamp(min=0)[..., None])[..., 0][counted].sum()
    uniform = -log_probs.mean(-1)[counted].sum()
    assert loss.item() == pytest.approx(((1 - eps) * nll + eps * uniform).item(), rel=1e-5)


def test_loss_gradients_flow_to_the_model(tokenizer):
    model = tiny_model().train()
    loss, n, _ = Seq2Seq(tokenizer).loss(model, padded_batch())
    (loss / n).backward()
    assert model.wte.weight.grad is not None and model.wte.weight.grad.abs().sum() > 0
    assert math.isfinite(loss.item())


class FixedGenerator:
    """A stand-in model that records how it was asked to generate and answers with fixed ids."""

    config = SimpleNamespace(block_size=16)

    def __init__(self, answers: list[list[int]]):
        self.answers, self.calls = answers, []

    def generate(self, input_ids, attention_mask, max_new_tokens, bos_id, eos_id, num_beams=1, **_):
        self.calls.append(
            dict(max_new_tokens=max_new_tokens, bos_id=bos_id, eos_id=eos_id, num_beams=num_beams)
        )
        return self.answers


def test_predict_text_decodes_generations_and_returns_references(tokenizer):
    model = FixedGenerator([tokenizer.encode("cba"), tokenizer.encode("world")])
    objective = Seq2Seq(tokenizer, num_beams=4, max_new_tokens=64)
    predictions, references = objective.predict_text(model, padded_batch())
    assert predictions == ["cba", "world"] and references == ["dcba", "fe"]
    # max_new_tokens is capped at the model's block_size; special ids come from the tokenizer
    assert model.calls == [
        dict(max_new_tokens=16, bos_id=tokenizer.bos_id, eos_id=tokenizer.eos_id, num_beams=4)
    ]


def test_predict_text_with_a_real_model(tokenizer):
    model = tiny_model()
    predictions, references = Seq2Seq(tokenizer, max_new_tokens=5).predict_text(model, padded_batch())
    assert len(predictions) == 2 and all(isinstance(p, str) for p in predictions)
    assert references == ["dcba", "fe"]


@pytest.mark.parametrize(
    "params,message",
    [
        (dict(label_smoothing=1.0), "label_smoothing must be in"),
        (dict(num_beams=0), "num_beams must be >= 1"),
        (dict(max_new_tokens=0), "max_new_tokens must be >= 1"),
    ],
)
def test_bad_parameters_are_refused(tokenizer, params, message):
    with pytest.raises(ValueError, match=message):
        Seq2Seq(tokenizer, **params)


def test_data_whose_batches_lack_what_the_objective_reads_is_named_not_a_key_error(tokenizer):
    """``model=decoder data=pydoc``: causal-LM windows (input_ids, labels) for seq2seq, which reads the
    source's attention mask; one line naming the objective, the key and the data it was made for."""
    from lightning_llm.errors import ConfigError
    from lightning_llm.module import LanguageModule

    model = registry.build(
        "model", "decoder", vocab_size=40, n_layer=1, n_decoder_layer=1, n_head=2, n_embd=16
    )
    module = LanguageModule(model, Seq2Seq(tokenizer), optim={"name": "adamw"},
                            scheduler={"name": "constant"})  # fmt: skip
    ids = torch.randint(0, 40, (2, 8))
    with pytest.raises(
        ConfigError, match=r"objective=seq2seq reads the batches' '\w+', which this data does"
    ):
        module._objective_loss({"input_ids": ids, "labels": ids})


def test_a_text_metric_for_an_objective_that_makes_no_text_is_refused():
    """``metrics=[bleu]`` with a GPT: BLEU would never be computed, and nothing said so."""
    from lightning_llm.errors import ConfigError
    from lightning_llm.module import LanguageModule
    from lightning_llm.objectives.causal_lm import CausalLM

    model = registry.build("model", "gpt", vocab_size=40, n_layer=1, n_head=2, n_embd=16, block_size=16)
    bleu = registry.build("metric", "bleu")
    with pytest.raises(ConfigError, match=r"metrics: bleu scores generated text, which this objective does"):
        LanguageModule(model, CausalLM(), optim={"name": "adamw"}, scheduler={"name": "constant"},
                       metrics={"bleu": bleu})  # fmt: skip
