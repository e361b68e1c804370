"""``python -m lightning_llm.search hparams_search=<name> [overrides]``: a resumable hyperparameter search.

``conf/hparams_search/<name>.yaml`` sets ``optimized_metric`` (a key of summary.json) and a ``search`` node:
the study (``study_name``, ``direction``, ``n_trials``, ``dir``, ``storage``), the Optuna ``sampler`` and
``pruner``, and ``params``, a map from an override key to its range::

    optim.lr: {type: float, low: 1.0e-4, high: 1.0e-2, log: true}
    model.n_layer: {type: int, low: 2, high: 6}
    optim: {type: categorical, choices: [adam, adamw]}

Each trial composes the config from your overrides plus its own, trains in this process into
``<search.dir>/trial_<n>/`` (a normal run folder) and tells the study its metric. After every validation the
metric is reported to the pruner, which stops trials that fall behind the others at the same step. A trial
whose config is invalid, or that fails, is recorded with its error and the search goes on; one that diverges
is pruned (the sampler then treats its region as the worst seen).

The study lives in SQLite (``<search.dir>/study.db`` unless ``search.storage`` names another database), so the
same command run again continues it: finished trials are kept and count towards ``n_trials``. A running trial
beats a heartbeat into the study (Optuna's, every ``search.heartbeat_interval`` seconds); one whose heartbeat
stopped for ``search.grace_period`` seconds belonged to a search process that died (killed, preempted, its
machine gone: searches on several machines can share one database), and Optuna's
``RetryHeartbeatStaleTrialCallback`` marks it failed and queues it again with the same parameters, into the
same run folder, where it continues from its last checkpoint. Trials are single-process runs.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import math
import re
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn
from omegaconf import DictConfig, OmegaConf, open_dict

try:
    import optuna
    from optuna.storages import RetryHeartbeatStaleTrialCallback
    from optuna.trial import TrialState
except ModuleNotFoundError as error:
    raise ModuleNotFoundError(f"{error}: the search needs it: pip install 'lightning-llm[search]'") from error

from lightning_llm import cli, config, plugins, registry, run_folder
from lightning_llm.atomic import write_text
from lightning_llm.config import ConfigError
from lightning_llm.errors import ctrl_c_exits, first_line, refuse
from lightning_llm.report import TRIAL_END_FILE

log = logging.getLogger("lightning_llm.search")

GROUP = "hparams_search"
SETTINGS = (
    "study_name",
    "direction",
    "n_trials",
    "dir",
    "storage",
    "heartbeat_interval",
    "grace_period",
    "sampler",
    "pruner",
    "params",
)
SAMPLERS = {"tpe": "TPESampler", "random": "RandomSampler", "qmc": "QMCSampler", "cmaes": "CmaEsSampler"}
PRUNERS = {
    "none": "NopPruner",
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
    "threshold": "ThresholdPruner",
}
PARAM_FIELDS = {
    "float": ("low", "high", "log", "step"),
    "int": ("low", "high", "log", "step"),
    "categorical": ("choices",),
}
KEY = re.compile(r"[A-Za-z_]\w*(\.\w+)*")
BARE = re.compile(r"[A-Za-z_][\w./-]*")  # a string Hydra reads back as the same string without quotes


# --------------------------------------------------------------------------- the search space


@dataclasses.dataclass(frozen=True)
class Param:
    """One searched config key: a float or int range (log-scaled or stepped) or a list of choices."""

    key: str
    type: str
    low: float = 0
    high: float = 0
    log: bool = False
    step: float | None = None
    choices: tuple = ()

    def suggest(self, trial: optuna.Trial) -> Any:
        if self.type == "categorical":
            return trial.suggest_categorical(self.key, list(self.choices))
        if self.type == "int":
            return trial.suggest_int(
                self.key, int(self.low), int(self.high), step=int(self.step or 1), log=self.log
            )
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def corners(self) -> list[Any]:
        """The values that bound the space: every value between them is of the same kind."""
        return list(self.choices) if self.type == "categorical" else [self.low, self.high]


def parse_param(key: str, spec: Any) -> Param:
    """Validate one ``search.params`` entry; a bad one raises ConfigError naming the key."""
    where = f"search.params.{key}"
    if not KEY.fullmatch(key) or key.split(".")[0] in ("hydra", "search"):
        raise ConfigError(f"{where}: not a config key to search over (e.g. optim.lr, model.n_layer, optim)")
    if not isinstance(spec, dict) or spec.get("type") not in PARAM_FIELDS:
        raise ConfigError(f"{where}: needs 'type: float', 'type: int' or 'type: categorical' (got {spec!r})")
    kind = spec["type"]
    unknown = sorted(set(spec) - {"type", *PARAM_FIELDS[kind]})
    if unknown:
        raise ConfigError(
            f"{where}: {kind} has no field {unknown[0]!r}; its fields: {', '.join(PARAM_FIELDS[kind])}"
        )
    if kind == "categorical":
        choices = spec.get("choices")
        if not isinstance(choices, list) or not choices:
            raise ConfigError(f"{where}: categorical needs a non-empty list 'choices'")
        for choice in choices:
            if choice is not None and not isinstance(choice, bool | int | float | str):
                raise ConfigError(f"{where}: choice {choice!r} is not a number, string, boolean or null")
        return Param(key, kind, choices=tuple(choices))
    number = (int,) if kind == "int" else (int, float)
    for field in ("low", "high"):
        value = spec.get(field)
        if isinstance(value, bool) or not isinstance(value, number):
            raise ConfigError(
                f"{where}.{field}={value!r}: {kind} needs {'an integer' if kind == 'int' else 'a number'}"
            )
    low, high, log_scale, step = spec["low"], spec["high"], bool(spec.get("log", False)), spec.get("step")
    if low > high:
        raise ConfigError(f"{where}: low={low} is above high={high}")
    if log_scale and low <= 0:
        raise ConfigError(f"{where}: log scale needs low > 0 (got {low})")
    if step is not None and (isinstance(step, bool) or not isinstance(step, number) or step <= 0):
        raise ConfigError(
            f"{where}.step={step!r}: needs a positive {'integer' if kind == 'int' else 'number'}"
        )
    if step is not None and log_scale and step != 1:
        raise ConfigError(f"{where}: choose log or step, not both (Optuna samples either)")
    if step is not None and not math.isclose((high - low) / step, round((high - low) / step), abs_tol=1e-9):
        raise ConfigError(  # Optuna would shrink the range to the steps that fit, with only a warning
            f"{where}: high - low = {high - low} is not a whole number of steps of {step}; set the range "
            f"whole (search.params={{{key}: {{type: ..., low: ..., high: ..., step: ...}}}}) so that it is"
        )
    return Param(key, kind, float(low), float(high), log_scale, step)


def as_override(key: str, value: Any) -> str:
    """``key=value`` that Hydra parses back to exactly ``value``."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = str(value).lower()
    elif isinstance(value, int | float):
        text = repr(value)
    elif BARE.fullmatch(value) and value.lower() not in ("true", "false", "null", "nan", "inf"):
        text = value
    else:
        text = "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return f"{key}={text}"


