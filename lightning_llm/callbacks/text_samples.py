"""A few samples from the trained model, written to ``samples.txt`` when training ends."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_llm.models.sampling import generate


class TextSamples(L.Callback):
    def __init__(
        self,
        tokenizer: Any,
        path: Path,
        num_samples: int = 3,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = 50,
        prompt: str = "",
        seed: int = 0,
    ) -> None:
        self.tokenizer, self.path = tokenizer, Path(path)
        self.num_samples, self.max_new_tokens = num_samples, max_new_tokens
        self.temperature, self.top_k, self.prompt, self.seed = temperature, top_k, prompt, seed

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not trainer.is_global_zero or self.num_samples <= 0:
            return
        model = pl_module.model
        prompt = self.tokenizer.encode(self.prompt) if self.prompt else [self.tokenizer.eos_id]
        start = torch.tensor([prompt] * self.num_samples, device=pl_module.device)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        was_training = model.training
        model.eval()
        out = generate(model, start, self.max_new_tokens, self.temperature, self.top_k, generator=generator)
        model.train(was_training)
        texts = [self.tokenizer.decode(row.tolist()) for row in out]
        separator = "\n" + "-" * 72 + "\n"
        self.path.write_text(separator.join(texts) + "\n", encoding="utf-8")
