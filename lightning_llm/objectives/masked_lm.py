"""Masked language modelling: hide some tokens and predict them from both sides (BERT's pretraining loss).

Devlin et al. 2018, section 3.1: pick 15% of the positions; replace 80% of the picked tokens with
``<mask>``, 10% with a random token and leave 10% unchanged (so the model cannot rely on ``<mask>`` marking
every position it is scored on, a token it never sees at fine-tuning time); score only the picked positions.

The objective reads the same packed text windows as causal LM and masks ``input_ids`` itself, afresh for
every batch in training (RoBERTa's dynamic masking), so any text data plugin serves it; in evaluation each
batch is masked by its own ids, the same way every time.
"""

import hashlib

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.models.chunked_head import chunk_tokens
from lightning_llm.objectives.causal_lm import IGNORE_INDEX, check_logits, summed_cross_entropy
from lightning_llm.registry import register
from lightning_llm.tokenizers.base import Tokenizer

__all__ = ["MASK_FRACTION", "RANDOM_FRACTION", "MaskedLM", "MaskedLMWithNSP", "mask_tokens"]

MASK_FRACTION = 0.8  # of the picked tokens: replaced by <mask>
RANDOM_FRACTION = 0.1  # of the picked tokens: replaced by a random token; the remaining 10% stay as they are


