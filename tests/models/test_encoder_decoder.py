import math

import pytest
import torch
import torch.nn.functional as F

from lightning_llm import registry
from lightning_llm.models.blocks import Block, DecoderBlock
from lightning_llm.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig

VOCAB = 15  # deliberately not a multiple of 64
PAD, BOS, EOS = 0, 2, 3  # the trained tokenizers' special ids


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny(**overrides) -> EncoderDecoder:
    params = dict(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, block_size=8, dropout=0.0)
    return EncoderDecoder(EncoderDecoderConfig(**(params | overrides)))


def reverse_task(n: int = 16, max_len: int = 5) -> dict:
    """Sources of 3..max_len tokens (ids 7..14, right-padded) and their reversals as targets, batched
    the way the seq2seq data module does it."""
    g = torch.Generator().manual_seed(0)
    lengths = torch.randint(3, max_len + 1, (n,), generator=g)
    attention_mask = torch.arange(max_len)[None] < lengths[:, None]  # (n, S)
    input_ids = torch.randint(7, VOCAB, (n, max_len), generator=g).masked_fill(~attention_mask, PAD)
    targets = [row[:length].flip(0).tolist() for row, length in zip(input_ids, lengths, strict=True)]
    decoder_input_ids = torch.full((n, max_len + 1), PAD)
    labels = torch.full((n, max_len + 1), -100)
    for i, target in enumerate(targets):
        decoder_input_ids[i, : len(target) + 1] = torch.tensor([BOS, *target])
        labels[i, : len(target) + 1] = torch.tensor([*target, EOS])
    return dict(
        input_ids=input_ids,
        attention_mask=attention_mask,
        decoder_input_ids=decoder_input_ids,
        labels=labels,
        targets=targets,
    )


def fit(model: EncoderDecoder, batch: dict, steps: int, lr: float = 3e-3) -> list[float]:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        logits = model(batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"])
        loss = F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses


# --------------------------------------------------------------------------- plugin and structure


def test_registered_with_objectives_and_its_config():
    plugin = registry.get("model", "decoder")
    # the framework reads objectives from the annotation before building anything
    assert plugin.product() is EncoderDecoder and plugin.config_class() is EncoderDecoderConfig
    assert EncoderDecoder.objectives == ("seq2seq",) and EncoderDecoder.default_objective == "seq2seq"
    model = registry.build("model", "decoder", vocab_size=VOCAB, n_layer=2, n_decoder_layer=3, n_embd=32)
    assert isinstance(model, EncoderDecoder)


def test_blocks_are_encoder_then_decoder_layers():
    model = tiny(n_layer=2, n_decoder_layer=3)
    assert len(model.blocks) == 5
    assert all(type(b) is Block and not b.attn.causal for b in model.encoder_blocks)
    assert all(isinstance(b, DecoderBlock) for b in model.decoder_blocks)
    assert len(tiny(n_layer=2).decoder_blocks) == 2  # n_decoder_layer defaults to n_layer
    # one copy of each block in the checkpoint, under blocks.<i>
    assert any(key.startswith("blocks.4.cross_attn") for key in model.state_dict())
    assert not any(key.startswith(("encoder", "decoder")) for key in model.state_dict())


def test_forward_shapes_padded_vocab_and_tied_head():
    model = tiny()
    assert model.wte.weight.shape == (64, 32)
    assert model.lm_head.weight is model.wte.weight
    logits = model(torch.randint(0, VOCAB, (3, 7)), None, torch.randint(0, VOCAB, (3, 5)))
    assert logits.shape == (3, 5, VOCAB)


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(n_embd=30, n_head=4), "not divisible"),
        (dict(positions="rotary"), "positions='rotary' is not valid"),
        (dict(n_decoder_layer=0), "n_decoder_layer must be >= 1"),
        (dict(dropout=1.0), "dropout must be in"),
        (dict(n_embd=9, n_head=3), "even model.n_embd"),
        (dict(positions_layout="sin-cos"), "positions_layout='sin-cos' is not valid"),
        (dict(attn_dropout=1.5), "attn_dropout must be in"),
        (dict(decoder_start_id=-1), "decoder_start_id must be a token id"),
        (
            dict(decoder_start_id=10**6),
            r"decoder_start_id must be a token id, 0 to \d+ \(the tokenizer's vocab",
        ),
    ],
)
def test_config_errors_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        tiny(**overrides)


def test_sequences_longer_than_block_size_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match="source length 9 exceeds model.block_size=8"):
        model.encode(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"max_new_tokens must be in \[1, model.block_size=8\]"):
        model.generate(torch.zeros(1, 3, dtype=torch.long), None, 9, BOS, EOS)


# --------------------------------------------------------------------------- initialisation


def test_embedding_scale_follows_the_positions():
    sinusoidal, learned = tiny(n_embd=256, n_head=4), tiny(n_embd=256, n_head=4, positions="learned")
    assert sinusoidal.config.embed_scale == 16.0 and learned.config.embed_scale == 1.0
    # scaled by sqrt(d_model), initialised at d_model^-0.5: unit scale, like the sinusoids (the paper)
    assert sinusoidal.wte.weight.std().item() == pytest.approx(256**-0.5, rel=0.05)
    assert learned.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)


def test_decoder_residual_projections_are_scaled_for_three_sublayers():
    model = tiny(n_embd=256, n_layer=4)
    encoder_block, decoder_block = model.encoder_blocks[0], model.decoder_blocks[0]
    assert encoder_block.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert decoder_block.mlp.c_proj.weight.std().item() == pytest.approx(0.02 / math.sqrt(12), rel=0.05)


