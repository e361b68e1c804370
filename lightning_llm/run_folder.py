"""The run folder: one run per folder, written by one launch at a time, resumed only from its own checkpoints.

A run folder (``hydra.run.dir``, or each job's folder of a sweep) holds what a run writes: ``.hydra/``,
``<task>.log``, ``tokenizer.json``, ``checkpoints/``, ``csv/``, ``wandb/``, ``summary.json``... The rules:

- a fresh launch goes into a new or empty folder, or one holding only what an earlier launch wrote before it
  failed (no checkpoint, no summary): a folder that holds a run is continued with ``ckpt_path=auto`` or
  left alone, and a folder holding anything else (``/etc``, a project folder) is never written into;
- one live launch per folder: ``LOCK_FILE`` is locked with ``fcntl.lockf`` for the launch's lifetime (the
  kernel, or NFS's lock manager, releases it when the process dies, so a stale lock cannot block a restart);
  the file records the owner's pid and host for the message a second launch gets;
- cleanup deletes only the exact names the checkpoint writers give unfinished work, inside ``checkpoints/``
  and the SLURM requeue checkpoints, never anything else;
- ``ckpt_path=auto`` resumes from the usable checkpoint holding the most steps, warns about each one it
  passes over, and refuses (naming them) when checkpoints exist but none is usable: never a silent restart.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import shutil
import socket
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict

from lightning_llm.atomic import TEMP_MARKER, atomic_write
from lightning_llm.checkpoint import (
    CHECKPOINT_DIR,
    DCP_METADATA,
    LOCK_FILE,
    META_FILE,
    check_resumable,
    is_complete,
    is_sharded,
    is_unfinished,
    survey_checkpoints,
    writer_pid,
)
from lightning_llm.config import ConfigError
from lightning_llm.report import MANIFEST as REPORT_MANIFEST
from lightning_llm.report import OUTPUT_FILES as REPORT_FILES

if TYPE_CHECKING:
    import lightning as L

    from lightning_llm.tokenizers.base import Tokenizer

log = logging.getLogger("lightning_llm")

LEDGER_LINES = 100  # launches the lock file remembers
LEDGER_BYTES = 64 * 1024  # the most of it ever read (100 lines take ~7 KB; the file is not trusted)
# What a run writes at the top of its folder (the loggers' folders, W&B's id, the samples and the summary);
# `*.log` (Hydra's job log) and `hpc_ckpt_<n>.ckpt` (Lightning's SLURM requeue saves) by pattern.
RUN_ENTRIES = {
    ".hydra",
    LOCK_FILE,
    "tokenizer.json",
    CHECKPOINT_DIR,
    "csv",
    "wandb",
    "wandb_run_id",
    "tensorboard",
    "lightning_logs",
    "samples.txt",
    "summary.json",
    "trial_end.json",  # how a search trial without a summary ended (lightning_llm.search)
    "search_trial.json",  # the study a search trial belongs to (lightning_llm.search)
    # a report of this one run, written into it by default (python -m lightning_llm.report <run>)
    *REPORT_FILES,
    REPORT_MANIFEST,
}
REQUEUE_GLOB = "hpc_ckpt_*"
# What a sweep writes at the top of its folder besides its jobs' folders: Hydra's record of the sweep,
# submitit's logs (the SLURM launcher's default submitit_folder) and a report of the sweep.
SWEEP_ENTRIES = {"multirun.yaml", ".submitit", *REPORT_FILES, REPORT_MANIFEST}

_held: dict[Path, IO[str]] = {}  # locks this process holds, by resolved folder: kept open until exit


class RunFolderError(ConfigError):
    """A run folder this launch must not write into; the message says why and what to do instead."""


# --------------------------------------------------------------------------- what a folder holds


def is_run_entry(name: str) -> bool:
    name = name.split(TEMP_MARKER)[0]  # what a killed atomic write of a run's file left
    return name in RUN_ENTRIES or name.endswith(".log") or (name.startswith("hpc_ckpt_") and ".ckpt" in name)


def foreign_entries(folder: Path) -> list[str]:
    """Names in ``folder`` that no run writes."""
    return sorted(entry.name for entry in folder.iterdir() if not is_run_entry(entry.name))


def run_evidence(folder: Path) -> str | None:
    """What shows that ``folder`` holds a run worth keeping (a checkpoint or a summary), or None."""
    if checkpoints := saved_checkpoints(folder):
        return f"{len(checkpoints)} checkpoint(s), e.g. {checkpoints[0].relative_to(folder)}"
    if (folder / "summary.json").exists():
        return "a finished run's summary.json"
    return None


def saved_checkpoints(folder: Path) -> list[Path]:
    """The complete checkpoints ``folder`` holds (files or sharded folders, requeue ones too)."""
    found = [*folder.glob(f"{CHECKPOINT_DIR}/*.ckpt"), *folder.glob(REQUEUE_GLOB)]
    return [path for path in found if not is_unfinished(path)]


# A resumed run's ``.hydra/`` files as they were before this launch, and its checkpoints then (keep_record)
_RECORD: dict[Path, bytes] = {}
_RECORD_CHECKPOINTS: set[tuple[Path, int]] = set()
MAX_RECORD_BYTES = 1 << 20  # Hydra writes a few KB per file


def keep_record(folder: str | Path) -> None:
    """Remember a run folder's ``.hydra/`` files (how its run was trained) before Hydra rewrites them for a
    resumed launch, so that a launch refused before it trains (``restore_record``) leaves them as they are."""
    _RECORD.clear()
    folder = Path(folder)
    for file in (folder / ".hydra").glob("*.yaml"):
        if file.is_file() and not file.is_symlink() and file.stat().st_size <= MAX_RECORD_BYTES:
            _RECORD[file] = file.read_bytes()
    _RECORD_CHECKPOINTS.clear()
    _RECORD_CHECKPOINTS.update(_checkpoint_versions(folder))


def restore_record(folder: str | Path) -> None:
    """Put back the ``.hydra/`` files ``keep_record`` saw, if the launch saved no checkpoint since (it was
    refused before it trained: the files Hydra wrote describe a run that never happened)."""
    mine = {file: content for file, content in _RECORD.items() if file.parent.parent == Path(folder)}
    if not mine or _checkpoint_versions(Path(folder)) != _RECORD_CHECKPOINTS:
        return
    for file, content in mine.items():
        with contextlib.suppress(OSError), atomic_write(file) as out:  # best effort: the refusal comes first
            out.write(content)


def _checkpoint_versions(folder: Path) -> set[tuple[Path, int]]:
    return {(path, path.stat().st_mtime_ns) for path in saved_checkpoints(folder)}


LINKS_OF_ITS_OWN = ("wandb",)  # W&B links its latest run and logs itself, and replaces those links
MAX_WALKED = 100_000  # entries a launch looks through for links (a run folder holds a few hundred)


def first_link(folder: Path) -> str | None:
    """The first link in ``folder`` or below it (its path relative to ``folder``; a hard link too: a file
    with another name elsewhere), outside the folders whose writers make links of their own: Hydra rewrites
    ``.hydra/*.yaml``, loggers their files, in place, and a link there would have them write over a file
    elsewhere. None when there is none."""
    walked = 0
    for root, dirs, files in os.walk(folder):
        here = Path(root)
        for name in sorted([*dirs, *files]):
            walked += 1
            entry = here / name
            if entry.is_symlink() or (name in files and entry.lstat().st_nlink > 1):
                return str(entry.relative_to(folder))
        if here == folder:  # looked at, not into
            dirs[:] = [name for name in dirs if name not in LINKS_OF_ITS_OWN]
        if walked > MAX_WALKED:
            raise RunFolderError(f"{folder}: holds more than {MAX_WALKED:,} entries; not a run folder")
    return None


def check_launch(
    folder: str | Path, resuming: bool, key: str = "hydra.run.dir", resume_hint: str | None = None
) -> None:
    """Refuse to launch into ``folder`` when it holds files that are not a run's, or (for a fresh launch,
    ``resuming`` false) a run that its first checkpoint would overwrite (``resume_hint`` replaces the advice
    to continue it with ckpt_path=auto, where that is not how)."""
    folder = Path(folder)
    if key != "hydra.run.dir" and folder.is_symlink():  # a job folder is made by the framework
        raise RunFolderError(
            f"{key}: the job folder {folder} is a link to elsewhere; a run writes only into its own folder"
        )
    if not folder.is_dir():
        return
    if link := first_link(folder):
        raise RunFolderError(
            f"{key}={folder}: {link} is a link; a run writes and cleans up only its own files, never "
            f"through a link to elsewhere: choose another {key}"
        )
    foreign = foreign_entries(folder)
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise RunFolderError(
            f"{key}={folder} holds files that are not a lightning_llm run ({shown}); a run writes only into "
            f"a new or empty folder: choose another {key}"
        )
    evidence = run_evidence(folder)
    if evidence and not resuming:
        raise RunFolderError(
            f"{key}={folder} already holds a run ({evidence}); "
            + (resume_hint or f"continue it with ckpt_path=auto, or choose a new {key} for a new run")
        )
    if evidence and resuming and not saved_checkpoints(folder):
        # ckpt_path=auto with nothing to resume starts afresh: over a finished run whose checkpoints were
        # deleted, with the default config, rewriting its summary, tokenizer and overrides
        raise RunFolderError(
            f"{key}={folder} holds a finished run ({evidence}) but no checkpoint to continue it from; "
            f"starting afresh would overwrite it: choose a new {key}"
        )
    # A launch that starts afresh writes tokenizer.json, samples.txt, checkpoints/...: files with those names
    # are an earlier launch's only if one claimed the folder (its ledger), else they are the user's.
    unclaimed = [
        name for name in sorted(os.listdir(folder)) if name != ".hydra" and not name.endswith(".log")
    ]
    if not evidence and unclaimed and not launch_pids(folder):
        raise RunFolderError(
            f"{key}={folder} holds {', '.join(unclaimed[:3])}, which no launch of lightning_llm wrote there "
            f"(it has no {LOCK_FILE} ledger); a run writes only into a new or empty folder: choose another "
            f"{key}"
        )


# --------------------------------------------------------------------------- one launch at a time


def lock(folder: str | Path) -> bool:
    """Hold ``folder``'s lock until this process exits; False when it held it already.
    Raises ``RunFolderError`` naming the owner when another live process holds it."""
    folder = Path(folder).resolve()
    if folder in _held:
        return False
    try:
        folder.mkdir(parents=True, exist_ok=True)
        # O_NOFOLLOW: a link in the lock's place never has a file elsewhere written to
        descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    except OSError as error:
        raise RunFolderError(
            f"run folder {folder}: cannot create it or its {LOCK_FILE} ({error.strerror or error}); choose "
            "another hydra.run.dir, or fix the folder"
        ) from None
    file = os.fdopen(descriptor, "r+", encoding="utf-8")
    try:
        fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        lines = file.read(LEDGER_BYTES).splitlines()
        file.close()
        raise _in_use(folder, lines[-1] if lines else "another process") from None
    # The ledger of launches: the last line is the live one; the pids let cleanup tell this run's unfinished
    # writes (named with their writer's pid) from anything else.
    earlier = file.read(LEDGER_BYTES).splitlines()[-(LEDGER_LINES - 1) :]
    file.seek(0)
    file.truncate()
    now = time.strftime("%Y-%m-%d %H:%M:%S")
    file.write(
        "".join(f"{line}\n" for line in earlier)
        + f"pid {os.getpid()} on {socket.gethostname()} since {now}\n"
    )
    file.flush()
    _held[folder] = file
    return True


def check_not_in_use(folder: str | Path) -> None:
    """Refuse ``folder`` while a live launch holds it (before reading what that launch is rewriting)."""
    if (owner := holder(folder)) is not None:
        raise _in_use(Path(folder).resolve(), owner)


def _in_use(folder: Path, owner: str) -> RunFolderError:
    return RunFolderError(
        f"run folder {folder} is in use by {owner}; wait for that launch to end, or choose another "
        "hydra.run.dir"
    )


def holder(folder: str | Path) -> str | None:
    """The ledger line of the live launch holding ``folder``'s lock in another process (``pid ... on host
    since ...``), or None when none does. Probes the lock without keeping it."""
    folder = Path(folder).resolve()
    if folder in _held:  # this process's own: closing a probe of it would release it (fcntl's rule)
        return None
    try:
        descriptor = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_NOFOLLOW)
    except OSError:  # no lock file: no launch ever held it
        return None
    with os.fdopen(descriptor, "r+", encoding="utf-8") as file:
        try:
            fcntl.lockf(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            lines = file.read(LEDGER_BYTES).splitlines()
            return lines[-1] if lines else "another process"
        fcntl.lockf(file, fcntl.LOCK_UN)
    return None


def release(folder: str | Path) -> None:
    """Give up ``folder``'s lock before this process exits (a search's finished trial)."""
    file = _held.pop(Path(folder).resolve(), None)
    if file is not None:
        file.close()


def launch_pids(folder: Path) -> set[int]:
    """The pids of the launches ``folder``'s ledger records (empty when it has none)."""
    path = folder / LOCK_FILE
    held = _held.get(Path(folder).resolve())
    if held is not None:  # read through the held file: closing any other descriptor of it drops the lock
        held.seek(0)
        lines = held.read(LEDGER_BYTES).splitlines()
    elif path.is_symlink() or not path.is_file():
        return set()
    else:
        try:
            with open(path, encoding="utf-8", errors="replace") as file:
                lines = file.read(LEDGER_BYTES).splitlines()
        except OSError:
            return set()
    return {
        int(words[1])
        for words in map(str.split, lines)
        if len(words) > 1 and words[0] == "pid" and words[1].isdigit()
    }


# A process's rank, and the size of the launch it belongs to, as torchrun, SLURM, LSF and Lightning's launcher
# set them (Lightning reads each rank variable with int(), spaces and all)
_RANKS = (
    ("RANK", "WORLD_SIZE"),
    ("SLURM_PROCID", "SLURM_NTASKS"),
    ("LOCAL_RANK", "WORLD_SIZE"),
    ("JSM_NAMESPACE_RANK", "JSM_NAMESPACE_SIZE"),
)


def _number(variable: str) -> int | None:
    try:
        return int(os.environ.get(variable, ""))
    except ValueError:
        return None


def is_launching_rank() -> bool:
    """Whether this process is the one that owns the launch: global rank 0 by the environment that torchrun,
    SLURM or Lightning's launcher sets (the processes Lightning starts for ranks 1.. have ``LOCAL_RANK``). A
    rank only counts with the launch size beside it: a stray ``RANK=1`` in a shell would otherwise turn off
    every check of the run folder (``check_rank_variables`` refuses it)."""
    for rank, size in _RANKS:
        value, processes = _number(rank), _number(size)
        if value is not None and processes is not None and processes > 1:
            return value == 0
    return True


def planned_processes(trainer: Any) -> int | None:
    """The processes a run's trainer settings ask for (devices x nodes), None where they leave it to the
    machine (``devices: auto``)."""
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes", 1)
    if isinstance(devices, str) and devices.strip().isdigit():
        devices = int(devices)
    if not isinstance(devices, int) or isinstance(devices, bool) or devices < 1:
        devices = len(devices) if isinstance(devices, list | ListConfig) else None
    return devices * nodes if devices and isinstance(nodes, int) else None


def check_rank_variables(processes: int | None = None) -> None:
    """Refuse a rank other than 0 that no launch of several processes explains (a variable left in a shell):
    none beside it, or a run of ``processes`` = 1 (its trainer's devices x nodes). Lightning would run as
    that rank, with no logs, or as rank 0 while no rank owned the run folder."""
    for rank, size in _RANKS:
        value, launched = _number(rank), _number(size)
        several = launched is not None and launched > 1
        if value is not None and value != 0 and (not several or processes == 1):
            why = f"{size}={os.environ.get(size, 'unset')}" if not several else "this run is one process"
            raise RunFolderError(
                f"{rank}={os.environ[rank].strip()} is set in the environment, but no launch of several "
                f"processes explains it ({why}): unset {rank} for a single-process run, or start the "
                "processes with torchrun, srun or Lightning"
            )


def check_master_address(trainer: Any) -> None:
    """Refuse a ``MASTER_ADDR`` that is not this machine for a run whose processes Lightning starts here
    (several devices on one node, no launcher's variables): the other ranks would wait out torch's 30-minute
    timeout trying to reach it. A variable left in a shell from a cluster job does that."""
    address, processes = os.environ.get("MASTER_ADDR", "").strip(), planned_processes(trainer)
    if not address or not processes or processes < 2 or trainer.get("num_nodes", 1) != 1:
        return
    if any(os.environ.get(size) for _, size in _RANKS):  # torchrun's, srun's: their address is theirs
        return
    try:
        for family, kind, _, _, where in socket.getaddrinfo(address, None, type=socket.SOCK_STREAM):
            with contextlib.suppress(OSError), socket.socket(family, kind) as probe:
                probe.bind((where[0], 0))  # only an address of this machine can be bound
                return
    except OSError:  # not resolvable
        pass
    raise RunFolderError(
        f"MASTER_ADDR={address} is set in the environment but is not an address of this machine: the "
        f"{processes} processes of this run start here and would wait 30 minutes to reach it; unset "
        "MASTER_ADDR (Lightning then uses 127.0.0.1)"
    )


# --------------------------------------------------------------------------- writing and cleaning up


def check_writable(run_dir: Path) -> None:
    """Create the run folder and make sure checkpoints can be written into it (without creating
    ``checkpoints/``: a run that fails before its first checkpoint leaves none)."""
    folder = run_dir / CHECKPOINT_DIR
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        problem = f"cannot create it: {error.strerror or error}"
    else:
        if folder.exists() and not folder.is_dir():
            problem = f"{folder} is a file, not a folder"
        elif not os.access(folder if folder.exists() else run_dir, os.W_OK | os.X_OK):
            problem = f"{folder if folder.exists() else run_dir} is not writable"
        else:
            return
    raise RunFolderError(
        f"run folder {run_dir}: {problem}; checkpoints cannot be written there. Choose another "
        "hydra.run.dir, or fix the folder"
    )


def remove_unfinished_checkpoints(run_dir: Path) -> None:
    """Delete what killed checkpoint writes left (temp files, partial folders): nothing reads them, they only
    take space, and Lightning numbers SLURM requeue checkpoints by the digits in ``hpc_ckpt_*`` names, so a
    leftover ``hpc_ckpt_2.ckpt.tmp-31337`` would make it look for ``hpc_ckpt_231337``. Only the exact names
    the writers give such leftovers (``is_unfinished``), named with the pid of a launch the folder's ledger
    records (``launch_pids``), are touched: a look-alike name that no launch of this run wrote stays."""
    pids = launch_pids(run_dir)
    if (run_dir / CHECKPOINT_DIR).is_symlink():
        return
    for path in [*run_dir.glob(REQUEUE_GLOB), *run_dir.glob(f"{CHECKPOINT_DIR}/*")]:
        if is_unfinished(path) and not path.is_symlink() and writer_pid(path) in pids:
            log.info("removing %s, left by an interrupted checkpoint write of this run", path)
            shutil.rmtree(path) if path.is_dir() else path.unlink(missing_ok=True)


# --------------------------------------------------------------------------- what to resume from


def start(
    cfg: DictConfig,
    run_dir: Path,
    trainer: L.Trainer,
    tokenizer: Tokenizer,
    data_settings: dict[str, object] | None = None,
) -> str | None:
    """A launch's first writes, in the order that keeps the folder safe: clear unfinished checkpoint writes,
    find and check the checkpoint to resume from (``resume_point``), then save the tokenizer, so a refused
    resume leaves the folder as it was. Returns the checkpoint to resume from, None for a fresh start."""
    if trainer.is_global_zero:
        remove_unfinished_checkpoints(run_dir)
    schedule = {  # what the learning-rate schedule is computed from
        "trainer.max_steps": cfg.trainer.get("max_steps"),
        "trainer.accumulate_grad_batches": cfg.trainer.get("accumulate_grad_batches"),
        "scheduler": OmegaConf.to_container(cfg.scheduler, resolve=True),
    }
    from lightning_llm.distributed.checkpointing import ShardedStrategy  # deferred: it imports Lightning

    sharded = isinstance(trainer.strategy, ShardedStrategy)
    model_config = OmegaConf.to_container(cfg.model, resolve=True)
    resume = resume_point(
        cfg.ckpt_path,
        run_dir,
        sharded,
        model_config,
        tokenizer.fingerprint(),
        schedule,
        restored_settings(cfg),
        data_settings,
        _max_steps(cfg),
        task_choices(cfg),
    )
    if trainer.is_global_zero:
        tokenizer.save(run_dir / "tokenizer.json")
    return resume


def restored_settings(cfg: DictConfig) -> dict[str, object]:
    """The settings whose state a checkpoint restores (the optimizer's, the data position's, the RNGs'): a
    resume may not change them (``checkpoint.check_resumable``)."""
    return {
        **{f"optim.{key}": value for key, value in OmegaConf.to_container(cfg.optim, resolve=True).items()},
        "data.block_size": cfg.data.get("block_size"),
        "seed": cfg.get("seed"),
    }


def check_resume_early(cfg: DictConfig, run_dir: str | Path) -> None:
    """What of ``resume_point`` needs nothing built (the model's settings, those the checkpoint restores),
    checked before Hydra rewrites the run's ``.hydra/`` for a launch that would then be refused, leaving the
    folder describing a run it does not hold. The tokenizer and strategy are checked when the run starts."""
    sharded = cfg.trainer.get("strategy") == "fsdp"  # the strategy resolve_run makes a ShardedStrategy
    found = resume_path(cfg.get("ckpt_path"), Path(run_dir), sharded_strategy=sharded)
    if found:  # a setting left unset may be decided by the data when the run starts: not compared here
        model_config = {
            k: v for k, v in OmegaConf.to_container(cfg.model, resolve=True).items() if v is not None
        }
        if model_config.get("init_from"):  # a fine-tuning's model is its source's (parts.with_source_model),
            model_config = {}  # not these settings: compared once the run has read the source
        restored = {k: v for k, v in restored_settings(cfg).items() if v is not None}
        check_resumable(
            found,
            model_config,
            None,
            restored=restored,
            partial=True,
            max_steps=_max_steps(cfg),
            choices=task_choices(cfg),
        )


def with_moved_source(cfg: DictConfig, run_dir: Path) -> DictConfig:
    """``cfg`` for a fine-tuning resumed after its ``model.init_from`` was moved or deleted: the checkpoint it
    resumes from holds every weight and its run folder the tokenizer, so that checkpoint stands in for the
    source (model, tokenizer and first weights, which the resume then replaces). An adapters-only run's
    checkpoint holds no base: its source stays needed. Other configs are returned as they are."""
    from lightning_llm.checkpoint import read_metadata

    init_from = cfg.model.get("init_from")
    if not init_from or Path(os.path.expanduser(str(init_from))).exists():
        return cfg
    found = resume_path(cfg.get("ckpt_path"), run_dir, sharded_strategy=cfg.trainer.get("strategy") == "fsdp")
    if found is None:  # a fresh start: the source is needed, and refused as missing where it is read
        return cfg
    if "frozen_fingerprint" in read_metadata(Path(found)):
        raise ConfigError(
            f"model.init_from={init_from}: no such run or file, and this run's checkpoints hold its LoRA "
            "adapters only (model.lora.adapters_only): resuming needs that base model where it was"
        )
    log.warning(
        "model.init_from=%s is gone; the run resumes from %s, which holds every weight, with the model and "
        "tokenizer it recorded",
        init_from,
        found,
    )
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model.init_from = str(found)
    return cfg


def task_choices(cfg: DictConfig) -> dict[str, str]:
    """The plugins that say what a run learns: a resume may not change them."""
    return {group: str(cfg[group].name) for group in ("objective", "data") if cfg.get(group)}


def _max_steps(cfg: DictConfig) -> int | None:
    """The run's ``trainer.max_steps``; None for no step limit (-1: epochs decide)."""
    max_steps = cfg.trainer.get("max_steps")
    return max_steps if isinstance(max_steps, int) and max_steps >= 0 else None


def resume_point(
    ckpt_path: str | None,
    run_dir: Path,
    sharded: bool,
    model_config: dict,
    tokenizer_fingerprint: str,
    schedule: dict | None = None,
    restored: dict | None = None,
    data_settings: dict | None = None,
    max_steps: int | None = None,
    choices: dict | None = None,
) -> str | None:
    """Where a launch resumes from (``resume_path``), checked against its model settings, tokenizer, restored
    and schedule settings (``checkpoint.check_resumable``) before anything is written to the run folder."""
    found = resume_path(ckpt_path, run_dir, sharded_strategy=sharded)
    if found:
        check_resumable(
            found,
            model_config,
            tokenizer_fingerprint,
            schedule,
            restored,
            data_settings=data_settings,
            max_steps=max_steps,
            choices=choices,
        )
    return found


def resume_path(ckpt_path: str | None, run_dir: Path, sharded_strategy: bool) -> str | None:
    """null: fresh; auto: the run folder's latest usable checkpoint (fresh when it has none at all); else a
    checkpoint file or sharded checkpoint folder, which must be usable. A sharded folder needs
    ``sharded_strategy`` (FSDP) to resume."""
    if ckpt_path in (None, "", "null"):
        return None
    found = _auto_resume_path(run_dir) if ckpt_path == "auto" else _given_resume_path(str(ckpt_path))
    if found is not None and is_sharded(found) and not sharded_strategy:
        raise ConfigError(
            f"ckpt_path={ckpt_path}: {found} is a sharded (FSDP) checkpoint; resume it with "
            "trainer.strategy=fsdp, or start a new run from its weights with model.init_from="
            f"{found} (python -m lightning_llm.checkpoint consolidate makes a single file of it)"
        )
    return str(found) if found is not None else None


def _auto_resume_path(run_dir: Path) -> Path | None:
    """The newest of the checkpoints folder's latest and Lightning's SLURM requeue checkpoints
    (``hpc_ckpt_*``), by the step they hold: a requeue checkpoint is newer when a kill cut the SIGTERM save
    short."""
    found, unusable = survey_checkpoints(run_dir / CHECKPOINT_DIR, also=sorted(run_dir.glob(REQUEUE_GLOB)))
    listed = "; ".join(f"{path}: {problem}" for path, problem in unusable.items())
    if found is None and unusable:
        raise ConfigError(
            f"ckpt_path=auto: no checkpoint in {run_dir} can be resumed from ({listed}); remove or repair "
            "them to start over, or pass ckpt_path=<file> explicitly"
        )
    for path, problem in unusable.items():
        log.warning("ckpt_path=auto: passing over %s (%s)", path, problem)
    if found is not None:
        log.info("ckpt_path=auto: resuming from %s", found)
    return found


def _given_resume_path(ckpt_path: str) -> Path:
    path = Path(ckpt_path).expanduser()
    if not path.exists():
        raise ConfigError(f"ckpt_path={ckpt_path}: no such checkpoint (use a path, auto, or null)")
    if not is_complete(path):
        what = (
            f"a folder without a sharded checkpoint's {META_FILE} and {DCP_METADATA}"
            if path.is_dir()
            else "not a whole checkpoint file (torch.save's zip archive): cut short, or not a checkpoint"
        )
        raise ConfigError(f"ckpt_path={ckpt_path}: {what}")
    return path
