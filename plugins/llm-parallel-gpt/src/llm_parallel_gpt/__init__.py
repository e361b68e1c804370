"""Parallel-block GPT (GPT-J, PaLM) for lightning_llm. Importing this package registers the ``model`` plugin
``parallel_gpt``; ``python -m lightning_llm model=parallel_gpt`` then selects it."""

import lightning_llm

# The lightning_llm API used here (register, the model contract, models.gpt and models.blocks) is that of
# 0.1.x. On another version this import fails, and lightning_llm reports the package by name and skips it.
if not lightning_llm.__version__.startswith("0.1."):
    raise ImportError(f"llm-parallel-gpt supports lightning_llm 0.1.x, found {lightning_llm.__version__}")

from llm_parallel_gpt.model import ParallelBlock, ParallelGPT, ParallelGPTConfig  # noqa: E402 - after the check

__all__ = ["ParallelBlock", "ParallelGPT", "ParallelGPTConfig"]
__version__ = "0.1.0"
