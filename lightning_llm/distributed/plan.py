"""The ``parallel`` config node: how a model is scaled, whatever the strategy.

One dataclass is the Hydra node (``parallel.compile=true``) and what ``parallelize`` reads. It holds plain
values only (dtypes by name), so composing a config never imports torch.
"""

from dataclasses import dataclass
from typing import Optional

__all__ = ["DTYPES", "ParallelPlan"]

DTYPES = ("float32", "bfloat16")  # what FSDP may gather parameters and reduce gradients in


@dataclass
class ParallelPlan:
    # Recompute each block's activations in backward instead of storing them (less memory, ~30% more compute).
    activation_checkpointing: bool = False
    compile: bool = (
        False  # torch.compile each block, and the objective's loss with the model call (the head fuses)
    )
    cpu_offload: bool = False  # FSDP keeps sharded parameters, gradients and optimizer state in CPU memory
    # FSDP frees gathered block parameters after forward (ZeRO-3); false keeps them until backward (ZeRO-2:
    # more memory, one all-gather less per block).
    reshard_after_forward: bool = True
    reduce_dtype: str = "float32"  # the dtype FSDP reduces gradients in under mixed precision
    # The dtype FSDP gathers parameters in; null: trainer.precision decides (bfloat16 under bf16-mixed).
    param_dtype: Optional[str] = None  # noqa: UP045 - OmegaConf needs typing.Optional
    # On SLURM, the signal the job gets before its time limit (#SBATCH --signal): the run then checkpoints and
    # requeues itself into the same run folder.
    requeue_signal: str = "SIGUSR1"
