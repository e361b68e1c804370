"""Callbacks every run gets: throughput, the run summary, and text samples at the end."""

from lightning_llm.callbacks.run_summary import RunSummary
from lightning_llm.callbacks.text_samples import TextSamples
from lightning_llm.callbacks.throughput import Throughput

__all__ = ["RunSummary", "TextSamples", "Throughput"]
