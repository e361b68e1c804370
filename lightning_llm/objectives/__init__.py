"""Training objectives: how a batch becomes a loss. Importing this package registers them."""

from lightning_llm.objectives.causal_lm import IGNORE_INDEX, CausalLM

__all__ = ["IGNORE_INDEX", "CausalLM"]
