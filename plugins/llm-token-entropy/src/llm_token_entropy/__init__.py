"""Predictive entropy for lightning_llm. Importing this package registers the ``metric`` plugin
``token_entropy``; ``python -m lightning_llm 'metrics=[perplexity,token_entropy]'`` then selects it."""

import lightning_llm

# The lightning_llm API used here (register, the metric contract) is that of 0.1.x. On another version this
# import fails, and lightning_llm reports the package by name and skips it instead of misbehaving later.
if not lightning_llm.__version__.startswith("0.1."):
    raise ImportError(f"llm-token-entropy supports lightning_llm 0.1.x, found {lightning_llm.__version__}")

from llm_token_entropy.metric import TokenEntropy, summed_entropy  # noqa: E402 - after the version check

__all__ = ["TokenEntropy", "summed_entropy"]
__version__ = "0.1.0"
