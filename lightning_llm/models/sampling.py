"""Decoding: sampling from decoder-only models, and greedy and beam search for any autoregressive model.

- ``generate`` extends a prompt with a decoder-only model such as GPT. With a KV cache it runs the prompt
  once (the "prefill") and then one position per new token; without one it re-runs the whole (cropped)
  sequence for every token. Both give the same tokens.
- ``sample`` picks one next token per row from logits: greedy at temperature 0, else from the softmax at
  that temperature, optionally restricted to the top-k tokens or the top-p (nucleus) mass.
- ``greedy_search`` and ``beam_search`` decode whole sequences through a ``Step`` function, so one
  implementation serves every model: the encoder-decoder's ``generate`` wraps its decoder (and caches)
  in a step, and tests wrap a hand-written distribution.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Hypotheses", "Step", "beam_search", "generate", "greedy_search", "left_pad", "sample"]

# step(tokens, origin) -> log-probabilities (N, V) of the token after each row of tokens (N, t).
# ``origin`` is None when the rows are the same sequences as at the previous call, one token longer; in beam
# search it is (N,): row i extends the previous call's row origin[i], so per-row state (a KV cache) must be
# reordered with it before use.
Step = Callable[[torch.Tensor, torch.Tensor | None], torch.Tensor]


# --------------------------------------------------------------------------- sampling (decoder-only)


@torch.no_grad()
def generate(
    model: nn.Module,
    input_ids: torch.Tensor,
    max_new_tokens: int,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
    eos_id: int | None = None,
    on_token: Callable[[torch.Tensor], None] | None = None,
    attention_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Append up to ``max_new_tokens`` sampled tokens to ``input_ids`` (B, T) and return (B, T + new).

    With ``eos_id``, a row that has produced it is filled with eos from then on, and generation stops
    early once every row has. ``on_token`` is called with each step's new tokens (B, 1) as soon as they
    are sampled, to stream them. The cache is used when the model has one (``new_kv_cache``) and the
    whole sequence fits in its block_size.

    Prompts of different lengths are generated as one batch when left-padded (``left_pad``) with their
    ``attention_mask`` (B, T), False at the padding: every row then gives the tokens it gives alone (tested),
    and a step costs one forward for all of them. This needs the cache.
    """
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    if input_ids.dim() != 2 or input_ids.size(1) == 0:
        raise ValueError(f"input_ids must have shape (batch, seq_len >= 1), got {tuple(input_ids.shape)}")
    if max_new_tokens == 0:
        return input_ids
    total = input_ids.size(1) + max_new_tokens - 1  # positions the model sees: the last token is not fed back
    # A plugin model may have no config.block_size (an optional extra): then it sees every token, uncached.
    block_size = getattr(getattr(model, "config", None), "block_size", None)
    cached = use_cache and hasattr(model, "new_kv_cache") and block_size is not None and total <= block_size
    if attention_mask is not None:
        _check_left_padding(attention_mask, input_ids, cached)
    if cached:
        next_logits = _cached_logits(model, input_ids, total, attention_mask)
    else:
        # Past block_size a cache cannot help: with learned positions every token's position changes as the
        # window slides, so the window's keys and values must be recomputed anyway.
        next_logits = _recomputed_logits(model, block_size or total)
    return _sample_loop(
        input_ids, next_logits, max_new_tokens, temperature, top_k, top_p, generator, eos_id, on_token
    )


def _cached_logits(
    model: nn.Module, input_ids: torch.Tensor, max_len: int, attention_mask: torch.Tensor | None = None
) -> Callable[[torch.Tensor], torch.Tensor]:
    """next_logits(tokens) for the cached path: the prompt once, then only each newest token."""
    cache = model.new_kv_cache(max_len)
    mask = [attention_mask]  # grows by one real column per generated token (left padding only)

    def next_logits(tokens: torch.Tensor) -> torch.Tensor:
        new = tokens if cache[0].length == 0 else tokens[:, -1:]  # (B, T) prefill, then (B, 1)
        if mask[0] is None:
            return model(new, kv_cache=cache)[:, -1, :]  # (B, V)
        if mask[0].size(1) < tokens.size(1):
            mask[0] = torch.cat([mask[0], mask[0].new_ones(tokens.size(0), 1)], dim=1)
        return model(new, kv_cache=cache, attention_mask=mask[0])[:, -1, :]

    return next_logits