@pytest.mark.parametrize("positions", ["sinusoidal", "learned"])
def test_init_weights_after_meta_materialisation_matches_eager_build(positions):
    config = EncoderDecoderConfig(vocab_size=VOCAB, n_layer=1, n_embd=32, block_size=8, positions=positions)
    eager = EncoderDecoder(config)
    torch.manual_seed(3)
    eager.init_weights()  # init_weights alone decides every value: nothing from the constructor survives
    with torch.device("meta"):
        model = EncoderDecoder(config)
    model.to_empty(device="cpu")
    torch.manual_seed(3)
    model.init_weights()
    assert model.lm_head.weight is model.wte.weight  # re-tied after to_empty()
    for (name, a), b in zip(eager.state_dict().items(), model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, msg=name)
    torch.testing.assert_close(model.wpe(torch.arange(8)), eager.wpe(torch.arange(8)))


def test_flops_per_token_counts_parameters_and_attention():
    model = tiny(n_layer=2, n_decoder_layer=3)
    attention = 12 * (2 + 2 * 3) * 32 * 8
    assert model.flops_per_token(8) == 6 * model.num_params() + attention
    learned = tiny(positions="learned")
    assert learned.num_params() == learned.num_params(non_embedding=False) - 8 * 32


# --------------------------------------------------------------------------- behaviour


def test_source_padding_does_not_change_the_output():
    model = tiny().eval()
    source, target = torch.randint(4, VOCAB, (1, 4)), torch.randint(4, VOCAB, (1, 5))
    padded = torch.cat([source, torch.zeros(1, 3, dtype=torch.long)], dim=1)
    mask = torch.tensor([[True] * 4 + [False] * 3])
    torch.testing.assert_close(model(padded, mask, target), model(source, None, target), atol=1e-5, rtol=1e-5)


def test_decoder_does_not_see_future_target_tokens():
    model = tiny().eval()
    source, target = torch.randint(4, VOCAB, (2, 6)), torch.randint(4, VOCAB, (2, 7))
    changed = target.clone()
    changed[:, 4] = (changed[:, 4] + 1) % VOCAB
    before, after = model(source, None, target), model(source, None, changed)
    torch.testing.assert_close(before[:, :4], after[:, :4])
    assert not torch.allclose(before[:, 4:], after[:, 4:])


@pytest.mark.parametrize("prenorm,positions", [(True, "sinusoidal"), (False, "learned")])
def test_overfits_the_reverse_task_and_greedy_decoding_reproduces_it(prenorm, positions):
    batch = reverse_task()
    model = tiny(prenorm=prenorm, positions=positions)
    losses = fit(model, batch, steps=200)
    assert losses[-1] < 0.05, losses[-1]
    model.eval()
    source, mask = batch["input_ids"], batch["attention_mask"]
    assert model.generate(source, mask, 7, BOS, EOS) == batch["targets"]
    assert model.generate(source, mask, 7, BOS, EOS, use_cache=False) == batch["targets"]
    assert model.generate(source, mask, 7, BOS, EOS, num_beams=3) == batch["targets"]


def test_generation_stops_at_max_new_tokens_without_bos_or_eos():
    model = tiny().eval()
    out = model.generate(torch.randint(4, VOCAB, (3, 5)), None, 4, BOS, EOS)
    assert len(out) == 3 and all(len(ids) <= 4 and EOS not in ids for ids in out)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_forced_eos_ends_a_search_cut_off_by_max_new_tokens_one_token_early(num_beams):
    """Marian's forced_eos_token_id: the last allowed token is eos, so a cut-off output holds one token
    fewer, and otherwise the same tokens (greedy: the same prefix)."""
    source = torch.randint(4, VOCAB, (3, 5))
    free = tiny().eval()
    forced = tiny(forced_eos=True).eval()
    forced.load_state_dict(free.state_dict())
    cut = [ids for ids in free.generate(source, None, 4, BOS, EOS, num_beams=num_beams) if len(ids) == 4]
    assert cut, "the untrained model should run into max_new_tokens"
    out = forced.generate(source, None, 4, BOS, EOS, num_beams=num_beams)
    assert all(len(ids) <= 3 for ids in out)
    if num_beams == 1:
        assert out == [ids[:3] for ids in free.generate(source, None, 4, BOS, EOS)]


def test_a_decoder_start_token_replaces_the_datas_bos():
    """Marian starts its decoder from pad: with decoder_start_id set, the bos the data writes first is read
    as that token, in teacher forcing and in generation alike."""
    model = tiny(decoder_start_id=PAD).eval()
    source, target = torch.randint(7, VOCAB, (2, 5)), torch.randint(7, VOCAB, (2, 4))
    with torch.no_grad():
        with_bos = model(source, None, torch.cat([torch.full((2, 1), BOS), target], dim=1))
        with_pad = model(source, None, torch.cat([torch.full((2, 1), PAD), target], dim=1))
        torch.testing.assert_close(with_bos, with_pad)
        assert model.generate(source, None, 4, BOS, EOS) == model.generate(source, None, 4, PAD, EOS)
        plain = tiny().eval()
        plain.load_state_dict(model.state_dict())
        assert model.generate(source, None, 4, BOS, EOS) == plain.generate(source, None, 4, PAD, EOS)


def test_attention_dropout_is_its_own_setting():
    """The paper drops sub-layer outputs, not attention weights: attn_dropout=0 keeps those exact."""
    model = tiny(dropout=0.1, attn_dropout=0.0)
    attentions = [m for m in model.modules() if m.__class__.__name__ == "Attention"]
    assert len(attentions) == 2 + 2 * 2 and all(a.dropout == 0.0 for a in attentions)
    assert all(a.resid_dropout.p == 0.1 for a in attentions)
    assert all(a.dropout == 0.1 for a in tiny(dropout=0.1).modules() if a.__class__.__name__ == "Attention")
