"""The LightningModule: a model, an objective, an optimizer and LR schedule, and metrics, wired together.

The objective returns a *summed* loss and its count of target tokens, so every loss here is normalised by
tokens (a validation loss is the exact token-weighted mean over the split, whatever the batch sizes).

Training is normalised the same way across micro-batches and processes: one optimizer step's gradient is the
gradient of (sum of token losses) / (target tokens) over *all* its micro-batches on *all* ranks, i.e. exactly
the gradient of the k x W times larger batch, also when micro-batches hold different numbers of target tokens
(padding, masking). Averaging per-micro-batch means, as most training loops do, weights a token in a short
micro-batch more than one in a long micro-batch. Each micro-batch backpropagates its summed loss over a fixed
reference count; when the step's last micro-batch is done, one all-reduce of (loss sum, token count) gives the
true count and the accumulated gradients are rescaled by it, before clipping and the optimizer step.
"""

from __future__ import annotations

import inspect
import random
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection, SumMetric

from lightning_llm import registry
from lightning_llm.distributed.parallelize import ParallelPlan, gathered, local_part, parallelize
from lightning_llm.errors import ConfigError


def check_batch(batch: Any) -> None:
    """Refuse a data plugin's batch that is not what every part reads: a dict holding ``input_ids`` (or a
    decoder's ``decoder_input_ids``) as a tensor (a tuple failed deep in the throughput count's ``max``)."""
    inputs = [batch.get(key) for key in ("input_ids", "decoder_input_ids")] if isinstance(batch, dict) else []
    if not any(isinstance(tensor, torch.Tensor) for tensor in inputs):
        held = sorted(batch) if isinstance(batch, dict) else type(batch).__name__
        raise TypeError(
            "a batch of the data plugin must be a dict holding input_ids (or decoder_input_ids) as a "
            f"tensor, with its objective's labels; it is {held}"
        )


def batch_tokens(batch: dict[str, Any]) -> int:
    """Tokens a batch feeds the model: its inputs, plus the decoder's inputs for sequence-to-sequence."""
    return sum(batch[key].numel() for key in ("input_ids", "decoder_input_ids") if key in batch)


def ends_optimizer_step(trainer: L.Trainer) -> bool:
    """Whether the micro-batch being trained ends an optimizer step: the accumulate_grad_batches-th of the
    step, or the epoch's last (where Lightning steps on a shorter accumulation). Lightning's own test, from
    its public loop progress counters."""
    progress = trainer.fit_loop.epoch_loop.batch_progress
    ready = progress.current.ready
    return (
        ready % trainer.accumulate_grad_batches == 0
        or ready == trainer.num_training_batches
        or (progress.is_last_batch)
    )


class LanguageModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        objective: Any,
        optim: dict[str, Any],
        scheduler: dict[str, Any],
        metrics: dict[str, Metric] | None = None,
        checkpoint_extras: dict[str, Any] | None = None,
        parallel: ParallelPlan | None = None,
        save_trainable_only: bool = False,
    ) -> None:
        """
        Args:
            model: the network; any model plugin.
            objective: turns (model, batch) into (summed loss, target-token count, outputs).
            optim: ``{"name": optimizer plugin, **its parameters}``.
            scheduler: ``{"name": scheduler plugin, **its parameters}``.
            metrics: name -> metric, cloned for each stage and updated with (outputs, labels).
            checkpoint_extras: plain data stored in every checkpoint (resolved config, tokenizer hash).
            parallel: activation checkpointing, compile and FSDP options, applied in ``configure_model``.
            save_trainable_only: checkpoints hold only the trainable parameters (LoRA's adapters and a task
                head) and a fingerprint of the frozen rest, which a resumed run has built again.
        """
        super().__init__()
        self.model = model
        self.objective = objective
        self.optim_spec = dict(optim)
        self.scheduler_spec = dict(scheduler)
        metrics = dict(metrics or {})
        text = {name for name, metric in metrics.items() if getattr(metric, "input_kind", None) == "text"}
        if text and not hasattr(objective, "predict_text"):  # it would never be computed, nor say so
            raise ConfigError(
                f"metrics: {', '.join(sorted(text))} scores generated text, which this objective does not "
                "make (seq2seq and span_qa do); leave it out"
            )
        tensor_metrics = MetricCollection({k: v for k, v in metrics.items() if k not in text})
        # Text metrics (BLEU, ROUGE) score generated outputs: only at validation and test, generation is slow.
        text_metrics = MetricCollection({k: v for k, v in metrics.items() if k in text})
        self.train_metrics = tensor_metrics.clone(prefix="train/")
        self.val_metrics = tensor_metrics.clone(prefix="val/")
        self.test_metrics = tensor_metrics.clone(prefix="test/")
        self.val_text_metrics = text_metrics.clone(prefix="val/")
        self.test_text_metrics = text_metrics.clone(prefix="test/")
        self.val_loss = MeanMetric().set_dtype(torch.float64)
        self.test_loss = MeanMetric().set_dtype(torch.float64)
        # the target tokens each loss was measured on, over all processes (summary.json reports them)
        self.val_tokens = SumMetric().set_dtype(torch.float64)
        self.test_tokens = SumMetric().set_dtype(torch.float64)
        self.checkpoint_extras = dict(checkpoint_extras or {})
        self.tokens_seen = 0  # input tokens over all processes; restored on resume
        self.parallel = parallel or ParallelPlan()
        self.save_trainable_only = save_trainable_only
        self._frozen_fingerprint: str | None = None  # of the frozen weights, computed once: they never change
        self._parallelized = False
        self._compiled_loss: Any = None  # torch.compile(objective.loss) under parallel.compile
        # This step's loss sum and target tokens on this rank, over its micro-batches so far (float64: exact).
        self._step_loss = torch.zeros((), dtype=torch.float64)
        self._step_tokens = torch.zeros((), dtype=torch.float64)
        self._reference_tokens: float | None = None  # the fixed divisor each micro-batch backpropagates with
        self._grad_norm: torch.Tensor | None = None  # this step's gradient norm, measured by the NaN guard

    def _apply(self, fn: Any, recurse: bool = True) -> LanguageModule:
        """Every move and cast of the module (``nn.Module._apply``), where the metrics only move: Lightning's
        ``bf16-true``/``16-true`` cast the module with ``.to(dtype)``, which torchmetrics guards against only
        for ``.half()``/``.float()``, and the val/test sums would be kept in bfloat16 (val_loss 2% off, a
        token count rounded). The model's weights are cast."""
        if not recurse:
            return super()._apply(fn, recurse=False)

        def move_only(tensor: torch.Tensor) -> torch.Tensor:
            return tensor.to(fn(tensor.new_empty(0)).device)

        for child in self.children():
            child._apply(move_only if isinstance(child, Metric | MetricCollection) else fn)
        return super()._apply(fn, recurse=False)

    # ------------------------------------------------------------------ steps

    def configure_model(self) -> None:
        """Checkpointing, compile and (under the FSDP strategy, which supplies a device mesh) sharding.

        Under FSDP only rank 0 holds built weights; the other ranks built the model on the meta device. Once
        sharded, those ranks materialise their shards and rank 0 broadcasts its full weights into every
        rank's shards (torch's ``set_model_state_dict`` with ``broadcast_from_rank0``): no rank but 0 ever
        holds the whole model, and the initial weights are exactly a single process's for the same seed."""
        if self._parallelized:  # Lightning calls this again for validate/test after fit
            return
        # Lightning's mesh is 2-D (data_parallel, tensor_parallel); given the whole of it, fully_shard would
        # replicate over the first dimension and shard over the second (HSDP). Shard over data parallel.
        mesh = self.device_mesh["data_parallel"] if self.device_mesh is not None else None
        full_weights = self.model.state_dict() if mesh is not None and self.trainer.is_global_zero else {}
        self.model = parallelize(self.model, self.parallel, mesh, self.trainer.strategy.root_device.type)
        if mesh is not None:
            self._materialise_and_broadcast(full_weights)
        if self.parallel.compile:
            # The loss as well as the blocks: compiled together with the model call, the head's float32
            # cross-entropy fuses into two kernels over the (B, T, V) logits instead of a float32 copy, a
            # log-softmax, its backward and the vocab slice's padding, each a full pass. GPT-2 124M on an
            # H100: 50 -> 38 ms a step, a third less memory (bench/RESULTS.md). Blocks stay compiled on their
            # own too, for FSDP's per-block hooks and for code that calls the model directly.
            self._compiled_loss = torch.compile(self.objective.loss)
        self._parallelized = True

    def _materialise_and_broadcast(self, full_weights: dict[str, torch.Tensor]) -> None:
        from torch.distributed.checkpoint.state_dict import StateDictOptions, set_model_state_dict

        if any(p.is_meta for p in self.model.parameters()):
            self.model.to_empty(device="cpu" if self.parallel.cpu_offload else self.device)
            self.model.init_weights()  # buffers (position tables) are not in the state dict; weights are next
        options = StateDictOptions(full_state_dict=True, broadcast_from_rank0=True)
        set_model_state_dict(self.model, full_weights, options=options)
        # Buffers left out of the state dict (persistent=False) are whatever init_weights made of them on
        # these ranks: a plugin's init_weights may set its weights only. Rank 0's built ones are the model's.
        for buffer in self.model.buffers():
            staged = buffer.to(self.device)  # a collective's device (CPU offload keeps buffers on the CPU)
            torch.distributed.broadcast(staged, src=0)
            buffer.copy_(staged)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        last_micro_batch = ends_optimizer_step(self.trainer)
        if hasattr(self.model, "set_requires_gradient_sync"):
            # FSDP2: reduce-scatter gradients only after the step's last micro-batch. (DDP's no_sync is
            # handled by Lightning.) Accumulation then costs no extra communication.
            self.model.set_requires_gradient_sync(last_micro_batch)
        loss_sum, n_tokens, outputs = self._objective_loss(batch)
        n_tokens = torch.as_tensor(n_tokens, device=loss_sum.device)
        self._step_loss = self._step_loss.to(loss_sum.device) + loss_sum.detach().double()
        self._step_tokens = self._step_tokens.to(loss_sum.device) + n_tokens.double()
        self.tokens_seen += batch_tokens(batch) * self.trainer.world_size
        if last_micro_batch and self._writes_logs():
            self.log("train/tokens", float(self.tokens_seen))
            if len(self.train_metrics):  # a second pass over (B, T, V) logits: only on the steps logged
                self.log_dict(self.train_metrics(outputs.detach(), batch["labels"]))
        if self._rescales():
            return loss_sum / self._reference(batch)
        return loss_sum / n_tokens  # one micro-batch on one process: already the step's exact token mean

    def _objective_loss(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor, Any]:
        """(summed loss, target tokens, outputs) of ``batch``, through the compiled loss if there is one."""
        try:
            result = (self._compiled_loss or self.objective.loss)(self.model, batch)
        except KeyError as error:  # the objective reads what this data's batches do not hold
            key = error.args[0] if error.args else None
            if not isinstance(key, str) or not isinstance(batch, dict) or key in batch:
                raise
            fits = getattr(self.objective, "default_data", None)
            name = self._objective_name()
            raise ConfigError(
                f"objective={name} reads the batches' {key!r}, which this data does not give (its batches "
                f"hold {sorted(batch)}); choose data made for it" + (f", e.g. data={fits}" if fits else "")
            ) from None
        if not (isinstance(result, tuple) and len(result) == 3 and isinstance(result[0], torch.Tensor)):
            got = type(result).__name__ + (f" of {len(result)}" if isinstance(result, tuple) else "")
            raise TypeError(  # a plugin's: what a loss that is not the contract's would fail on, deep inside
                f"objective '{self._objective_name()}': loss(model, batch) must return (summed loss tensor, "
                f"number of target tokens, outputs); it returned a {got}"
            )
        return result

    def _objective_name(self) -> str:
        named = (p.name for p in registry.plugins("objective") if p.product() is type(self.objective))
        return next(named, type(self.objective).__name__)

    def _rescales(self) -> bool:
        """Whether a step's gradient spans several micro-batches or processes (and needs the rescale)."""
        return self.trainer.world_size * self.trainer.accumulate_grad_batches > 1

    def _writes_logs(self) -> bool:
        """Whether the loggers write this optimizer step (Lightning's own LearningRateMonitor and
        ThroughputMonitor ask the same), or it is the last. ``self.log`` costs about a millisecond of
        Python, a few percent of a small model's step, so per-step values are logged only when written."""
        trainer = self.trainer
        last = trainer.max_steps > 0 and self.global_step + 1 >= trainer.max_steps
        return last or trainer.should_stop or (self.global_step + 1) % trainer.log_every_n_steps == 0

    def _reference(self, batch: dict[str, torch.Tensor]) -> float:
        """A divisor that is the same for every micro-batch on every rank (so the rescale in
        ``on_before_optimizer_step`` is exact) and of the size of a batch's token count (so fp16 loss scaling
        sees gradients of the usual magnitude): the first batch's label count, agreed on by rank 0."""
        if self._reference_tokens is None:
            self._reference_tokens = float(self.trainer.strategy.broadcast(batch["labels"].numel(), src=0))
        return self._reference_tokens

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        """Rescale the accumulated gradients to the exact token mean of the whole step; log its loss.

        The gradient hooks before each optimizer step run in Lightning's order: the callbacks'
        ``on_before_optimizer_step`` (the NaN guard checks the gradients: rescaling cannot make them finite),
        this rescale, then ``configure_gradient_clipping`` (clipping the exact mean gradient)."""
        if self._rescales():
            totals = torch.stack([self._step_loss, self._step_tokens])
            totals = self.trainer.strategy.reduce(totals, reduce_op="sum")
            loss_sum, tokens = totals[0], totals[1].clamp(min=1)
            # The gradients now hold: the mean over ranks (DDP/FSDP average) of 1/k (Lightning divides each
            # micro-batch's loss by accumulate_grad_batches) times the sum over micro-batches of
            # grad(loss sum) / reference. Times W k reference / tokens, that is sum grad(loss sum) / tokens.
            world, k = self.trainer.world_size, self.trainer.accumulate_grad_batches
            scale = world * k * self._reference_tokens / tokens
            grads = [local_part(p.grad) for p in self.model.parameters() if p.grad is not None]
            if grads:
                torch._foreach_mul_(grads, scale.to(grads[0].dtype))
        else:
            loss_sum, tokens = self._step_loss, self._step_tokens.clamp(min=1)
        if self._writes_logs():
            self.log("train/loss", (loss_sum / tokens).float(), prog_bar=True)
        self._step_loss = torch.zeros_like(self._step_loss)
        self._step_tokens = torch.zeros_like(self._step_tokens)

    def share_grad_norm(self, total_norm: torch.Tensor) -> None:
        """The step's total gradient norm, measured by the NaN guard (in a single process) before
        ``on_before_optimizer_step``: clipping uses it instead of measuring the gradients a second time,
        unless the rescale changed them since."""
        self._grad_norm = total_norm

    def configure_gradient_clipping(
        self,
        optimizer: torch.optim.Optimizer,
        gradient_clip_val: float | None = None,
        gradient_clip_algorithm: str | None = None,
    ) -> None:
        """Clip as Lightning does, also for a fused optimizer under bf16-mixed: Lightning's mixed-precision
        plugin refuses to clip whenever the optimizer can unscale fp16 gradients itself, but with no loss
        scaler (bf16) nothing is scaled and clipping is exact. (Under 16-mixed the optimizer is built
        unfused when clipping, see ``configure_optimizers``.)"""
        measured, self._grad_norm = self._grad_norm, None  # this step's, used once
        if getattr(self.trainer.precision_plugin, "scaler", None) is not None:
            return self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)
        if not gradient_clip_val:
            return None
        parameters = [p for group in optimizer.param_groups for p in group["params"]]
        if gradient_clip_algorithm == "value":
            torch.nn.utils.clip_grad_value_(parameters, gradient_clip_val)
        elif measured is not None and not self._rescales():  # the same gradients the guard measured
            torch.nn.utils.clip_grads_with_norm_(parameters, gradient_clip_val, measured)
        else:
            torch.nn.utils.clip_grad_norm_(parameters, gradient_clip_val)
        return None

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_loss, self.val_tokens, self.val_metrics, self.val_text_metrics, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(
            batch, self.test_loss, self.test_tokens, self.test_metrics, self.test_text_metrics, "test"
        )

    def _evaluate(
        self,
        batch: dict,
        mean_loss: MeanMetric,
        tokens: SumMetric,
        metrics: MetricCollection,
        text_metrics: MetricCollection,
        stage: str,
    ) -> None:
        loss_sum, n_tokens, outputs = self._objective_loss(batch)
        mean_loss.update(loss_sum / n_tokens, weight=n_tokens)  # token-weighted: exact over the split
        self.log(f"{stage}/loss", mean_loss, prog_bar=stage == "val")
        tokens.update(n_tokens)
        self.log(f"{stage}/tokens", tokens)
        if len(metrics):
            metrics.update(outputs, batch["labels"])
            self.log_dict(metrics)
        if len(text_metrics) and hasattr(self.objective, "predict_text"):
            with gathered(self.model):  # decoding stops per batch: processes must not wait on each other
                text_metrics.update(*self._predict_text(batch, outputs))
            self.log_dict(text_metrics)

    def _predict_text(self, batch: dict, outputs: Any) -> tuple[list, list]:
        """The objective's (predictions, references), handing it the loss's outputs when it takes them (span
        QA reads its answers from them; a generating objective decodes anew)."""
        predict = self.objective.predict_text
        if "outputs" in inspect.signature(predict).parameters:
            return predict(self.model, batch, outputs=outputs)
        return predict(self.model, batch)

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> dict[str, Any]:
        from lightning_llm.optim import param_groups

        optim = dict(self.optim_spec)
        name = optim.pop("name")
        groups = param_groups(self.model, optim.pop("decay_embeddings", True))
        scaled = getattr(self.trainer.precision_plugin, "scaler", None) is not None
        if scaled and self.trainer.gradient_clip_val and optim.get("fused", False) is None:
            # fp16 loss scaling: a fused optimizer unscales inside step(), after clipping would have seen
            # the scaled gradients. Unfused, Lightning unscales before clipping.
            optim["fused"] = False
        optimizer = registry.build("optim", name, params=groups, **optim)
        schedule = dict(self.scheduler_spec)
        scheduler = registry.build(
            "scheduler",
            schedule.pop("name"),
            optimizer=optimizer,
            total_steps=int(
                self.trainer.estimated_stepping_batches
            ),  # optimizer steps, accumulation included
            **schedule,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen
        # Dropout and masking draw from these: restored, a resumed run repeats the uninterrupted one.
        checkpoint["rng_states"] = _collect_rng_states()
        checkpoint.update(self.checkpoint_extras)
        if self.save_trainable_only:
            state = checkpoint["state_dict"]
            trained = {f"model.{name}" for name, p in self.model.named_parameters() if p.requires_grad}
            if self._frozen_fingerprint is None:
                self._frozen_fingerprint = _fingerprint({k: v for k, v in state.items() if k not in trained})
            checkpoint["frozen_fingerprint"] = self._frozen_fingerprint
            checkpoint["state_dict"] = {k: v for k, v in state.items() if k in trained}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))
        if "rng_states" in checkpoint:
            try:
                _set_rng_states(checkpoint["rng_states"])
            except (KeyError, TypeError, ValueError, IndexError, RuntimeError) as error:
                raise ValueError(
                    f"the checkpoint's rng_states cannot be restored ({type(error).__name__}: {error}); "
                    "damaged or crafted"
                ) from None
        if "frozen_fingerprint" in checkpoint:
            self._complete_with_frozen(checkpoint)

    def _complete_with_frozen(self, checkpoint: dict[str, Any]) -> None:
        """An adapters-only checkpoint (resumed): the frozen weights are this module's own, built from
        ``model.init_from`` as in the run that wrote it; refused when they are not the same."""
        from lightning_llm.errors import CheckpointError

        state = checkpoint["state_dict"]
        frozen = {k: v for k, v in self.state_dict().items() if k not in state}
        if _fingerprint(frozen) != checkpoint["frozen_fingerprint"]:
            raise CheckpointError(
                "the checkpoint holds LoRA adapters only, trained on other base weights than "
                "model.init_from gives now; resume with the base the run started from"
            )
        state.update(frozen)


def _fingerprint(module_state: dict[str, torch.Tensor]) -> str:
    """``frozen_fingerprint`` of a module state dict's model entries, under the names the model itself uses
    (no ``model.`` prefix, no compile or checkpointing wrappers), as ``checkpoint.load_run`` sees them."""
    from lightning_llm.checkpoint import model_state_dict
    from lightning_llm.models.lora import frozen_fingerprint

    return frozen_fingerprint(model_state_dict({"state_dict": module_state}))


def _collect_rng_states() -> dict[str, Any]:
    """Global RNG states as tensors and plain Python data, so checkpoints load with ``weights_only=True``."""
    kind, keys, position, has_gauss, gauss = np.random.get_state()
    version, state, python_gauss = random.getstate()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": [kind, keys.tolist(), position, has_gauss, gauss],
        "python": [version, list(state), python_gauss],
    }


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    kind, keys, position, has_gauss, gauss = states["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), position, has_gauss, gauss))
    version, state, python_gauss = states["python"]
    random.setstate((version, tuple(state), python_gauss))
