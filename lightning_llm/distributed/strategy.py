"""What ``trainer.strategy``, ``trainer.precision`` and the ``parallel`` node mean, resolved in one place.

``trainer.strategy``:
  ``auto``/``single``  one device (Lightning picks it)
  ``ddp``              one model replica per process, gradients all-reduced (Lightning's DDPStrategy)
  ``fsdp``             FSDP2: parameters, gradients and optimizer state sharded over all processes
                       (Lightning's ModelParallelStrategy; ``fully_shard`` applied by ``parallelize``)
  anything else        passed to Lightning unchanged (e.g. ``ddp_spawn``, ``deepspeed``)

``trainer.precision``: ``32-true``, ``bf16-mixed`` (bf16 compute, fp32 weights and optimizer state),
``16-mixed`` (fp16 compute with loss scaling; single device and DDP), ``bf16-true`` (everything bf16).
Under FSDP a mixed precision becomes the sharding's policy: parameters are gathered in the compute dtype and
gradients reduced in ``parallel.reduce_dtype``.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import sys
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf

from lightning_llm.config import ConfigError
from lightning_llm.distributed.plan import ParallelPlan, check_choices


def resolve_run(trainer: DictConfig, parallel: DictConfig) -> tuple[dict[str, Any], ParallelPlan]:
    """``resolve`` for a run's ``trainer`` and ``parallel`` nodes, after refusing devices this machine cannot
    give (``check_devices``): before any work is done."""
    trainer_cfg = OmegaConf.to_container(trainer, resolve=True)
    check_devices(trainer_cfg)
    return resolve(trainer_cfg, OmegaConf.to_container(parallel, resolve=True))


def resolve(trainer_cfg: dict[str, Any], parallel: dict[str, Any]) -> tuple[dict[str, Any], ParallelPlan]:
    """Trainer keyword arguments with ``strategy`` resolved to a Lightning strategy, and the model's plan."""
    check_choices(trainer_cfg, parallel)
    args = dict(trainer_cfg)
    precision = str(args.get("precision", "32-true"))
    _check_device_precision(args, precision)
    plan = ParallelPlan(**parallel)
    if plan.float8:
        _check_float8(args)
    if plan.param_dtype is None and precision == "bf16-mixed":
        plan = dataclasses.replace(plan, param_dtype="bfloat16")
    # Lightning counts val_check_interval in micro-batches; here every interval counts optimizer steps.
    interval, k = args.get("val_check_interval"), int(args.get("accumulate_grad_batches", 1))
    if isinstance(interval, int) and k > 1:
        args["val_check_interval"] = interval * k
    strategy = args.get("strategy", "auto")
    if strategy == "single":
        args["strategy"] = "auto"
    elif strategy == "ddp":
        args["strategy"] = _ddp()
    elif strategy == "fsdp":
        from lightning_llm.distributed.checkpointing import ShardedStrategy

        args["strategy"] = ShardedStrategy(
            data_parallel_size=world_size(args), tensor_parallel_size=1, save_distributed_checkpoint=True
        )
    return args, plan


def world_size(trainer_cfg: dict[str, Any]) -> int:
    """Processes the run will have: devices per node x nodes (``auto``/-1: all visible GPUs, else 1)."""
    devices = trainer_cfg.get("devices", "auto")
    if isinstance(devices, list | tuple):
        per_node = len(devices)
    elif str(devices) in ("auto", "-1"):
        uses_gpu = trainer_cfg.get("accelerator", "auto") in ("auto", "gpu", "cuda")
        per_node = torch.cuda.device_count() if uses_gpu and torch.cuda.is_available() else 1
    else:
        per_node = int(devices)
    return per_node * int(trainer_cfg.get("num_nodes", 1))


def check_devices(trainer_cfg: dict[str, Any]) -> None:
    """Refuse ``trainer.accelerator``/``trainer.devices`` this machine cannot give, before any work: Lightning
    would fail later with a traceback (no GPU), or start more CPU processes than there are cores.

    Only where Lightning launches the processes itself: under torchrun or SLURM each process may see only its
    share of the node (one GPU, the cores of its task), and Lightning checks those ranks itself. A login node
    composing a SLURM sweep is not checked either: this runs in the job, not in the CLI's pre-check."""
    nodes = trainer_cfg.get("num_nodes", 1)
    if isinstance(nodes, int) and nodes > 1 and not _on_a_cluster():
        raise ConfigError(
            f"trainer.num_nodes={nodes}: no launcher of several machines (SLURM's srun, torchrun, LSF, MPI, "
            "Kubeflow) started this process, so it would wait for the other nodes forever; use "
            "trainer.num_nodes=1 on one machine, or start each node's processes with srun or torchrun"
        )
    if _launched_externally():
        return
    accelerator = str(trainer_cfg.get("accelerator", "auto"))
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if accelerator in ("gpu", "cuda") and not gpus:
        if accelerator == "gpu" and torch.backends.mps.is_available():
            return  # Apple silicon: Lightning's "gpu" is MPS, one device
        raise ConfigError(
            f"trainer.accelerator={accelerator}: no CUDA GPU is visible to this process; "
            "choose trainer.accelerator=cpu (or auto)"
        )
    if accelerator not in ("auto", "cpu", "gpu", "cuda"):  # tpu, mps, a plugin's: is it here at all?
        _check_other_accelerator(accelerator)
        return
    on_gpu = accelerator != "cpu" and gpus > 0
    available, unit = (gpus, "GPUs") if on_gpu else (_cpu_count(), "CPU cores")
    devices = trainer_cfg.get("devices", "auto")
    requested = _requested_devices(devices, on_gpu)
    indices = _device_indices(devices)
    if indices is not None and (not on_gpu or max(indices) >= gpus or min(indices) < 0):
        where = (
            f"this machine has GPUs 0 to {gpus - 1}"
            if on_gpu
            else "indices name GPUs, and this run is on CPU"
        )
        raise ConfigError(f"trainer.devices={devices}: {where}; give a count of devices instead, e.g. 1")
    if requested is None or 1 <= requested <= available:
        return
    auto = "auto (every visible GPU)" if on_gpu else "auto (one process)"
    raise ConfigError(
        f"trainer.devices={devices}: this machine has {available} {unit}; "
        f"choose trainer.devices from 1 to {available}, or {auto}"
    )