def left_pad(
    prompts: list[list[int]], pad_id: int, device: torch.device | str = "cpu"
) -> tuple[torch.Tensor, torch.Tensor]:
    """Token lists of any lengths as one left-padded batch: (input_ids (B, T), attention_mask (B, T)),
    the mask False at the padding. Left, so every row's next token is in the same, last, column."""
    if not prompts or any(len(p) == 0 for p in prompts):
        raise ValueError("left_pad needs at least one prompt, each of at least one token")
    width = max(len(p) for p in prompts)
    ids = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(prompts), width), dtype=torch.bool)
    for row, prompt in enumerate(prompts):
        ids[row, width - len(prompt) :] = torch.tensor(prompt)
        mask[row, width - len(prompt) :] = True
    return ids.to(device), mask.to(device)


def _check_left_padding(attention_mask: torch.Tensor, input_ids: torch.Tensor, cached: bool) -> None:
    if attention_mask.shape != input_ids.shape:
        raise ValueError(
            f"attention_mask must have the shape of input_ids {tuple(input_ids.shape)}, "
            f"got {tuple(attention_mask.shape)}"
        )
    mask = attention_mask.bool()
    if not bool(mask[:, -1].all()) or bool((mask[:, 1:] < mask[:, :-1]).any()):
        raise ValueError("attention_mask must be left padding: False only before each row's first token")
    if not cached:
        raise ValueError(
            "left-padded prompts need the KV cache: use_cache=True, and prompt + new tokens within the "
            "model's block_size"
        )