# --------------------------------------------------------------------------- settings


@dataclasses.dataclass
class Settings:
    """The ``search`` node, checked: what to optimise, where the study lives, how to sample and prune."""

    metric: str
    study_name: str
    direction: str
    n_trials: int
    dir: Path
    storage: str
    heartbeat_interval: int  # seconds between a running trial's heartbeats
    grace_period: int  # seconds without a heartbeat after which a running trial counts as dead
    sampler: dict[str, Any]
    pruner: dict[str, Any]
    params: dict[str, Param]

    @classmethod
    def from_config(cls, cfg: DictConfig) -> Settings:
        if "search" not in cfg:
            raise ConfigError(
                f"no search node: choose a search space, e.g. {GROUP}=gpt_lr (conf/{GROUP}/*.yaml)"
            )
        node = OmegaConf.to_container(cfg.search, resolve=True)
        unknown = sorted(set(node) - set(SETTINGS))
        if unknown:
            raise ConfigError(f"search.{unknown[0]} is not a search setting; they are: {', '.join(SETTINGS)}")
        name = "search" if node.get("study_name") is None else str(node["study_name"])  # "": refused below
        if not re.fullmatch(r"[\w][\w.-]*", name) or ".." in name:  # it names the default search folder
            raise ConfigError(f"search.study_name={name!r}: a plain name (letters, digits, _ . -)")
        direction = node.get("direction", "minimize")
        if direction not in ("minimize", "maximize"):
            raise ConfigError(f"search.direction={direction!r}: choose minimize or maximize")
        n_trials = node.get("n_trials", 20)
        if isinstance(n_trials, bool) or not isinstance(n_trials, int) or n_trials < 1:
            raise ConfigError(f"search.n_trials={n_trials!r}: needs a positive integer")
        params = node.get("params") or {}
        if not isinstance(params, dict) or not params:
            raise ConfigError(
                "search.params is empty: map config keys to ranges, e.g. optim.lr: {type: float, ...}"
            )
        heartbeat = _positive_int(node, "heartbeat_interval", 60)
        grace = _positive_int(node, "grace_period", 2 * heartbeat)
        if grace < heartbeat:  # a live trial between two heartbeats would look dead to another process
            raise ConfigError(
                f"search.grace_period={grace}: must be at least search.heartbeat_interval={heartbeat} "
                f"(twice it, {2 * heartbeat}, by default), or a live trial looks dead between its heartbeats"
            )
        # relative to where the search starts, so the same command run again finds the same study
        folder = Path(node.get("dir") or f"multirun/search/{name}").resolve()
        return cls(
            metric=str(cfg.get("optimized_metric") or "val_loss"),
            study_name=name,
            direction=direction,
            n_trials=n_trials,
            dir=folder,
            storage=str(node.get("storage") or f"sqlite:///{folder / 'study.db'}"),
            heartbeat_interval=heartbeat,
            grace_period=grace,
            sampler=_spec(node.get("sampler"), "tpe"),
            pruner=_spec(node.get("pruner"), "none"),
            params={key: parse_param(str(key), spec) for key, spec in params.items()},
        )

    @property
    def monitor(self) -> str | None:
        """The validation metric logged during training that is ``metric`` (``val_loss`` -> ``val/loss``)."""
        stage, _, name = self.metric.partition("_")
        return f"val/{name}" if stage == "val" and name else None