def _check_other_accelerator(accelerator: str) -> None:
    """Refuse an accelerator Lightning does not know, or one this machine does not have."""
    from lightning.pytorch.accelerators import AcceleratorRegistry

    known = sorted(AcceleratorRegistry.available_accelerators())
    if accelerator not in known:
        raise ConfigError(
            f"trainer.accelerator={accelerator}: not one Lightning knows; choose auto, {', '.join(known)}"
        )
    if not AcceleratorRegistry[accelerator]["accelerator"].is_available():
        raise ConfigError(
            f"trainer.accelerator={accelerator}: this machine has none; choose trainer.accelerator=auto"
        )


def _device_indices(devices: Any) -> list[int] | None:
    """The device indices ``trainer.devices`` names (a list, or "0,1"), or None when it gives a count."""
    if isinstance(devices, list | tuple):
        return [int(index) for index in devices] if all(isinstance(i, int) for i in devices) else None
    text = str(devices)
    if "," in text:
        parts = [part.strip() for part in text.split(",") if part.strip()]
        return [int(part) for part in parts] if all(part.lstrip("-").isdigit() for part in parts) else None
    return None


def _requested_devices(devices: Any, on_gpu: bool) -> int | None:
    """How many devices ``trainer.devices`` asks for; None for "all" (auto, or -1 on a GPU)."""
    if isinstance(devices, list | tuple):
        return len(devices)
    text = str(devices).strip()
    if text == "auto" or (on_gpu and text == "-1"):
        return None
    if on_gpu and "," in text:  # Lightning's "0,1" GPU indices
        return len([index for index in text.split(",") if index.strip()])
    try:
        return int(text)
    except ValueError:
        return 0  # not a count: refused with the valid range


def _cpu_count() -> int:
    """The cores this process may run on (a container's or taskset's share, not the host's)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _launched_externally() -> bool:
    """Whether torchrun, SLURM or a launching parent process (Lightning's own, via LOCAL_RANK) started us."""
    from lightning.fabric.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    return "LOCAL_RANK" in os.environ or TorchElasticEnvironment.detect() or SLURMEnvironment.detect()


def _on_a_cluster() -> bool:
    """Whether a launcher of several machines that Lightning knows started this process."""
    from lightning.fabric.plugins.environments import (
        KubeflowEnvironment,
        LSFEnvironment,
        MPIEnvironment,
        SLURMEnvironment,
        TorchElasticEnvironment,
    )

    environments = (
        SLURMEnvironment,
        TorchElasticEnvironment,
        LSFEnvironment,
        KubeflowEnvironment,
        MPIEnvironment,
    )
    for environment in environments:
        try:
            if environment.detect():
                return True
        except Exception:  # MPI's needs mpi4py; an environment that cannot tell is not this one
            continue
    return False


def _ddp() -> Any:
    from lightning.pytorch.strategies import DDPStrategy

    # Every parameter of a Transformer gets a gradient each step: no per-step search for unused ones.
    return DDPStrategy(find_unused_parameters=False, gradient_as_bucket_view=True)


def _on_cpu(args: dict[str, Any]) -> bool:
    return args.get("accelerator") == "cpu" or (
        args.get("accelerator", "auto") == "auto" and not torch.cuda.is_available()
    )


def _check_float8(args: dict[str, Any]) -> None:
    """float8 needs torchao, and float8 matmuls (compute capability 8.9+) on a GPU; a CPU emulates them."""
    if importlib.util.find_spec("torchao") is None:
        raise ConfigError("parallel.float8=true needs torchao: pip install 'lightning-llm[float8]'")
    if not _on_cpu(args) and torch.cuda.is_available():
        capability = torch.cuda.get_device_capability()
        if capability < (8, 9):
            raise ConfigError(
                "parallel.float8=true needs a GPU of compute capability 8.9+ (H100, H200, L4, L40S); "
                f"{torch.cuda.get_device_name()} has {capability[0]}.{capability[1]}"
            )


def _check_device_precision(args: dict[str, Any], precision: str) -> None:
    on_cpu = _on_cpu(args)
    if on_cpu and precision == "16-mixed":
        raise ConfigError(
            "trainer.precision=16-mixed needs a GPU (fp16 autocast with loss scaling); on CPU use bf16-mixed "
            "or 32-true"
        )


def single_job_argv() -> list[str] | None:
    """The command line that relaunches *this* Hydra job, for the extra processes of a multi-process run.

    Lightning starts processes 1..N-1 by re-running the script with the original ``sys.argv`` plus
    ``hydra.run.dir=<run dir>``. Inside a multirun that would re-run the whole sweep, and the run dir it
    passes is not the job's folder; so the job's own overrides are put back on the command line and Hydra's
    ``run.dir`` pointed at the job's output folder: every process of the job then writes to one run folder.
    """
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import open_dict, read_write

    if not HydraConfig.initialized():
        return None
    hydra_cfg = HydraConfig.get()
    with read_write(hydra_cfg), open_dict(hydra_cfg):
        hydra_cfg.run.dir = hydra_cfg.runtime.output_dir
    return [sys.argv[0], *hydra_cfg.overrides.task]