def _recomputed_logits(model: nn.Module, block_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """next_logits(tokens) without a cache: the last block_size tokens, recomputed at every step."""

    def next_logits(tokens: torch.Tensor) -> torch.Tensor:
        return model(tokens[:, -block_size:])[:, -1, :]  # (B, V)

    return next_logits


def _sample_loop(
    input_ids: torch.Tensor,
    next_logits: Callable[[torch.Tensor], torch.Tensor],
    max_new_tokens: int,
    temperature: float,
    top_k: int | None,
    top_p: float | None,
    generator: torch.Generator | None,
    eos_id: int | None,
    on_token: Callable[[torch.Tensor], None] | None = None,
) -> torch.Tensor:
    tokens = input_ids
    finished = torch.zeros(tokens.size(0), dtype=torch.bool, device=tokens.device)
    for _ in range(max_new_tokens):
        next_id = sample(next_logits(tokens), temperature, top_k, top_p, generator)  # (B, 1)
        if eos_id is not None:
            next_id = next_id.masked_fill(finished[:, None], eos_id)  # finished rows stay at eos
            finished |= next_id[:, 0] == eos_id
        tokens = torch.cat([tokens, next_id], dim=1)
        if on_token is not None:
            on_token(next_id)
        if eos_id is not None and bool(finished.all()):  # one host sync per token, only when asked to stop
            break
    return tokens


def sample(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """One token id per row of ``logits`` (B, V) -> (B, 1). Temperature 0 is greedy (argmax)."""
    if temperature <= 0:
        return logits.argmax(dim=-1, keepdim=True)
    logits = logits.float()
    # Shifted so the largest is 0 first (softmax, top-k and top-p do not change): dividing by a tiny
    # temperature then gives -inf for the others, not an overflow to inf and a NaN softmax.
    logits = (logits - logits.amax(dim=-1, keepdim=True)) / temperature
    if top_k is not None and top_k < logits.size(-1):
        kth = torch.topk(logits, top_k).values[:, -1:]  # (B, 1): the k-th largest logit
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        logits = _nucleus(logits, top_p)
    probs = logits.softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator)


def _nucleus(logits: torch.Tensor, top_p: float) -> torch.Tensor:
    """Keep the smallest set of most likely tokens whose probability reaches top_p (Holtzman et al. 2020)."""
    sorted_logits, order = torch.sort(logits, descending=True)  # (B, V) each
    probs = sorted_logits.softmax(dim=-1)
    mass_before = probs.cumsum(dim=-1) - probs  # probability of the tokens ranked above each one
    sorted_logits = sorted_logits.masked_fill(mass_before > top_p, float("-inf"))  # the top one always stays
    return logits.scatter(-1, order, sorted_logits)


# --------------------------------------------------------------------------- search (any model)


@torch.no_grad()
def greedy_search(
    step: Step, batch_size: int, bos_id: int, eos_id: int, max_new_tokens: int, device: torch.device
) -> list[list[int]]:
    """The most likely next token at every step, until eos or ``max_new_tokens``; one list of generated
    ids per row, without bos and eos."""
    _check_search_args(batch_size, 1, max_new_tokens)
    tokens = torch.full((batch_size, 1), bos_id, dtype=torch.long, device=device)  # (B, 1)
    finished = torch.zeros(batch_size, dtype=torch.bool, device=device)
    for _ in range(max_new_tokens):
        next_id = step(tokens, None).argmax(dim=-1)  # (B,)
        next_id = next_id.masked_fill(finished, eos_id)
        tokens = torch.cat([tokens, next_id[:, None]], dim=1)  # (B, t + 1)
        finished |= next_id == eos_id
        if bool(finished.all()):
            break
    return [_strip(row, eos_id) for row in tokens[:, 1:].tolist()]


@torch.no_grad()
def beam_search(
    step: Step,
    batch_size: int,
    num_beams: int,
    bos_id: int,
    eos_id: int,
    max_new_tokens: int,
    device: torch.device,
    length_penalty: float = 1.0,
) -> list[list[int]]:
    """Beam search: keep the ``num_beams`` (K) best partial sequences per example; rows
    b * K ... b * K + K - 1 of the step's batch are the beams of example b.

    At every step each beam proposes its continuations. Of the 2K best candidates, those that end in eos
    and rank within the top K become finished hypotheses (fairseq's rule), scored by log-probability /
    length ** ``length_penalty`` (length counts the eos; 0 compares raw log-probabilities, 1 per-token
    averages); the best K that do not end in eos continue. An example is done when it holds K finished
    hypotheses and its best live beam, were it to end now, would not beat the worst of them (Hugging
    Face's default criterion; exact for length_penalty 0, since scores only fall). At ``max_new_tokens``
    the live beams are finished as they are. Returns the best hypothesis per example without bos and eos.
    With one beam this is greedy search.
    """
    _check_search_args(batch_size, num_beams, max_new_tokens)
    B, K = batch_size, num_beams
    tokens = torch.full((B * K, 1), bos_id, dtype=torch.long, device=device)  # (B*K, 1)
    # Every beam starts as the same bos; only the first is live, so step 1 does not propose K copies.
    scores = torch.full((B, K), float("-inf"), device=device)
    scores[:, 0] = 0.0  # (B, K): summed log-probability of each beam
    finished = [Hypotheses(K, length_penalty) for _ in range(B)]
    origin: torch.Tensor | None = None
    for t in range(1, max_new_tokens + 1):
        log_probs = step(tokens, origin).float()  # (B*K, V)
        V = log_probs.size(-1)
        candidates = scores[:, :, None] + log_probs.view(B, K, V)  # (B, K, V)
        top_scores, top_index = candidates.view(B, K * V).topk(min(2 * K, K * V), dim=1)  # (B, 2K)
        beam, token = top_index // V, top_index % V  # (B, 2K) each: which beam, which next token
        _finish_eos_candidates(finished, tokens, top_scores, beam, token, eos_id, t)
        keep = _best_non_eos(token, eos_id, K)  # (B, K) columns of the 2K candidates, best first
        scores = top_scores.gather(1, keep)
        if _update_done(finished, scores[:, 0].tolist(), t):
            break
        origin = (torch.arange(B, device=device)[:, None] * K + beam.gather(1, keep)).flatten()  # (B*K,)
        tokens = torch.cat([tokens[origin], token.gather(1, keep).flatten()[:, None]], dim=1)  # (B*K, t + 1)
    else:
        _finish_live_beams(finished, tokens, scores, max_new_tokens)
    return [hypotheses.best() for hypotheses in finished]


class Hypotheses:
    """One example's finished hypotheses in beam search: the best ``num_beams`` seen so far."""

    def __init__(self, num_beams: int, length_penalty: float):
        self.num_beams, self.length_penalty = num_beams, length_penalty
        self.scored: list[tuple[float, list[int]]] = []  # (normalised score, ids without bos and eos)
        self.done = False

    def normalise(self, log_prob: float, length: int) -> float:
        return log_prob / length**self.length_penalty

    def add(self, log_prob: float, length: int, ids: list[int]) -> None:
        self.scored.append((self.normalise(log_prob, length), ids))
        if len(self.scored) > self.num_beams:
            self.scored.remove(min(self.scored, key=lambda item: item[0]))

    def cannot_improve(self, best_live_log_prob: float, length: int) -> bool:
        """Full, and the best live beam ending now would score no better than the worst kept."""
        if len(self.scored) < self.num_beams:
            return False
        return min(score for score, _ in self.scored) >= self.normalise(best_live_log_prob, length)

    def best(self) -> list[int]:
        return max(self.scored, key=lambda item: item[0])[1] if self.scored else []


def _finish_eos_candidates(
    finished: list[Hypotheses],
    tokens: torch.Tensor,
    top_scores: torch.Tensor,
    beam: torch.Tensor,
    token: torch.Tensor,
    eos_id: int,
    length: int,
) -> None:
    """Record the candidates among each example's top K that end in eos (done examples take no more)."""
    K = tokens.size(0) // len(finished)
    ends = (token[:, :K] == eos_id) & torch.isfinite(top_scores[:, :K])  # (B, K)
    for b, j in ends.nonzero().tolist():  # a few per step: a Python loop is fine
        if not finished[b].done:
            ids = tokens[b * K + beam[b, j]].tolist()[1:]  # without bos
            finished[b].add(top_scores[b, j].item(), length, ids)


def _best_non_eos(token: torch.Tensor, eos_id: int, K: int) -> torch.Tensor:
    """Indices of the K best candidates per row that do not end in eos. Each beam yields at most one eos
    candidate, so at least K of the 2K are not eos; a stable sort keeps them in score order."""
    is_eos = (token == eos_id).to(torch.int8)  # (B, 2K)
    return is_eos.sort(dim=1, stable=True).indices[:, :K]  # (B, K)


def _update_done(finished: list[Hypotheses], best_live: list[float], length: int) -> bool:
    """Mark the examples that are done; True when all are."""
    for hypotheses, log_prob in zip(finished, best_live, strict=True):
        hypotheses.done = hypotheses.done or hypotheses.cannot_improve(log_prob, length)
    return all(hypotheses.done for hypotheses in finished)


def _finish_live_beams(
    finished: list[Hypotheses], tokens: torch.Tensor, scores: torch.Tensor, length: int
) -> None:
    """At max_new_tokens, the live beams of examples not yet done become hypotheses as they stand."""
    K = scores.size(1)
    for b, row_scores in enumerate(scores.tolist()):
        for k, log_prob in enumerate(row_scores):
            if not finished[b].done and log_prob > float("-inf"):
                finished[b].add(log_prob, length, tokens[b * K + k].tolist()[1:])


def _check_search_args(batch_size: int, num_beams: int, max_new_tokens: int) -> None:
    for key, value in (
        ("batch_size", batch_size),
        ("num_beams", num_beams),
        ("max_new_tokens", max_new_tokens),
    ):
        if value < 1:
            raise ValueError(f"{key} must be >= 1, got {value}")


def _strip(ids: list[int], eos_id: int) -> list[int]:
    """The ids before the first eos."""
    return ids[: ids.index(eos_id)] if eos_id in ids else ids
