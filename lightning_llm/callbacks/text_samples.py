"""What the trained model writes, in ``samples.txt`` when training ends.

A language model (``mode="generate"``) samples continuations of a prompt; a sequence-to-sequence model
(``mode="predict"``) decodes the first validation examples, shown beside their references.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import lightning as L
import torch

from lightning_llm.distributed.parallelize import gathered, is_sharded
from lightning_llm.models.sampling import generate

SEPARATOR = "\n" + "-" * 72 + "\n"


class TextSamples(L.Callback):
    def __init__(
        self,
        tokenizer: Any,
        path: Path,
        mode: Literal["generate", "predict"] = "generate",
        num_samples: int = 3,
        max_new_tokens: int = 200,
        temperature: float = 0.8,
        top_k: int | None = 50,
        prompt: str = "",
        seed: int = 0,
    ) -> None:
        self.tokenizer, self.path, self.mode = tokenizer, Path(path), mode
        self.num_samples, self.max_new_tokens = num_samples, max_new_tokens
        self.temperature, self.top_k, self.prompt, self.seed = temperature, top_k, prompt, seed

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        model = pl_module.model
        # A sharded (FSDP) model is gathered on every rank (a collective), then each generates on its own;
        # rank 0 writes.
        sharded = is_sharded(model)
        if self.num_samples <= 0 or not (trainer.is_global_zero or sharded):
            return
        was_training = model.training
        model.eval()
        try:
            with gathered(model):
                generated = self.mode == "generate"
                texts = self._generate(pl_module) if generated else self._predict(trainer, pl_module)
        finally:
            model.train(was_training)
        if trainer.is_global_zero:
            self.path.write_text(SEPARATOR.join(texts) + "\n", encoding="utf-8")

    def _generate(self, pl_module: L.LightningModule) -> list[str]:
        prompt = self.tokenizer.encode(self.prompt) if self.prompt else [self.tokenizer.eos_id]
        start = torch.tensor([prompt] * self.num_samples, device=pl_module.device)
        generator = torch.Generator(device=pl_module.device).manual_seed(self.seed)
        out = generate(
            pl_module.model, start, self.max_new_tokens, self.temperature, self.top_k, generator=generator
        )
        return [self.tokenizer.decode(row.tolist()) for row in out]

    @torch.no_grad()
    def _predict(self, trainer: L.Trainer, pl_module: L.LightningModule) -> list[str]:
        batch = next(iter(trainer.datamodule.val_dataloader()))
        n = self.num_samples
        rows = len(batch["input_ids"])
        if all(isinstance(v, torch.Tensor | list) and len(v) == rows for v in batch.values()):
            batch = {k: v[:n] for k, v in batch.items()}  # one example per row: predict only those shown
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        predictions, references = pl_module.objective.predict_text(pl_module.model, batch)
        # a batch may say what its examples' sources read (a question answered over several windows)
        sources = batch.get("source_texts") or [self.tokenizer.decode(r.tolist()) for r in batch["input_ids"]]
        return [
            f"source:     {s}\nprediction: {p}\nreference:  {r}"
            for s, p, r in zip(sources[:n], predictions[:n], references[:n], strict=True)
        ]
