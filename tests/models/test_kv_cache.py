"""Generation with a KV cache computes what generation without one computes: same logits, same tokens."""

import pytest
import torch

from lightning_llm.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.models.sampling import generate

VOCAB = 50
BOS, EOS = 2, 3


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_gpt(positions: str, **overrides) -> GPT:
    params = dict(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, block_size=80, positions=positions)
    return GPT(GPTConfig(**(params | overrides))).eval()


# --------------------------------------------------------------------------- GPT


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_gpt_logits_with_cache_equal_logits_without(positions):
    model = tiny_gpt(positions)
    tokens = torch.randint(0, VOCAB, (3, 30))
    full = model(tokens)
    cache = model.new_kv_cache(30)
    chunks = [(0, 11), *((t, t + 1) for t in range(11, 25)), (25, 30)]  # prompt, single tokens, a chunk
    cached = torch.cat([model(tokens[:, a:b], kv_cache=cache) for a, b in chunks], dim=1)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    assert cache[0].length == 30


@pytest.mark.parametrize("positions", ["learned", "rotary"])
@pytest.mark.parametrize("top_k,top_p", [(None, None), (10, 0.9)])
def test_gpt_samples_the_same_tokens_with_and_without_cache(positions, top_k, top_p):
    model = tiny_gpt(positions)
    prompt = torch.randint(0, VOCAB, (2, 8))

    def run(use_cache: bool) -> torch.Tensor:
        generator = torch.Generator().manual_seed(11)
        return generate(model, prompt, 60, 1.0, top_k, top_p, generator=generator, use_cache=use_cache)

    with_cache, without = run(True), run(False)
    assert with_cache.shape == (2, 68)
    assert torch.equal(with_cache, without)


def test_gpt_forward_with_cache_refuses_to_pass_block_size():
    model = tiny_gpt("learned", block_size=10)
    cache = model.new_kv_cache()
    model(torch.zeros(1, 8, dtype=torch.long), kv_cache=cache)
    with pytest.raises(
        ValueError, match=r"sequence length 11 exceeds model.block_size=10 \(8 cached \+ 3 new\)"
    ):
        model(torch.zeros(1, 3, dtype=torch.long), kv_cache=cache)
    with pytest.raises(ValueError, match="max_len must be in"):
        model.new_kv_cache(11)


def test_gpt_without_cache_is_unchanged():
    model = tiny_gpt("learned")
    tokens = torch.randint(0, VOCAB, (2, 12))
    torch.testing.assert_close(model(tokens), model(tokens, kv_cache=None))


# --------------------------------------------------------------------------- encoder-decoder


def tiny_encoder_decoder(**overrides):
    params = dict(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, block_size=64, dropout=0.0)
    return EncoderDecoder(EncoderDecoderConfig(**(params | overrides))).eval()


@pytest.mark.parametrize(
    "prenorm,positions", [(True, "sinusoidal"), (False, "learned"), (True, "learned"), (False, "sinusoidal")]
)
def test_encoder_decoder_logits_with_cache_equal_logits_without(prenorm, positions):
    model = tiny_encoder_decoder(prenorm=prenorm, positions=positions)
    source = torch.randint(4, VOCAB, (3, 9))
    mask = torch.arange(9)[None] < torch.tensor([[9], [6], [4]])  # padded sources
    target = torch.randint(4, VOCAB, (3, 20))
    memory = model.encode(source, mask)
    full = model.decode(target, memory, mask)
    cache = model.new_cache(20, source_len=9)
    chunks = [(0, 5), *((t, t + 1) for t in range(5, 20))]
    cached = torch.cat([model.decode(target[:, a:b], memory, mask, cache) for a, b in chunks], dim=1)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_encoder_decoder_generates_the_same_with_and_without_cache(num_beams):
    model = tiny_encoder_decoder()
    source = torch.randint(4, VOCAB, (3, 9))
    mask = torch.arange(9)[None] < torch.tensor([[9], [6], [4]])
    # an untrained model rarely says eos: all 60 steps run
    kwargs = dict(max_new_tokens=60, bos_id=BOS, eos_id=EOS, num_beams=num_beams)
    with_cache = model.generate(source, mask, use_cache=True, **kwargs)
    assert with_cache == model.generate(source, mask, use_cache=False, **kwargs)
    assert max(len(ids) for ids in with_cache) >= 50


def test_decoding_step_reorders_its_cache_by_origin():
    """Beam search reshuffles rows at every step; the cached step must follow, as the uncached one does."""
    model = tiny_encoder_decoder()
    memory = model.encode(torch.randint(4, VOCAB, (1, 9))).expand(4, 9, 32)  # 4 beams of one example
    cached, plain = (
        model.decoding_step(memory, None, 12, use_cache=True),
        model.decoding_step(memory, None, 12, False),
    )
    tokens = torch.full((4, 1), BOS)
    origin = None
    g = torch.Generator().manual_seed(0)
    for _ in range(10):
        torch.testing.assert_close(cached(tokens, origin), plain(tokens, None), atol=1e-5, rtol=1e-5)
        origin = torch.randint(0, 4, (4,), generator=g)  # each row continues some earlier row
        tokens = torch.cat([tokens[origin], torch.randint(4, VOCAB, (4, 1), generator=g)], dim=1)


def test_generation_with_one_beam_is_greedy():
    model = tiny_encoder_decoder()
    source = torch.randint(4, VOCAB, (2, 7))
    kwargs = dict(max_new_tokens=30, bos_id=BOS, eos_id=EOS)
    greedy = model.generate(source, None, **kwargs)
    # the same search written out: argmax, one token at a time, without a cache
    tokens = torch.full((2, 1), BOS)
    for _ in range(30):
        next_id = model(source, None, tokens)[:, -1].argmax(-1, keepdim=True)
        tokens = torch.cat([tokens, next_id], dim=1)
    expected = [row[1:][: row[1:].index(EOS)] if EOS in row[1:] else row[1:] for row in tokens.tolist()]
    assert greedy == expected