def _check_search_folder(folder: Path) -> None:
    """Refuse a search.dir that holds what a search does not write (a run's folder, a project's): its trial
    folders, study and best.yaml would be written among the user's files."""
    from lightning_llm.atomic import TEMP_MARKER
    from lightning_llm.report import MANIFEST, OUTPUT_FILES

    if not folder.is_dir():
        return
    own = {
        "study.db",
        "study.db-journal",
        "study.db-wal",
        "study.db-shm",
        "best.yaml",
        MANIFEST,
        *OUTPUT_FILES,
    }
    foreign = sorted(
        entry.name
        for entry in folder.iterdir()
        if entry.name.split(TEMP_MARKER)[0] not in own and not re.fullmatch(r"trial_\d+", entry.name)
    )
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
        raise ConfigError(
            f"search.dir={folder} holds files a search does not write ({shown}); choose a new or empty "
            "search.dir, or the folder of this search"
        )


_OPTUNA_TABLES = frozenset(("studies", "trials", "trial_params", "trial_values", "version_info"))


def _check_not_a_users_database(storage: str) -> None:
    """Refuse an existing SQLite file that holds tables but not Optuna's: Optuna would add its tables to the
    user's database (another program's, or notes kept as study.db)."""
    import sqlite3

    if storage.startswith("sqlite://") and storage.removeprefix("sqlite://").strip("/") in ("", ":memory:"):
        raise ConfigError(
            f"search.storage={storage}: an in-memory database ends with the process, and a search continues "
            "from its database; name a file (sqlite:////abs/path/study.db) or a server"
        )
    if not storage.startswith("sqlite:///"):
        return  # a server database is named on purpose, with its own permissions
    path = Path(storage.removeprefix("sqlite:///"))
    if path.is_symlink() or (path.is_file() and path.stat().st_nlink > 1):  # a hard link: another's database
        raise ConfigError(f"search.storage: {path} is a link; a study is kept in a file of its own")
    if not path.is_file() or path.stat().st_size == 0:
        return
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as database:
            tables = {row[0] for row in database.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    except sqlite3.DatabaseError as error:
        raise ConfigError(
            f"search.storage: {path} is not an SQLite database ({error}); choose another search.dir"
        ) from None
    if tables and not tables >= _OPTUNA_TABLES:
        named = ", ".join(sorted(tables)[:5])
        raise ConfigError(
            f"search.storage: {path} is another program's database (tables: {named}); choose another "
            "search.dir, or search.storage"
        )


def _positive_int(node: dict[str, Any], key: str, default: int) -> int:
    value = node.get(key)
    value = default if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_SECONDS:
        raise ConfigError(f"search.{key}={value!r}: needs an integer from 1 to {MAX_SECONDS:,} (seconds)")
    return value


MAX_SECONDS = 7 * 24 * 3600  # a heartbeat or grace period of a week; Python's timers overflow past ~9e9 s


def _spec(node: Any, default: str) -> dict[str, Any]:
    if node is None or isinstance(node, str):
        return {"name": node or default}
    return dict(node)


def build_sampler(spec: dict[str, Any], seed_offset: int) -> optuna.samplers.BaseSampler:
    """The sampler; a resumed search shifts its seed by the trials already run, so it does not replay the
    first process's random draws."""
    spec = dict(spec)
    if (seed := spec.get("seed")) is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ConfigError(f"search.sampler.seed={seed!r}: needs a whole number >= 0, or null (random)")
        spec["seed"] = seed + seed_offset
    return _build(optuna.samplers, "sampler", SAMPLERS, spec)


def build_pruner(spec: dict[str, Any]) -> optuna.pruners.BasePruner:
    return _build(optuna.pruners, "pruner", PRUNERS, spec)


def _build(module: Any, kind: str, table: dict[str, str], spec: dict[str, Any]) -> Any:
    spec = dict(spec)
    name = spec.pop("name", None)
    if name not in table:
        raise ConfigError(f"search.{kind}.name={name!r}: choose one of: {', '.join(table)}")
    try:
        return getattr(module, table[name])(**spec)
    except (TypeError, ValueError, ImportError) as error:
        raise ConfigError(f"search.{kind} ({name}): {error}") from None


# --------------------------------------------------------------------------- composing configs


def compose(overrides: list[str]) -> DictConfig:
    """The composed config, with the defaults that follow a model/objective choice (as the CLI adds them)."""
    return cli.compose_config([*overrides, *cli.plugin_defaults(overrides)])


def trial_config(overrides: list[str], settings: Settings) -> DictConfig:
    """A trial's run config: the search node left out (train() never sees it), W&B runs grouped by study."""
    cfg = compose(overrides)
    with open_dict(cfg):
        cfg.pop("search", None)
        if cfg.logger.get("name") == "wandb" and not cfg.logger.get("group"):
            cfg.logger.group = settings.study_name
    return cfg


def with_search_settings(overrides: list[str]) -> list[str]:
    """``search.<setting>=v`` as ``++search.<setting>=v``: every search setting (``SETTINGS``) may be given
    whether or not the chosen preset writes it out (a preset of one's own rarely names grace_period).
    ``search.params={...}`` replaces the preset's ranges (``++`` alone would merge into them)."""
    nested = "|".join(name for name in SETTINGS if name != "params")  # a range's name holds dots itself
    given = []
    for o in overrides:
        if o.startswith("search.params="):
            given += ["++search.params=null", f"++{o}"]
        elif re.match(rf"search\.(?:{nested})(?:\.[^=]*)?=", o):
            given.append(f"++{o}")
        else:
            given.append(o)
    return given


def with_search_group(overrides: list[str]) -> list[str]:
    """``hparams_search=x`` appended to the defaults list when conf/config.yaml does not name the group."""
    listed = any(
        isinstance(entry, DictConfig) and any(str(k).split()[-1] == GROUP for k in entry)
        for entry in OmegaConf.load(Path(config.config_dir()) / "config.yaml").defaults
    )
    return [f"+{o}" if not listed and o.startswith(f"{GROUP}=") else o for o in overrides]


def check_space(settings: Settings, overrides: list[str]) -> None:
    """Compose and check the config at each end of every range and at every choice, so a misspelt key or
    plugin name fails before any trial runs, naming the key. Values are checked one at a time: a
    combination that cannot work (model.n_head not dividing model.n_embd) costs its trial, not the search."""
    for param in settings.params.values():
        for value in param.corners():
            value = int(value) if param.type == "int" else value
            try:
                cfg = trial_config([*overrides, as_override(param.key, value)], settings)
                config.check(cfg, together=False)
            except (ConfigError, registry.PluginError) as error:
                raise ConfigError(f"search.params.{param.key}={value}: {error}") from None


def check_single_process(cfg: DictConfig) -> None:
    from lightning_llm.distributed import strategy

    processes = strategy.world_size(OmegaConf.to_container(cfg.trainer, resolve=True))
    if processes > 1:
        raise ConfigError(
            f"trainer.devices x trainer.num_nodes = {processes}: the search trains each trial in its own "
            "process as a single-device run; for multi-device trials use a Hydra multirun sweep"
        )


# --------------------------------------------------------------------------- the study


def open_study(settings: Settings) -> optuna.Study:
    pruner = build_pruner(settings.pruner)
    build_sampler(settings.sampler, seed_offset=0)  # a bad sampler spec fails before anything is written
    existed = settings.dir.exists()
    _check_search_folder(settings.dir)
    _check_not_a_users_database(settings.storage)
    try:
        settings.dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise ConfigError(
            f"search.dir={settings.dir}: cannot create it ({error.strerror or error})"
        ) from None
    try:
        storage = optuna.storages.RDBStorage(
            settings.storage,
            heartbeat_interval=settings.heartbeat_interval,
            grace_period=settings.grace_period,
            # A dead trial is queued again with its parameters (and, through retry_of, its run folder).
            heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
        )
    except Exception as error:  # SQLAlchemy's and the database drivers' many errors: one line, naming it
        if not existed:  # made just now, and still empty: leave nothing behind
            with contextlib.suppress(OSError):
                settings.dir.rmdir()
        shown = _without_password(settings.storage)
        raise ConfigError(
            f"search.storage={shown}: cannot open it as an Optuna storage ({first_line(error)}); give an "
            "SQLAlchemy URL such as sqlite:////abs/path/study.db"
        ) from None
    study = optuna.create_study(
        storage=storage,
        study_name=settings.study_name,
        direction=settings.direction,
        load_if_exists=True,
    )
    stored = study.direction.name.lower()
    if stored != settings.direction:
        if not existed:  # made just now for a study kept elsewhere (search.storage): leave nothing behind
            with contextlib.suppress(OSError):
                settings.dir.rmdir()
        raise ConfigError(
            f"study {settings.study_name!r} in {settings.storage} was created to {stored}; "
            f"search.direction={settings.direction} (use another study_name)"
        )
    _check_live_trials(study, settings)
    study.sampler = build_sampler(settings.sampler, seed_offset=len(study.trials))
    study.pruner = pruner
    return study


def _check_live_trials(study: optuna.Study, settings: Settings) -> None:
    """Refuse a grace period shorter than the one the study started with while one of its trials runs in a
    live process (its folder's lock is held): Optuna would take the trial for dead, fail it in that process
    and retry it here. Shorter is fine once the process is gone (a restart after a crash, not waiting)."""
    started = study.user_attrs.get("grace_period")
    if started is None:
        study.set_user_attr("grace_period", settings.grace_period)
    if not isinstance(started, int) or settings.grace_period >= started:
        return
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        folder = settings.dir / _trial_folder_name(trial.user_attrs.get("run_dir"), trial.number)
        if owner := run_folder.holder(folder):
            raise ConfigError(
                f"search.grace_period={settings.grace_period}: trial {trial.number} is running ({owner}) and "
                f"the study started with {started} s; a shorter wait takes it for dead: use {started}"
            )


REFUSED = "refused"  # a trial's user attribute: its folder was refused before it trained (why)


def counted(study: optuna.Study) -> int:
    """Trials that count towards n_trials: running or finished, less those retried after their process
    died and those refused before they trained (the search stopped there; once the folder is fixed, it runs
    as many trials as were asked for)."""
    trials = study.get_trials(deepcopy=False)
    retried = {RetryHeartbeatStaleTrialCallback.retried_trial_number(t) for t in trials}
    return sum(
        t.state != TrialState.WAITING and t.number not in retried and REFUSED not in t.user_attrs
        for t in trials
    )


# --------------------------------------------------------------------------- one trial


class Diverged(optuna.TrialPruned):
    """The monitored metric became NaN or infinite: the trial is pruned (no point in training on)."""


class Pruning(L.Callback):
    """After each validation during fit, reports ``monitor`` at the optimizer step to the trial, and stops the
    run when the pruner says so. The ``optuna.TrialPruned`` it raises leaves ``trainer.fit`` through
    Lightning's exception path (callbacks' ``on_exception``, loggers finalized as failed, teardown), then
    train()'s ``finally`` finishes the W&B run."""

    def __init__(self, trial: optuna.Trial, monitor: str | None) -> None:
        self.trial, self.monitor = trial, monitor

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING or self.monitor is None:
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None:
            if self.monitor != "val/perplexity":  # summary.json derives val_perplexity from val_loss
                # not logged at a validation, so not in summary.json either: stop at the first validation
                # of the first trial rather than after a whole trial
                logged = sorted(k.replace("/", "_") for k in trainer.callback_metrics if k.startswith("val/"))
                name = self.monitor.replace("/", "_")
                raise ConfigError(f"optimized_metric={name} is not logged by validation; it logs: {logged}")
            return
        value, step = float(value), trainer.global_step
        self.trial.report(value, step)  # NaN too: the TPE sampler ranks a NaN trial below every other
        if not math.isfinite(value):
            raise Diverged(f"diverged: {self.monitor}={value} at step {step}")
        if self.trial.should_prune():
            raise optuna.TrialPruned(f"pruned: {self.monitor}={value:.4g} at step {step}")


def objective(trial: optuna.Trial, settings: Settings, overrides: list[str], stop: list[str]) -> float:
    """Train one trial into its run folder and return its metric (Optuna's objective: raising
    ``TrialPruned`` prunes it, a nan fails it; the note says why). A failure every later trial would meet
    too (its folder, the metric) fails it and puts the reason in ``stop``, for the search to end there."""
    try:
        params = [as_override(p.key, p.suggest(trial)) for p in settings.params.values()]
    except ValueError as error:  # a queued trial's value Optuna refuses (a nan in a study handed over)
        note = f"its queued parameters are not valid: {first_line(error)}"
        trial.set_user_attr("note", note)
        log.warning("trial %d failed: %s", trial.number, note)
        return math.nan
    trials = trial.study.get_trials(deepcopy=False)
    retried = RetryHeartbeatStaleTrialCallback.retried_trial_number(trials[trial.number])  # its process died
    earlier = trials[retried].user_attrs.get("run_dir") if retried is not None else None
    run_dir = settings.dir / _trial_folder_name(earlier, trial.number)
    trial.set_user_attr("run_dir", str(run_dir))
    if retried is not None:
        trial.set_user_attr("retry_of", retried)
    log.info("trial %d: %s -> %s", trial.number, " ".join(params), run_dir)
    # a retried trial continues from the last checkpoint in its run folder
    resume = ["ckpt_path=auto"] if retried is not None else []
    # The CLI's rules for a run folder (run_folder): a trial folder holding another study's run or the
    # user's files stops the search, since every later trial would meet the same.
    hint = "it is another search's trial: choose another search.dir, or that search's search.study_name"
    owner = _trial_owner(settings)
    try:
        run_folder.check_launch(run_dir, resuming=retried is not None, key="search.dir", resume_hint=hint)
        _check_trial_owner(run_dir, owner, hint)
        run_folder.lock(run_dir)
    except (ConfigError, ValueError) as error:  # nothing trained: the trial does not count (``counted``)
        trial.set_user_attr(REFUSED, f"refused before training: {first_line(error)}")
        trial.set_user_attr("note", f"refused before training: {first_line(error)}")
        stop.append(str(error))
        return math.nan
    write_text(run_dir / TRIAL_OWNER_FILE, json.dumps(owner) + "\n")
    try:
        state, value, note = _train(trial, settings, [*overrides, *params, *resume], run_dir)
    finally:
        run_folder.release(run_dir)
    if note:
        trial.set_user_attr("note", note)
    if state == TrialState.PRUNED:
        raise optuna.TrialPruned(note)
    if state == TrialState.FAIL:
        if note.startswith("optimized_metric="):
            stop.append(note)  # every trial would fail the same way: stop the search
        else:
            log.warning("trial %d failed: %s", trial.number, note)
        return math.nan  # Optuna records a nan as a failed trial, without printing a traceback of its own
    return value


def _without_password(url: str) -> str:
    """A storage URL as it may be printed or written down: ``user:***@``, never the password."""
    return re.sub(r"://([^:/@]*):[^@]*@", r"://\1:***@", url)


TRIAL_OWNER_FILE = "search_trial.json"  # the study and storage a trial folder belongs to


def _trial_owner(settings: Settings) -> dict[str, str]:
    """The study a trial folder belongs to: its name and storage (the default one by its place in
    ``search.dir``, so a moved search folder is still its own; a server's URL without its password)."""
    default = settings.storage == f"sqlite:///{settings.dir / 'study.db'}"
    storage = "study.db" if default else _without_password(settings.storage)
    return {"study": settings.study_name, "storage": storage}


def _check_trial_owner(run_dir: Path, owner: dict[str, str], hint: str) -> None:
    """Refuse a trial folder another study wrote (two searches sharing one search.dir on different storages:
    one's retry resumed over the other's finished trial)."""
    path = run_dir / TRIAL_OWNER_FILE
    if not (path.exists() or path.is_symlink()):
        return  # a new folder, or a trial of a search from before folders recorded their study
    try:
        if not path.is_file() or path.stat().st_size > 4096:
            raise ValueError("not a small file")
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        recorded = None
    if recorded != owner:
        raise ConfigError(
            f"search.dir: {run_dir} is a trial of another study ({path.name}: {recorded}); {hint}"
        )


def _trial_folder_name(earlier: object, number: int) -> str:
    """The folder in ``search.dir`` a trial trains in: a retried trial's own (by its name: the study records
    it, and the search folder may have moved since), else ``trial_<number>``. Only a ``trial_<n>`` name is
    taken from the study, which anyone may hand over: never a path elsewhere."""
    name = Path(str(earlier)).name if isinstance(earlier, str) else ""
    return name if re.fullmatch(r"trial_\d+", name) else f"trial_{number}"


def _train(
    trial: optuna.Trial, settings: Settings, overrides: list[str], run_dir: Path
) -> tuple[TrialState, float | None, str]:
    """Train one trial: (how it ended, its metric when complete, a note when not)."""
    from lightning_llm.train import train  # deferred: the search space is checked before torch work starts

    try:
        cfg = trial_config(overrides, settings)
        _write_run_config(run_dir, cfg, overrides)
        with _log_file(run_dir / "train.log"):
            summary, _ = train(cfg, run_dir=run_dir, callbacks=[Pruning(trial, settings.monitor)])
    except optuna.TrialPruned as pruned:
        _write_trial_end(run_dir, "pruned", str(pruned))
        return TrialState.PRUNED, None, str(pruned)
    except Exception as error:  # a bad combination or a failed run costs this trial, not the search
        if not isinstance(error, ValueError | FileNotFoundError):  # not a config or input mistake: show where
            log.warning("trial %d raised", trial.number, exc_info=True)
        _write_trial_end(run_dir, "failed", first_line(error))
        return TrialState.FAIL, None, first_line(error)
    trial.set_user_attr("step", summary.get("step"))
    value = summary.get(settings.metric)
    if isinstance(value, bool) or not isinstance(value, int | float):
        numeric = [k for k, v in summary.items() if isinstance(v, int | float)]
        return TrialState.FAIL, None, f"optimized_metric={settings.metric} is not in summary.json: {numeric}"
    if not math.isfinite(value):
        return TrialState.FAIL, None, f"diverged: {settings.metric}={value}"
    return TrialState.COMPLETE, float(value), ""


def _write_trial_end(run_dir: Path, state: str, note: str) -> None:
    """``trial_end.json``: how a trial that wrote no summary.json ended, for ``report`` (pruned, failed)."""
    if run_dir.is_dir():
        write_text(run_dir / TRIAL_END_FILE, json.dumps({"state": state, "note": note}) + "\n")


def _write_run_config(run_dir: Path, cfg: DictConfig, overrides: list[str]) -> None:
    """``.hydra/config.yaml`` and ``overrides.yaml``, as a run started by the CLI has them."""
    folder = run_dir / ".hydra"
    folder.mkdir(parents=True, exist_ok=True)
    OmegaConf.save(cfg, folder / "config.yaml", resolve=True)
    OmegaConf.save(OmegaConf.create(overrides), folder / "overrides.yaml")


@contextlib.contextmanager
def _log_file(path: Path) -> Iterator[None]:
    """The trial's log lines also go to ``<run dir>/train.log``, as under the CLI."""
    handler = logging.FileHandler(path)
    handler.setFormatter(logging.Formatter("[%(asctime)s][%(name)s][%(levelname)s] - %(message)s"))
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()


# --------------------------------------------------------------------------- the whole search


def search(overrides: list[str]) -> optuna.Study:
    """Run (or continue) the search the overrides describe; returns the study."""
    # Optuna marks heartbeats and the stale-trial callback experimental: they are what this search relies on.
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)
    overrides = with_search_settings(with_search_group(list(overrides)))
    base = compose(overrides)
    settings = Settings.from_config(base)
    check_single_process(base)
    check_space(settings, overrides)
    check_best_file(settings)
    study = open_study(settings)
    _check_same_training(study, settings, overrides)
    optuna.storages.fail_stale_trials(study)  # before counting: a dead process's trial is queued again
    stop: list[str] = []  # why a trial stopped the search (Optuna would print a traceback of an exception)
    run = functools.partial(objective, settings=settings, overrides=overrides, stop=stop)
    while counted(study) < settings.n_trials:  # one at a time: other processes may be adding trials too
        study.optimize(run, n_trials=1)
        if stop:
            raise ConfigError(stop[0])
    print(table(study, settings))
    if running := [t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))]:
        print(  # a process that died less than grace_period ago looks alive: its trial is retried after that
            f"trials {running} are still running, in another process or one that stopped less than "
            f"{settings.grace_period} s ago: run the search again later to continue a stopped one"
        )
    best = write_best(study, settings)
    if best:
        value, overrides_text = f"{best['value']:.6g}", " ".join(best["params_overrides"])
        print(f"best: trial {best['trial']}, {settings.metric}={value}: {overrides_text}")
        print(f"      {settings.dir / 'best.yaml'}")
    else:
        print("best: none (no trial completed)")
    return study