def mask_tokens(
    input_ids: torch.Tensor,
    *,
    mask_id: int,
    special_ids: torch.Tensor,
    random_ids: torch.Tensor,
    mask_prob: float = 0.15,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's 80/10/10 masking of ``input_ids`` (B, T) -> (masked_ids, labels), both (B, T).

    Each position whose id is not in ``special_ids`` is picked with probability ``mask_prob``, and every
    row with such a position gets at least one (a row with none would train nothing). Of the picked
    positions 80% become ``mask_id``, 10% a token drawn uniformly from ``random_ids`` and 10% keep their
    token. ``labels`` holds the original id at picked positions and IGNORE_INDEX elsewhere.
    ``special_ids`` and ``random_ids`` are 1-D id tensors on the device of ``input_ids``, and ``generator``
    (on that device too) makes the draw reproducible.
    """
    if input_ids.dim() != 2:
        raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
    maskable = ~torch.isin(input_ids, special_ids)  # (B, T)
    picked = _pick(maskable, mask_prob, generator)  # (B, T) bool
    action = _uniform(input_ids, generator)  # (B, T): which of the three treatments a picked token gets
    to_mask = picked & (action < MASK_FRACTION)
    to_random = picked & (action >= MASK_FRACTION) & (action < MASK_FRACTION + RANDOM_FRACTION)
    draws = torch.randint(
        len(random_ids), input_ids.shape, generator=generator, device=input_ids.device
    )  # (B, T) indices into random_ids
    masked_ids = torch.where(to_mask, mask_id, input_ids)
    masked_ids = torch.where(to_random, random_ids[draws], masked_ids)
    labels = torch.where(picked, input_ids, IGNORE_INDEX)
    return masked_ids, labels


def _pick(maskable: torch.Tensor, mask_prob: float, generator: torch.Generator | None) -> torch.Tensor:
    """Positions picked for prediction: each maskable one with probability ``mask_prob``, at least one per
    row that has any (its maskable position with the lowest draw, so no extra randomness is needed)."""
    draw = _uniform(maskable, generator).masked_fill(~maskable, 2.0)  # (B, T); 2.0 is never picked
    picked = draw < mask_prob
    needs_one = ~picked.any(dim=1) & maskable.any(dim=1)  # (B,)
    lowest = torch.zeros_like(picked).scatter_(1, draw.argmin(dim=1, keepdim=True), True)  # (B, T)
    return picked | (lowest & needs_one[:, None])


def _uniform(like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.rand(like.shape, generator=generator, device=like.device)


@register("objective", "masked_lm")
class MaskedLM:
    """Masked-token prediction with cross-entropy, for bidirectional encoders such as encoder.

    Reads ``input_ids`` (B, T) of packed text windows (the batches of the pydoc/text/jsonl data plugins),
    masks them with BERT's 80/10/10 rule and scores the MLM logits at the picked positions only. The
    masking is drawn anew for every batch from a generator seeded by torch's global RNG, so a run's
    ``seed`` fixes it.

    Args:
        mask_prob: share of the (non-special) tokens picked for prediction; BERT uses 0.15.
        logits_chunk: masked tokens whose logits exist at once (a model that computes its loss itself,
            such as encoder, runs the head on the masked positions only); null: ~256 MB of float32 logits
            per chunk; 0: all masked positions at once.
    """

    default_data = "pydoc"
    default_metrics = ("perplexity", "accuracy")  # of the masked tokens

    def __init__(self, tokenizer: Tokenizer, mask_prob: float = 0.15, logits_chunk: int | None = None):
        if not 0.0 < mask_prob < 1.0:
            raise ValueError(f"objective.mask_prob must be in (0, 1), got {mask_prob}")
        if logits_chunk is not None and logits_chunk < 0:
            raise ValueError(f"objective.logits_chunk must be >= 0 or null (auto), got {logits_chunk}")
        self.logits_chunk = logits_chunk
        self.mask_prob = mask_prob
        self.mask_id = tokenizer.mask_id
        special = _special_ids(tokenizer)
        self._special_ids = torch.tensor(sorted(special))
        # Random replacements come from the ordinary vocabulary: a random <pad> or <cls> would teach nothing.
        self._random_ids = torch.tensor([i for i in range(tokenizer.vocab_size) if i not in special])
        if len(self._random_ids) == 0:
            raise ValueError("the tokenizer has no ordinary tokens to draw random replacements from")
        self._ids_by_device: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}

    def mask(self, input_ids: torch.Tensor, fixed: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """``mask_tokens`` with this objective's tokenizer ids and a freshly seeded generator. ``fixed``
        (evaluation): seeded by the batch's own ids, so a batch is masked alike at every validation, in the
        final evaluation and by the evaluate command; drawn from the run's RNG, each validation scored other
        masks, and the val loss (and the best checkpoint it picks) carried that noise."""
        device = input_ids.device
        if fixed:  # one copy of the batch to the host: an evaluation step, not a training one
            seed = int.from_bytes(hashlib.sha256(input_ids.cpu().numpy().tobytes()).digest()[:8]) >> 2
        else:
            # Seeded from the global CPU RNG: reproducible under the run's seed, and .item() on a CPU tensor
            # never waits for the accelerator.
            seed = int(torch.randint(2**62, (1,)).item())
        generator = torch.Generator(device=device).manual_seed(seed)
        special_ids, random_ids = self._ids_on(device)
        return mask_tokens(
            input_ids,
            mask_id=self.mask_id,
            special_ids=special_ids,
            random_ids=random_ids,
            mask_prob=self.mask_prob,
            generator=generator,
        )

    def _ids_on(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """The special and replacement ids on ``device``, copied there once rather than every batch."""
        if device not in self._ids_by_device:
            self._ids_by_device[device] = (self._special_ids.to(device), self._random_ids.to(device))
        return self._ids_by_device[device]

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (summed loss over the picked positions, their number, MLM logits (B, T, V) or, from a
        model that computes the loss itself, the tokens' TokenScores (B, T)).

        The batch's ``labels`` (the causal shift, meaningless here) are replaced in place by the masking
        labels, so metrics updated with ``(outputs, batch["labels"])`` score the masked-token predictions.
        """
        masked_ids, labels = self.mask(batch["input_ids"], fixed=not model.training)
        batch["labels"] = labels
        if getattr(model, "chunks_its_loss", False):  # the head at the masked positions only
            chunk = chunk_tokens(labels.numel(), model.config.vocab_size, self.logits_chunk)
            return model(
                masked_ids, attention_mask=batch.get("attention_mask"), labels=labels, loss_chunk=chunk
            )
        logits = model(masked_ids, attention_mask=batch.get("attention_mask"))
        check_logits(logits, labels, "masked_lm", "model(input_ids, attention_mask=)")
        loss, n_targets = summed_cross_entropy(logits, labels)
        return loss, n_targets, logits


def _special_ids(tokenizer: Tokenizer) -> set[int]:
    """The ids of every special token (pad, unk, bos, eos, mask, cls, sep): never masked, never drawn."""
    return {
        tokenizer.pad_id,
        tokenizer.unk_id,
        tokenizer.bos_id,
        tokenizer.eos_id,
        tokenizer.mask_id,
        tokenizer.cls_id,
        tokenizer.sep_id,
    }


@register("objective", "masked_lm_nsp")
class MaskedLMWithNSP(MaskedLM):
    """BERT's pretraining: masked LM plus next-sentence prediction from the pooled ``<cls>`` position.

    Reads sentence-pair batches (``data=sentence_pairs``: ``input_ids``, ``attention_mask``,
    ``token_type_ids`` and the next-sentence ``labels``), masks the tokens (never ``<cls>``, ``<sep>`` or
    padding) and sums the two mean losses, as BERT does: the returned sum is the MLM sum plus the NSP sum
    scaled by (masked tokens / pairs), so the framework's division by the masked tokens gives
    ``mean MLM loss + mean NSP loss``. The outputs metrics see are the next-sentence logits (B, 2), so
    ``accuracy`` is the NSP accuracy; ``val/loss`` is the joint loss.

    Args:
        mask_prob: share of the (non-special) tokens picked for prediction; BERT uses 0.15.
    """

    default_data = "sentence_pairs"
    default_metrics = ("accuracy",)  # of the next-sentence predictions

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (MLM sum + scaled NSP sum, masked tokens, next-sentence logits (B, 2))."""
        next_labels = batch["labels"]
        if next_labels.dim() != 1:
            raise ValueError(
                "masked_lm_nsp needs next-sentence labels of shape (batch,); is the data plugin "
                "data=sentence_pairs?"
            )
        masked_ids, labels = self.mask(batch["input_ids"], fixed=not model.training)
        hidden = model.encode(masked_ids, batch.get("attention_mask"), batch.get("token_type_ids"))
        mlm_sum, n_masked = summed_cross_entropy(model.mlm_logits(hidden), labels)
        next_logits = model.classify(hidden)  # (B, 2)
        next_sum = F.cross_entropy(next_logits.float(), next_labels, reduction="sum")
        return mlm_sum + next_sum * n_masked / next_labels.numel(), n_masked, next_logits
