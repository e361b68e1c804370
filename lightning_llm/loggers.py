"""Experiment loggers from ``cfg.logger``: wandb (offline without a key), csv, tensorboard or none.

Every run also keeps its metrics as CSV in the run folder, so curves are readable with no account.
"""

from __future__ import annotations

import netrc
import os
import re
import secrets
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import CSVLogger, Logger, WandbLogger

from lightning_llm.atomic import write_text
from lightning_llm.config import LOGGERS, ConfigError
from lightning_llm.run_folder import is_launching_rank

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
    if any(isinstance(logger, WandbLogger) for logger in loggers):
        import wandb

        if wandb.run is not None:
            wandb.finish()


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
    """Lightning's WandbLogger over a W&B run started here, by the process that launched the run (the others
    log nothing to W&B). Started with wandb's own ``init``: Lightning's passes ``anonymous=None``, and wandb
    warns on every run that the setting has no effect."""
    import wandb

    settings = wandb_settings(spec, run_dir)
    run = None
    if is_launching_rank():
        run = wandb.init(**settings, mode="offline" if wandb_offline(spec.get("offline")) else None)
        run.define_metric("trainer/global_step")  # the x-axis of every curve, as Lightning's own init sets
        run.define_metric("*", step_metric="trainer/global_step", step_sync=True)
    return WandbLogger(experiment=run, **{key: settings[key] for key in ("id", "project", "name")})


def wandb_settings(spec: dict[str, Any], run_dir: Path) -> dict[str, Any]:
    """``wandb.init``'s arguments for this run folder and ``cfg.logger``."""
    sweep, overrides = hydra_job()
    return {
        "id": wandb_run_id(run_dir),
        "resume": "allow",  # a resumed run (same run folder) continues its W&B run, not a new one
        "project": spec.get("project", "lightning_llm"),
        "entity": spec.get("entity"),
        # The jobs of one sweep share a group named after the sweep folder and carry their overrides as tags.
        "group": spec.get("group") or sweep,
        "tags": [*(spec.get("tags") or []), *(override[:64] for override in overrides)],  # W&B: <= 64 chars
        "name": f"{sweep}/{run_dir.name}" if sweep else run_dir.name,
        "dir": str(run_dir),
    }


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
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, secrets.token_hex(4) + "\n")  # like W&B's own ids; atomic: no process sees half
    with path.open("rb") as file:
        text = file.read(_MAX_ID_BYTES + 1).decode("utf-8", "replace").strip()
    if not _RUN_ID.fullmatch(text):
        raise ValueError(
            f"{path}: holds {text[:40]!r}, not a W&B run id (letters, digits, '_', '-'); remove the file to "
            "log this run to a new W&B run"
        )
    return text


_MAX_ID_BYTES = 64
_RUN_ID = re.compile(rf"[A-Za-z0-9_-]{{1,{_MAX_ID_BYTES}}}")


def _tensorboard(run_dir: Path) -> Logger:
    from lightning.pytorch.loggers import TensorBoardLogger

    try:
        return TensorBoardLogger(save_dir=str(run_dir), name="tensorboard", version="")
    except ModuleNotFoundError as error:
        raise ConfigError(
            "logger=tensorboard needs tensorboard: pip install tensorboard (or tensorboardX)"
        ) from error