def table(study: optuna.Study, settings: Settings) -> str:
    """One line per trial: number, state, value, last step, params, and how it ended when not complete."""
    keys = list(settings.params)
    rows = [["trial", "state", settings.metric, "step", *keys, "note"]]
    retried = {t.user_attrs.get("retry_of"): t.number for t in study.trials if "retry_of" in t.user_attrs}
    for t in study.trials:
        step = t.user_attrs.get("step", t.last_step)
        note = t.user_attrs.get("note", "")
        if t.number in retried:
            note = f"interrupted; retried as trial {retried[t.number]}"
        elif "retry_of" in t.user_attrs:
            note = f"resumed trial {t.user_attrs['retry_of']} {note}".strip()
        value = t.value if t.value is not None else ""
        row = [
            t.number,
            t.state.name,
            _fmt(value),
            step if step is not None else "",
            *(_fmt(t.params.get(k, "")) for k in keys),
            note,
        ]
        rows.append([str(cell) for cell in row])
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join(
        "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=False)) + "  " + row[-1]
        for row in rows
    )


def _fmt(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def check_best_file(settings: Settings) -> None:
    """``best.yaml`` is rewritten after every search of the same study; one that is not (another study's,
    the user's, a link) is never replaced."""
    path = settings.dir / "best.yaml"
    if not (path.exists() or path.is_symlink()):
        return
    try:
        study = None if path.is_symlink() else OmegaConf.load(path).get("study")
    except Exception:  # whatever the YAML reader raises: not a best.yaml this search wrote
        study = None
    if study != settings.study_name:
        raise ConfigError(
            f"search.dir={settings.dir} holds a best.yaml that search {settings.study_name!r} did not write; "
            "choose another search.dir (or search.study_name of the search that wrote it)"
        )


def _check_same_training(study: optuna.Study, settings: Settings, overrides: list[str]) -> None:
    """A study's trials are trained with the overrides it started with: continued with others (another
    trainer.max_steps), its trials would be ranked against trials trained otherwise, and best.yaml would
    train the best one again in a way it never was."""
    given = [o for o in overrides if not o.lstrip("+~").startswith((GROUP, "search."))]  # not the search's
    started = study.user_attrs.get("overrides")
    if started is None:
        study.set_user_attr("overrides", given)
    elif sorted(map(str, started)) != sorted(given):
        raise ConfigError(
            f"search.dir={settings.dir}: study {settings.study_name!r} was started with the overrides "
            f"[{' '.join(map(str, started))}], not [{' '.join(given)}]; its trials are ranked against each "
            "other: continue it with the same overrides, or start another search (another search.dir)"
        )


def write_best(study: optuna.Study, settings: Settings) -> dict[str, Any] | None:
    """``<search.dir>/best.yaml``: the best trial's value, params, and the overrides that train it again (the
    study's own, ``_check_same_training``)."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    best = study.best_trial
    params_overrides = [as_override(k, best.params[k]) for k in settings.params if k in best.params]
    kept = list(study.user_attrs["overrides"])
    best_info = {
        "study": settings.study_name,
        "metric": settings.metric,
        "direction": settings.direction,
        "value": best.value,
        "trial": best.number,
        "run_dir": best.user_attrs.get("run_dir"),
        "params": dict(best.params),
        "params_overrides": params_overrides,
        # python -m lightning_llm <these> trains the best configuration again
        "overrides": [*kept, *params_overrides],
    }
    write_text(settings.dir / "best.yaml", OmegaConf.to_yaml(OmegaConf.create(best_info)))
    return best_info


@ctrl_c_exits
def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    if {"-h", "--help"} & set(argv):
        print(__doc__)
        return
    # Lightning 2.6 with torch >= 2.10 warns about its own pytree use on every run; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    logging.basicConfig(level=logging.INFO, format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s")
    plugins.load()
    config.store_schemas()
    try:
        if flags := [arg for arg in argv if arg.startswith("-")]:
            raise ConfigError(
                f"{flags[0]}: python -m lightning_llm.search takes overrides only (--help); add your own "
                "search spaces with hydra.searchpath=[file:///abs/dir] (dir/hparams_search/<name>.yaml)"
            )
        cli.parse_overrides(argv)
        study = search(argv)
    except (ConfigError, registry.PluginError) as error:
        refuse(error)
    if not study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)):
        sys.exit("error: no trial completed; each failed trial's note (above; its trial_end.json) says why")


if __name__ == "__main__":
    sys.exit(main())
