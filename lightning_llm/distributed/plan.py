"""The ``parallel`` config node: how a model is scaled, whatever the strategy; and the choices of strategy,
precision and dtypes, checked on the config alone (``check_choices``).

One dataclass is the Hydra node (``parallel.compile=true``) and what ``parallelize`` reads. It holds plain
values only (dtypes by name), so composing a config never imports torch.
"""

from dataclasses import dataclass
from typing import Any, Optional

from lightning_llm.errors import ConfigError
from lightning_llm.ranges import check_switches

__all__ = ["DTYPES", "FSDP_PRECISIONS", "PRECISIONS", "STRATEGIES", "ParallelPlan", "check_choices"]

DTYPES = ("float32", "bfloat16")  # what FSDP may gather parameters and reduce gradients in


@dataclass
class ParallelPlan:
    # Recompute each block's activations in backward instead of storing them (less memory, ~30% more compute).
    activation_checkpointing: bool = False
    compile: bool = (
        False  # torch.compile each block, and the objective's loss with the model call (the head fuses)
    )
    cpu_offload: bool = False  # FSDP keeps sharded parameters, gradients and optimizer state in CPU memory
    # The blocks' linear layers compute in float8 (torchao, dynamic per-tensor scales; weights, gradients and
    # optimizer state stay as they were): GPUs of compute capability 8.9+ (H100, L4), best with compile=true.
    # On a CPU the float8 numerics are emulated, for tests: no speed-up.
    float8: bool = False
    # FSDP frees gathered block parameters after forward (ZeRO-3); false keeps them until backward (ZeRO-2:
    # more memory, one all-gather less per block).
    reshard_after_forward: bool = True
    reduce_dtype: str = "float32"  # the dtype FSDP reduces gradients in under mixed precision
    # The dtype FSDP gathers parameters in; null: trainer.precision decides (bfloat16 under bf16-mixed).
    param_dtype: Optional[str] = None  # noqa: UP045 - OmegaConf needs typing.Optional
    # On SLURM, the signal the job gets before its time limit (#SBATCH --signal): the run then checkpoints and
    # requeues itself into the same run folder.
    requeue_signal: str = "SIGUSR1"


PRECISIONS = ("32-true", "bf16-mixed", "16-mixed", "bf16-true")
# Lightning's ModelParallelStrategy has no GradScaler for sharded gradients, so no 16-mixed under FSDP.
FSDP_PRECISIONS = ("32-true", "bf16-mixed", "bf16-true")


STRATEGIES = ("auto", "single", "ddp", "fsdp")


def check_choices(trainer_cfg: dict[str, Any], parallel: dict[str, Any]) -> None:
    """The strategy, precision and dtype settings, checked on the config alone (no device is looked at, so
    a login node composing a GPU sweep passes): one line naming the key and the choices."""
    precision = str(trainer_cfg.get("precision", "32-true"))
    if precision not in PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision} is not supported; choose one of: {', '.join(PRECISIONS)}"
        )
    strategy = trainer_cfg.get("strategy", "auto")
    if isinstance(strategy, str) and strategy not in STRATEGIES:
        raise ConfigError(
            f"trainer.strategy={strategy} is not supported; choose one of: {', '.join(STRATEGIES)}"
        )
    if strategy == "fsdp" and precision not in FSDP_PRECISIONS:
        raise ConfigError(
            f"trainer.precision={precision} does not work with trainer.strategy=fsdp (no loss scaling "
            f"for sharded gradients); choose one of: {', '.join(FSDP_PRECISIONS)}"
        )
    check_switches(ParallelPlan, parallel, "parallel")
    for key in ("reduce_dtype", "param_dtype"):
        value = parallel.get(key)
        if value is not None and value not in DTYPES:
            raise ConfigError(f"parallel.{key}={value}: choose one of: {', '.join(DTYPES)}")
