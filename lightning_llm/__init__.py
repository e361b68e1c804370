"""lightning_llm: train Transformer language models with Lightning + Hydra, where every part is a plugin."""

from lightning_llm.registry import CONTRACTS, KINDS, PluginError, build, get, names, register

__all__ = ["CONTRACTS", "KINDS", "PluginError", "build", "get", "names", "register"]
__version__ = "0.1.0"
