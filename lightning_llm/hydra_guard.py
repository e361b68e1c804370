"""What the ``hydra`` config node may name: no code chosen by a config.

Hydra instantiates ``_target_`` import paths in its own node (``hydra.callbacks``, ``hydra.launcher``,
``hydra.sweeper``) and hands ``hydra.job_logging`` / ``hydra.hydra_logging`` to ``logging.config.dictConfig``,
which calls any ``()`` factory and any ``class`` it names, and imports any ``ext://`` path. So an override or
a config file could run arbitrary code before a run starts (``+hydra.callbacks.x._target_=torch.load`` on a
crafted file). ``check_hydra_node`` allows only what installed packages ship: each launcher's and sweeper's
own targets (Hydra's plugins, selected by name as ``hydra/launcher=joblib``), Python's logging classes and
the standard streams; everything else that selects code is refused, naming the key. What the shipped
configs hold may also be an interpolation; anywhere else in those sections an interpolation is refused, since
``${oc.decode:...}`` or a reference to another key could bring a ``_target_`` or an ``ext://`` path past this
check. ``hydra.job.env_set`` may set only the variables of the thread, GPU, communication, tokenizer and W&B
libraries (``PYTHONPATH``, ``BROWSER`` or ``LD_PRELOAD`` would run code in the job or its workers), and
``hydra.searchpath`` may name only folders (``file://``: ``pkg://`` imports a module). Hydra's own files
stay in the run folder: ``hydra.output_subdir`` is a relative path, log files are the shipped ones, appended
to, and ``task_name`` (the log file's and run folder's name) is a plain name.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lightning_llm.config import ConfigError
from lightning_llm.errors import first_line

CODE_KEYS = ("_target_", "_partial_", "_args_", "()")  # Hydra's instantiate and logging's factory key
_LOGGING_NODES = ("job_logging", "hydra_logging")
_SHIPPED_GROUPS = ("launcher", "sweeper", *_LOGGING_NODES)  # Hydra selects these by name
_CODE_SECTIONS = ("callbacks", *_SHIPPED_GROUPS)  # the nodes Hydra instantiates or hands to logging
# The log's own classes: to the console and to its file in the run folder (a filename is the shipped one).
_LOGGING_CLASSES = (
    "logging.StreamHandler",
    "logging.FileHandler",
    "logging.NullHandler",
    "logging.handlers.RotatingFileHandler",
    "logging.handlers.TimedRotatingFileHandler",
    "logging.handlers.WatchedFileHandler",
    "logging.Formatter",
    "logging.Filter",
)
_CLOCK = re.compile(r"\$\{now:[^${}]*\}")  # Hydra's clock resolver
_JOB_NUMBER = "${hydra.job.num}"
# Names of variables that point a library at code or files to load or write (NCCL_NET_PLUGIN,
# CUDA_INJECTION64_PATH, HF_HOME, WANDB_DIR, NCCL_DEBUG_FILE, ...)
_ENV_LOADS = re.compile(
    r"PLUGIN|INJECTION|PATH|DIR|FILE|HOME|LIB|PRELOAD|CACHE|CONFIG|EXEC|CMD|SHELL|PROGRAM"
)
_ENV_LIBRARIES = "OpenMP, MKL, OpenBLAS, NumExpr, CUDA, NCCL, Gloo, tokenizers, Hugging Face and W&B"
_ENV_NAME = re.compile(r"(OMP|MKL|OPENBLAS|NUMEXPR|KMP|CUDA|NCCL|GLOO|TOKENIZERS|HF|WANDB)_[A-Z0-9_]+")
_PLAIN_NAME = re.compile(r"[\w-][\w.-]*")
_RELATIVE_PATH = re.compile(r"[\w.-]+(/[\w.-]+)*")
_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")


def check_hydra_node(node: Any) -> None:
    """Refuse anything in the composed ``hydra`` node (a DictConfig or plain dict) that would select code or
    write outside the run folder, other than what Hydra and the installed launcher and sweeper plugins ship;
    raises ``ConfigError`` naming the key."""
    plain = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    shipped = shipped_values()
    for path, key, value in _items(plain, "hydra"):
        section = path.split(".")[1] if path.count(".") else ""
        if key in CODE_KEYS and (path, value) not in shipped:
            raise ConfigError(
                f"{path}={value}: a config cannot select code; Hydra's launcher and sweeper are chosen by "
                "name (e.g. hydra/launcher=joblib) and lightning_llm's parts by registry name (optim=adamw)"
            )
        if section in _CODE_SECTIONS and _interpolates(value) and (path, value) not in shipped:
            raise ConfigError(
                f"{path}={value}: an interpolation here could bring in code or a path from elsewhere; give "
                "the value itself"
            )
        if section in _LOGGING_NODES:
            _check_logging(path, key, value, shipped)
        folder = section == "launcher" and key.endswith(("folder", "dir")) and value is not None
        if folder and (path, value) not in shipped:  # submitit writes pickles there and reads them back
            raise ConfigError(
                f"{path}={value}: a launcher's folders stay where it puts them (in the sweep folder)"
            )
    for key in ("run", "sweep"):
        folder = (plain.get(key) or {}).get("dir")
        if isinstance(folder, str):
            check_run_folder_value(f"hydra.{key}.dir", folder.replace("${task_name}", ""))
    job = plain.get("job") or {}
    for name in job.get("env_set") or {}:
        if not _ENV_NAME.fullmatch(str(name)) or _ENV_LOADS.search(str(name)):
            raise ConfigError(
                f"hydra.job.env_set.{name}: only the thread, device and verbosity settings of "
                f"{_ENV_LIBRARIES} may be set for a job (a path, a plugin or a library to load, or another "
                "variable such as PYTHONPATH, can make it run code)"
            )
    for entry in plain.get("searchpath") or []:
        check_search_path(str(entry), "hydra.searchpath")
    subdir = plain.get("output_subdir")
    if subdir is not None and not is_plain_relative_path(str(subdir)):
        raise ConfigError(
            f"hydra.output_subdir={subdir}: Hydra's files go in a folder of the run folder; give a relative "
            "path without '.' or '..' (default .hydra), or null for none"
        )
    job_folder = (plain.get("sweep") or {}).get("subdir")
    if job_folder is not None and job_folder != _JOB_NUMBER and not is_plain_relative_path(str(job_folder)):
        raise ConfigError(
            f"hydra.sweep.subdir={job_folder}: each job's folder is inside hydra.sweep.dir; give a relative "
            f"path without '.' or '..', or {_JOB_NUMBER} (the default)"
        )
    for key in (plain.get("sweeper") or {}).get("params") or {}:
        if str(key).lstrip("+~").startswith("hydra"):
            raise ConfigError(
                f"hydra.sweeper.params.{key}: a sweep varies the run's settings, not Hydra's (each job's "
                "hydra node would escape these checks)"
            )


def check_search_path(entry: str, key: str) -> None:
    """A ``hydra.searchpath`` entry must be a folder (``file://``): ``pkg://`` imports the module it names."""
    if not entry.startswith("file://") or _interpolates(entry):
        raise ConfigError(
            f"{key}: {entry!r} is not a folder; give presets' folders as file:///abs/dir (pkg:// would "
            "import a module)"
        )


def check_names(cfg: Any) -> None:
    """``task_name`` and ``hydra.job.name`` (the run's log file, ``<job name>.log``, and a part of the default
    run folder) must be plain names, so that Hydra writes nothing outside the run folder."""
    for key in ("task_name", "hydra.job.name"):
        try:
            value = OmegaConf.select(cfg, key, default=None)
        except OmegaConfBaseException as error:  # ${task_name} after ~task_name
            raise ConfigError(f"{key}: {first_line(error)}") from None
        if value is not None and not _PLAIN_NAME.fullmatch(str(value)):
            raise ConfigError(
                f"{key}={value!r}: a name for the run's log file and folder: letters, digits, '_', '-' and "
                "'.', not starting with '.'"
            )


def is_plain_relative_path(value: str) -> bool:
    return bool(_RELATIVE_PATH.fullmatch(value)) and not {".", ".."} & set(value.split("/"))


def check_run_folder_value(key: str, value: str) -> None:
    """``hydra.run.dir`` / ``hydra.sweep.dir`` as given: the folder must be known before Hydra writes into it
    (it is claimed first), so no interpolation but the clock's (``${now:...}``: a new folder)."""
    if _interpolates(_CLOCK.sub("", value)):
        raise ConfigError(
            f"{key}={value}: give the folder itself; only ${{now:...}} may be interpolated in it (the "
            "folder is checked before Hydra writes into it)"
        )


def _check_logging(path: str, key: str, value: Any, shipped: frozenset[tuple[str, Any]]) -> None:
    if key == "class" and (path, value) not in shipped and str(value) not in _LOGGING_CLASSES:
        raise ConfigError(
            f"{path}={value}: a log handler, formatter or filter is one of {', '.join(_LOGGING_CLASSES)} "
            "(others send the log elsewhere, or import what they name)"
        )
    if key == ".":  # logging's setattr after building: baseFilename would send the log to any file
        raise ConfigError(f"{path}: logging's '.' (attributes set after building) is refused")
    if isinstance(value, str) and value.startswith("ext://") and value not in _STREAMS:
        raise ConfigError(f"{path}={value}: only {' and '.join(_STREAMS)} may be named with ext://")
    if key == "filename" and (path, value) not in shipped:
        raise ConfigError(
            f"{path}={value}: the run's log file is the one Hydra writes in the run folder "
            "(<run dir>/<task_name>.log); a log handler cannot write elsewhere"
        )
    if key == "mode" and value != "a":
        raise ConfigError(f"{path}={value}: log files are appended to (mode a), never truncated")


def _interpolates(value: Any) -> bool:
    return isinstance(value, str) and "${" in value


def shipped_values() -> frozenset[tuple[str, Any]]:
    """``(key path, value)`` of every entry of the launcher, sweeper and logging configs that Hydra and its
    installed plugins ship (structured configs in Hydra's ConfigStore, config files in their packages) or
    conf/hydra/ holds, e.g.
    ``("hydra.launcher._target_", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher")``.
    Read afresh each time (a few ms): Hydra registers its plugins' configs when it first scans them."""
    import hydra
    import hydra_plugins

    from lightning_llm.config import config_dir

    store = ConfigStore.instance()
    # the folders of config files: conf/, Hydra's own (its logging configs), each installed plugin's
    roots = [Path(config_dir()), Path(hydra.__file__).parent / "conf"]
    roots += [conf for folder in hydra_plugins.__path__ for conf in Path(folder).glob("*/conf")]
    found = set()
    for group in _SHIPPED_GROUPS:
        names = store.list(f"hydra/{group}") if group in store.list("hydra") else []
        nodes = [store.load(f"hydra/{group}/{name}").node for name in names]
        files = (file for root in roots for file in sorted((root / "hydra" / group).glob("*.yaml")))
        nodes += [OmegaConf.load(file) for file in files]
        for node in nodes:
            plain = OmegaConf.to_container(node, resolve=False)
            leaves = _items(plain, f"hydra.{group}")
            found.update((path, value) for path, _, value in leaves if not isinstance(value, dict | list))
    return frozenset(found)


def _items(node: Any, where: str) -> Iterator[tuple[str, str, Any]]:
    """``(key path, key, value)`` for every entry of a plain nested dict/list."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}"
            yield path, str(key), value
            yield from _items(value, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _items(value, f"{where}[{index}]")
