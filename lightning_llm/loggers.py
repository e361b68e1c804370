"""Experiment loggers from ``cfg.logger``: wandb (offline without a key), csv, tensorboard or none.

Every run also keeps its metrics as CSV in the run folder, so curves are readable with no account.
"""

from __future__ import annotations

import netrc
import os
import secrets
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger

from lightning_llm.atomic import write_text
from lightning_llm.config import ConfigError

LOGGERS = ("wandb", "csv", "tensorboard", "none")
WANDB_ID_FILE = "wandb_run_id"


def build_loggers(spec: dict[str, Any], run_dir: Path) -> list[Logger]:
    """The local CSV logger plus the one ``spec["name"]`` selects."""
    name = spec.get("name", "none")
    if name not in LOGGERS:
        raise ConfigError(f"logger={name} is not a logger; choose one of: {', '.join(LOGGERS)}")
    # csv/version_<n>/metrics.csv: a resumed run adds a version instead of overwriting the earlier curves
    loggers: list[Logger] = [CSVLogger(save_dir=str(run_dir), name="csv")]
    if name == "wandb":
        loggers.append(_wandb(spec, run_dir))
    elif name == "tensorboard":
        loggers.append(_tensorboard(run_dir))
    return loggers


def finish_loggers(loggers: list[Logger]) -> None:
    """End the W&B run this process opened: otherwise the next ``train()`` in the same process (a test, an
    in-process sweep) would silently log into it."""
    for logger in loggers:
        run = getattr(logger, "_experiment", None)
        if run is not None and hasattr(run, "finish"):
            run.finish()


def wandb_offline(explicit: bool | None = None) -> bool:
    """Offline unless a W&B API key is configured (environment or ``wandb login``'s netrc entry)."""
    if explicit is not None:
        return explicit
    if os.environ.get("WANDB_MODE") in ("offline", "dryrun", "disabled"):
        return True
    if os.environ.get("WANDB_API_KEY"):
        return False
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is None
    except (FileNotFoundError, netrc.NetrcParseError):
        return True


def _wandb(spec: dict[str, Any], run_dir: Path) -> Logger:
    from lightning.pytorch.loggers import WandbLogger

    sweep, overrides = hydra_job()
    logger = WandbLogger(
        id=wandb_run_id(run_dir),
        resume="allow",  # a resumed run (same run folder) continues its W&B run instead of starting another
        project=spec.get("project", "lightning_llm"),
        entity=spec.get("entity"),
        # The jobs of one sweep share a group named after the sweep folder and carry their overrides as tags.
        group=spec.get("group") or sweep,
        tags=[*(spec.get("tags") or []), *(override[:64] for override in overrides)],  # W&B: tags <= 64 chars
        name=f"{sweep}/{run_dir.name}" if sweep else run_dir.name,
        save_dir=str(run_dir),
        offline=wandb_offline(spec.get("offline")),
    )
    # Lightning passes wandb.init anonymous=None, and wandb warns on every run that the setting has no effect:
    # dropped from Lightning's private init arguments, here only (pyproject bounds lightning below 2.7).
    init = getattr(logger, "_wandb_init", None)
    if isinstance(init, dict) and init.get("anonymous", False) is None:
        del init["anonymous"]
    return logger


def hydra_job() -> tuple[str | None, list[str]]:
    """(the sweep's name in a job of a Hydra multirun, else None; this job's command-line overrides)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    if not HydraConfig.initialized():
        return None, []
    hydra_cfg = HydraConfig.get()
    overrides = [str(override) for override in hydra_cfg.overrides.task]
    if hydra_cfg.mode == RunMode.MULTIRUN:
        return Path(hydra_cfg.sweep.dir).name, overrides
    return None, overrides


def wandb_run_id(run_dir: Path) -> str:
    """The W&B run id of this run folder: made on the first launch, read back by every resumed launch."""
    path = run_dir / WANDB_ID_FILE
    if path.is_file():
        return path.read_text().strip()
    run_id = secrets.token_hex(4)  # 8 characters of [0-9a-f], like W&B's own ids
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, run_id + "\n")  # atomic: processes of one run never see half an id
    return path.read_text().strip()


def _tensorboard(run_dir: Path) -> Logger:
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    except ModuleNotFoundError as error:
        raise ConfigError(
            "logger=tensorboard needs tensorboard: pip install tensorboard (or tensorboardX)"
        ) from error
