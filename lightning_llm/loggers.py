"""Experiment loggers from ``cfg.logger``: wandb (offline without a key), csv, tensorboard or none.

Every run also keeps its metrics as CSV in the run folder, so curves are readable with no account.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger

from lightning_llm.config import ConfigError

LOGGERS = ("wandb", "csv", "tensorboard", "none")


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

    return WandbLogger(
        project=spec.get("project", "lightning_llm"),
        entity=spec.get("entity"),
        group=spec.get("group"),
        tags=list(spec.get("tags") or []),
        name=run_dir.name,
        save_dir=str(run_dir),
        offline=wandb_offline(spec.get("offline")),
    )


def _tensorboard(run_dir: Path) -> Logger:
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    except ModuleNotFoundError as error:
        raise ConfigError(
            "logger=tensorboard needs tensorboard: pip install tensorboard (or tensorboardX)"
        ) from error
