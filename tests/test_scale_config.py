"""The scale-out presets compose and resolve to the right Lightning strategy, bad precisions fail early with
the key and the valid values, the SLURM sweep launcher composes into the sbatch options the README promises,
and a multi-process job inside a multirun relaunches exactly itself into its own folder."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from lightning.pytorch.strategies import DDPStrategy
from omegaconf import OmegaConf, open_dict

from lightning_llm import config
from lightning_llm.config import ConfigError
from lightning_llm.distributed import strategy
from lightning_llm.distributed.checkpointing import ShardedStrategy
from lightning_llm.distributed.plan import FSDP_PRECISIONS, PRECISIONS


def _resolve(cfg):
    return strategy.resolve(
        OmegaConf.to_container(cfg.trainer, resolve=True), OmegaConf.to_container(cfg.parallel, resolve=True)
    )


def _compose_with_hydra(*overrides: str):
    with initialize_config_dir(config.config_dir(), version_base="1.3"):
        return compose("config", overrides=list(overrides), return_hydra_config=True)


# --------------------------------------------------------------------------- trainer presets


@pytest.mark.parametrize("preset", ["fsdp", "ddp"])
def test_gpu_presets_keep_the_defaults_and_set_strategy_devices_precision(make_cfg, preset):
    cfg = make_cfg(f"trainer={preset}", tiny=False)
    trainer = cfg.trainer
    assert (trainer.strategy, trainer.accelerator, trainer.devices, trainer.precision) == (
        preset,
        "gpu",
        "auto",
        "bf16-mixed",
    )
    default = make_cfg(tiny=False).trainer
    untouched = set(default) - {"strategy", "accelerator", "devices", "precision"}
    assert {key: trainer[key] for key in untouched} == {key: default[key] for key in untouched}
    config.check(cfg)  # every key is still a lightning.Trainer argument


def test_fsdp_preset_resolves_to_a_sharded_strategy_over_all_processes(make_cfg):
    cfg = make_cfg("trainer=fsdp", "trainer.devices=4", "trainer.num_nodes=2", tiny=False)
    args, plan = _resolve(cfg)
    assert isinstance(args["strategy"], ShardedStrategy)
    assert args["strategy"]._data_parallel_size == 8  # devices x nodes: FSDP shards over all of them
    assert args["strategy"]._tensor_parallel_size == 1
    assert args["precision"] == "bf16-mixed"  # Lightning's plugin: autocast and fp32 optimizer state
    assert plan.param_dtype == "bfloat16"  # FSDP gathers parameters in bf16
    assert plan.reduce_dtype == "float32"  # and reduces gradients in fp32 (parallel.reduce_dtype)
    assert plan.reshard_after_forward and not plan.activation_checkpointing and not plan.compile


def test_parallel_options_reach_the_plan(make_cfg):
    cfg = make_cfg(
        "trainer=fsdp",
        "parallel.activation_checkpointing=true",
        "parallel.compile=true",
        "parallel.cpu_offload=true",
        "parallel.reshard_after_forward=false",
        "parallel.reduce_dtype=bfloat16",
        tiny=False,
    )
    _, plan = _resolve(cfg)
    assert plan.activation_checkpointing and plan.compile and plan.cpu_offload
    assert not plan.reshard_after_forward
    assert plan.reduce_dtype == "bfloat16"


def test_ddp_preset_resolves_to_lightnings_ddp(make_cfg):
    args, plan = _resolve(make_cfg("trainer=ddp", "trainer.devices=2", tiny=False))
    assert isinstance(args["strategy"], DDPStrategy)
    assert not isinstance(args["strategy"], ShardedStrategy)
    assert plan.param_dtype == "bfloat16"  # used only when a mesh is given, i.e. under FSDP


def test_full_precision_keeps_parameters_as_stored(make_cfg):
    _, plan = _resolve(make_cfg("trainer=fsdp", "trainer.precision=32-true", tiny=False))
    assert plan.param_dtype is None


def test_the_cpu_command_of_the_readme_resolves(make_cfg):
    cfg = make_cfg(
        "trainer.accelerator=cpu",
        "trainer.devices=2",
        "trainer.strategy=fsdp",
        "data.batch_size=4",
        tiny=False,
    )
    args, plan = _resolve(cfg)
    assert isinstance(args["strategy"], ShardedStrategy)
    assert args["strategy"]._data_parallel_size == 2
    assert plan.param_dtype is None  # the default 32-true


# --------------------------------------------------------------------------- precision errors


def test_fp16_mixed_under_fsdp_names_the_key_and_the_valid_choices(make_cfg):
    cfg = make_cfg("trainer=fsdp", "trainer.precision=16-mixed", tiny=False)
    with pytest.raises(ConfigError, match=r"trainer\.precision=16-mixed") as error:
        _resolve(cfg)
    assert "trainer.strategy=fsdp" in str(error.value)
    for choice in FSDP_PRECISIONS:
        assert choice in str(error.value)


def test_fp16_mixed_on_cpu_names_the_key_and_what_works_there(make_cfg):
    cfg = make_cfg("trainer=ddp", "trainer.accelerator=cpu", "trainer.precision=16-mixed", tiny=False)
    with pytest.raises(ConfigError, match=r"trainer\.precision=16-mixed needs a GPU") as error:
        _resolve(cfg)
    assert "bf16-mixed" in str(error.value) and "32-true" in str(error.value)


@pytest.mark.parametrize("preset", ["fsdp", "ddp", "default"])
def test_an_unknown_precision_lists_the_valid_ones(make_cfg, preset):
    cfg = make_cfg(f"trainer={preset}", "trainer.precision=fp8", tiny=False)
    with pytest.raises(ConfigError, match=r"trainer\.precision=fp8 is not supported") as error:
        _resolve(cfg)
    for choice in PRECISIONS:
        assert choice in str(error.value)


def test_an_unknown_reduce_dtype_names_the_key(make_cfg):
    cfg = make_cfg("trainer=fsdp", "parallel.reduce_dtype=float8", tiny=False)
    with pytest.raises(ConfigError, match=r"parallel\.reduce_dtype=float8.*float32, bfloat16"):
        _resolve(cfg)


# --------------------------------------------------------------------------- devices this machine has


@pytest.fixture
def machine(monkeypatch):
    """A machine with ``cores`` CPU cores and ``gpus`` CUDA GPUs, not started by torchrun or SLURM."""

    def make(cores: int, gpus: int) -> None:
        for name in ("LOCAL_RANK", "TORCHELASTIC_RUN_ID", "SLURM_NTASKS", "SLURM_JOB_NAME"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setattr(strategy, "_cpu_count", lambda: cores)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: gpus > 0)
        monkeypatch.setattr(torch.cuda, "device_count", lambda: gpus)
        monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)

    return make


@pytest.mark.parametrize(
    ("trainer", "message"),
    [
        ({"accelerator": "cpu", "devices": 4}, "trainer.devices=4: this machine has 2 CPU cores; choose "),
        ({"accelerator": "auto", "devices": 3}, "from 1 to 2, or auto (one process)"),
        ({"accelerator": "cpu", "devices": -1}, "trainer.devices=-1: this machine has 2 CPU cores"),
        ({"accelerator": "gpu", "devices": 1}, "trainer.accelerator=gpu: no CUDA GPU is visible"),
        ({"accelerator": "tpu", "devices": 1}, "trainer.accelerator=tpu: this machine has none"),
        ({"accelerator": "foo", "devices": 1}, "trainer.accelerator=foo: not one Lightning knows; choose"),
        ({"accelerator": "cpu", "devices": [0, 5]}, "trainer.devices=[0, 5]: indices name GPUs, and this"),
        ({"accelerator": "cuda", "devices": "auto"}, "choose trainer.accelerator=cpu (or auto)"),
    ],
)
def test_devices_this_machine_lacks_are_refused_naming_the_key_and_the_count(machine, trainer, message):
    machine(cores=2, gpus=0)
    with pytest.raises(ConfigError, match=re.escape(message)):
        strategy.check_devices(trainer)


def test_several_nodes_need_a_launcher_of_several_machines(machine, monkeypatch):
    """Lightning would wait at "MEMBER: 1/2" for nodes nothing starts; under SLURM or torchrun, it runs."""
    machine(cores=2, gpus=0)
    with pytest.raises(ConfigError, match=r"trainer.num_nodes=2: no launcher of several machines .*forever"):
        strategy.check_devices({"accelerator": "cpu", "devices": 1, "num_nodes": 2})
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")  # torchrun --nnodes 2 started it
    for name, value in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "2"), ("GROUP_RANK", "0")):
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("MASTER_ADDR", "localhost")
    monkeypatch.setenv("MASTER_PORT", "12345")
    strategy.check_devices({"accelerator": "cpu", "devices": 1, "num_nodes": 2})


def test_more_gpus_than_visible_are_refused_and_the_ones_there_accepted(machine):
    machine(cores=16, gpus=2)
    with pytest.raises(ConfigError, match=r"trainer.devices=4: this machine has 2 GPUs; .*or auto \(every"):
        strategy.check_devices({"accelerator": "gpu", "devices": 4})
    for devices in (1, 2, "auto", -1, "0,1", [0, 1]):
        strategy.check_devices({"accelerator": "gpu", "devices": devices})
    strategy.check_devices({"accelerator": "auto", "devices": 2})


def test_what_the_machine_has_is_accepted(machine):
    machine(cores=2, gpus=0)
    for devices in (1, 2, "2", "auto"):
        strategy.check_devices({"accelerator": "cpu", "devices": devices})


@pytest.mark.parametrize(
    "launcher",
    [{"LOCAL_RANK": "1"}, {"TORCHELASTIC_RUN_ID": "x"}, {"SLURM_NTASKS": "8", "SLURM_JOB_NAME": "train"}],
    ids=["lightning-child", "torchrun", "srun"],
)
def test_processes_started_by_a_launcher_are_not_checked(machine, monkeypatch, launcher):
    """torchrun and SLURM give each process its share of the node; Lightning checks those ranks itself."""
    machine(cores=1, gpus=0)
    for name, value in launcher.items():
        monkeypatch.setenv(name, value)
    strategy.check_devices({"accelerator": "gpu", "devices": 8})


# --------------------------------------------------------------------------- SLURM sweep launcher


@pytest.fixture
def submitit():
    return pytest.importorskip("submitit", reason="needs hydra-submitit-launcher: pip install -e '.[slurm]'")


def test_slurm_launcher_composes_with_one_task_per_gpu(submitit):
    cfg = _compose_with_hydra("hydra/launcher=slurm", "hydra.launcher.gpus_per_node=8")
    launcher = cfg.hydra.launcher
    assert "SlurmLauncher" in launcher._target_
    assert launcher.tasks_per_node == launcher.gpus_per_node == 8  # Lightning: one process per GPU
    assert launcher.partition is None
    assert launcher.signal_delay_s > 0 and launcher.max_num_timeout > 0 and launcher.timeout_min > 0


def test_slurm_launcher_submits_the_sbatch_options_it_is_given(submitit, tmp_path, monkeypatch):
    """The real launcher, up to the point where it would call sbatch: the script it would submit."""
    from hydra.utils import instantiate

    cfg = _compose_with_hydra(
        "hydra/launcher=slurm",
        "hydra.launcher.partition=gpu",
        "hydra.launcher.nodes=2",
        "hydra.launcher.gpus_per_node=8",
        f"hydra.sweep.dir={tmp_path / 'sweep'}",
    )
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # "srun exists"
    submitted = []
    monkeypatch.setattr(
        submitit.AutoExecutor, "map_array", lambda self, fn, *args: submitted.append((self, args)) or []
    )
    launcher = instantiate(cfg.hydra.launcher)
    launcher.setup(hydra_context=None, task_function=lambda cfg: None, config=cfg)
    launcher.launch([["optim.lr=1e-3"], ["optim.lr=3e-4"]], initial_job_idx=0)

    ((executor, args),) = submitted
    assert [list(overrides) for overrides in args[0]] == [["optim.lr=1e-3"], ["optim.lr=3e-4"]]
    sbatch = executor._executor._make_submission_file_text("python -m x", "uid")
    for option in (
        "--partition=gpu",
        "--nodes=2",
        "--gpus-per-node=8",
        "--ntasks-per-node=8",
        "--cpus-per-task=8",
        "--time=240",
        "--signal=USR2@120",
    ):
        assert f"#SBATCH {option}\n" in sbatch, option
    assert executor._executor.max_num_timeout == cfg.hydra.launcher.max_num_timeout


# --------------------------------------------------------------------------- one job of a multirun


@pytest.fixture
def multirun_job(tmp_path, monkeypatch):
    """HydraConfig as inside job 3 of a multirun sweep, restored afterwards."""
    cfg = _compose_with_hydra("optim.lr=3e-4", "trainer.devices=2")
    output_dir = tmp_path / "multirun" / "3"
    with open_dict(cfg):
        cfg.hydra.mode = RunMode.MULTIRUN
        cfg.hydra.runtime.output_dir = str(output_dir)
        cfg.hydra.runtime.cwd = str(tmp_path)
        cfg.hydra.overrides.task = ["optim.lr=3e-4", "trainer.devices=2"]
        cfg.hydra.run.dir = "outputs/${now:%H-%M-%S}"  # what a process would otherwise resolve for itself
    instance = HydraConfig.instance()
    previous = instance.cfg
    instance.set_config(cfg)
    # The sweep's own command line: relaunching it would start the whole sweep again.
    monkeypatch.setattr(sys, "argv", ["lightning_llm/__main__.py", "-m", "optim.lr=1e-3,3e-4"])
    yield output_dir
    instance.cfg = previous


def test_single_job_argv_relaunches_only_this_job_into_its_folder(multirun_job: Path):
    argv = strategy.single_job_argv()
    assert argv == ["lightning_llm/__main__.py", "optim.lr=3e-4", "trainer.devices=2"]
    assert HydraConfig.get().run.dir == str(multirun_job)


def test_lightnings_launcher_then_starts_the_job_in_the_same_run_folder(multirun_job: Path, monkeypatch):
    from lightning.fabric.strategies.launchers.subprocess_script import _hydra_subprocess_cmd

    monkeypatch.setattr(sys, "argv", strategy.single_job_argv())
    command, cwd = _hydra_subprocess_cmd(local_rank=1)
    assert "optim.lr=1e-3,3e-4" not in command
    assert command[-5:] == [
        "optim.lr=3e-4",
        "trainer.devices=2",
        f'hydra.run.dir="{multirun_job}"',
        "hydra.job.name=train_ddp_process_1",
        "hydra.output_subdir=null",
    ]
    assert cwd == str(multirun_job.parents[1])


def test_single_job_argv_outside_hydra_is_none():
    if HydraConfig.initialized():
        pytest.skip("HydraConfig is set by another test in this process")
    assert strategy.single_job_argv() is None


def test_float8_is_refused_where_it_cannot_run_and_emulated_on_a_cpu(make_cfg, monkeypatch):
    cfg = make_cfg("trainer.accelerator=auto", "parallel.float8=true", tiny=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _resolve(cfg)[1].float8  # a CPU: emulated
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda *_: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (8, 0))
    with pytest.raises(
        ConfigError, match=r"parallel.float8=true needs a GPU of compute capability 8.9\+ .* has 8.0"
    ):
        _resolve(cfg)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda *_: (9, 0))
    assert _resolve(cfg)[1].float8
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *_: None)
    with pytest.raises(ConfigError, match=r"needs torchao: pip install 'lightning-llm\[float8\]'"):
        _resolve(cfg)
