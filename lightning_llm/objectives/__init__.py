"""Training objectives: how a batch becomes a loss. Importing this package registers them."""

from lightning_llm.objectives.causal_lm import IGNORE_INDEX, CausalLM
from lightning_llm.objectives.classification import Classification
from lightning_llm.objectives.masked_lm import MaskedLM
from lightning_llm.objectives.seq2seq import Seq2Seq
from lightning_llm.objectives.span_qa import SpanQA

__all__ = ["IGNORE_INDEX", "CausalLM", "Classification", "MaskedLM", "Seq2Seq", "SpanQA"]
