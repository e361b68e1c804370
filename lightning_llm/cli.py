"""``python -m lightning_llm [overrides]``: compose the config from conf/ with Hydra and train.

Before Hydra runs, the overrides are composed once and checked against the plugins' signatures, so a typo
(``model=gtp``, ``optim.lrr=1``, ``optim.lr=abc``) exits at once with one short message instead of a
traceback from deep inside a run.
"""

from __future__ import annotations

import argparse
import difflib
import functools
import inspect
import itertools
import os
import shutil
import sys
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import hydra
import yaml
from hydra import compose, initialize_config_dir
from hydra._internal.utils import get_args_parser
from hydra.core.global_hydra import GlobalHydra
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import HydraException, OverrideParseException
from omegaconf import DictConfig, ListConfig, OmegaConf, open_dict
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from lightning_llm import config, plugins, registry
from lightning_llm.config import ConfigError
from lightning_llm.errors import ctrl_c_exits, first_line, refuse
from lightning_llm.hydra_guard import (
    check_hydra_node,
    check_names,
    check_run_folder_value,
    check_search_path,
)

MAX_CHECKED_JOBS = 64  # a huge grid is still checked on its first 64 jobs; every job checks itself again


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    # Lightning 2.6 with torch >= 2.10 warns about its own pytree use on every run; nothing a user can act on.
    warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
    plugins.load()
    config.store_schemas()
    args = get_args_parser().parse_args(argv)
    informational = args.help or args.hydra_help or args.cfg or args.info or args.shell_completion
    if args.help:  # ours: Hydra's lists the plugins' internal schema groups and says nothing per setting
        try:
            print(help_text(args.overrides))
        except (ConfigError, registry.PluginError) as error:
            refuse(error)
        return
    try:
        check_flags(args)
        parse_overrides(args.overrides)
        for key in ("hydra.run.dir", "hydra.sweep.dir"):
            if (given := _given(key, args.overrides)) is not None:
                check_run_folder_value(key, given)
        if not informational and not args.multirun and (stored := resume_overrides(args.overrides)):
            print(f"[lightning_llm] resuming with the run's own settings: {' '.join(stored)}")
            args.overrides = [*stored, *args.overrides]
        added = plugin_defaults(args.overrides)
        if informational and not args.shell_completion:  # what Hydra would print, checked as a run's
            shown = [*args.overrides, *added, *search_path_overrides(args)]
            try:
                config.check_switch_settings(compose_config(shown))
            except OmegaConfBaseException as error:  # a value that does not resolve: ${nothere}, a cycle
                key = getattr(error, "full_key", None)
                raise ConfigError(f"{f'{key}: ' if key else ''}{first_line(error)}") from None
        if not informational:
            folders: dict[str, str] = {}
            job = [*args.overrides, *added, *search_path_overrides(args)]
            first = precheck(job, multirun=args.multirun, folders=folders)
            check_output_folder(args.overrides, multirun=args.multirun)
            resuming = first.get("ckpt_path") not in (None, "", "null")
            if args.multirun:  # each job claims its folder (train.run): checked here before Hydra writes
                check_sweep_folders(folders, resuming)
                if folders.get("launcher", "").endswith("SlurmLauncher") and not shutil.which("sbatch"):
                    raise ConfigError(
                        "hydra/launcher=slurm submits each job with sbatch, which this machine does not have "
                        "(not on PATH): launch the sweep where SLURM runs, or use hydra/launcher=joblib here"
                    )
            else:
                check_on_this_machine(first)
                claim_run_folder(folders.get("hydra.run.dir"), resuming, first)
    except (ConfigError, registry.PluginError) as error:
        refuse(error)
    if added:
        print(f"[lightning_llm] {' '.join(added)} (the defaults of your choice; override them as usual)")
    # Hydra's parser takes the overrides as one run of positional arguments: keep them together.
    flags = [arg for arg in argv if arg not in args.overrides]
    sys.argv = [sys.argv[0], *flags, *args.overrides, *added]
    # Outside trainer.fit; within it, Ctrl-C stops with a checkpoint (callbacks.preemption).
    ctrl_c_exits(_app, "interrupted (Ctrl-C) outside training; checkpoints already written are kept")()


@hydra.main(version_base="1.3", config_path=config.config_dir(), config_name="config")
def _app(cfg: DictConfig) -> float | None:
    from lightning_llm.train import run  # deferred: torch and Lightning load only when a run starts

    return run(cfg)


def help_text(overrides: list[str]) -> str:
    """``--help``: the config groups and their options, where each setting is explained, the other
    commands, and the config the overrides compose (its keys are the settings)."""
    parse_overrides(overrides)
    overrides = [*overrides, *plugin_defaults(overrides)]
    with initialize_config_dir(config.config_dir(), version_base="1.3"):
        loader = GlobalHydra.instance().config_loader()
        groups = {
            group: loader.get_group_options(group)
            for group in sorted(loader.list_groups(""))
            if group not in ("hydra", "schema")
        }
    composed = compose_config(overrides)
    lines = [
        "python -m lightning_llm [overrides]: compose conf/ with the overrides and train (README.md).",
        "",
        "Config groups (group=option):",
        *(f"  {group}: {', '.join(options)}" for group, options in groups.items()),
        "",
        "Settings are the keys of the config below (key=value). What each plugin's parameters mean, with",
        "the values a run would use: python -m lightning_llm.plugins <kind> <name> (e.g. optim adamw).",
        "Hydra's flags: -m (a sweep), --cfg job (print the composed config), --config-dir DIR (your own",
        "presets beside conf/'s), --hydra-help. Other commands, each with --help: python -m lightning_llm.",
        "{generate, evaluate, export, prepare, search, report, checkpoint, plugins}.",
        "",
        "== Config" + (f" (with {' '.join(overrides)})" if overrides else "") + " ==",
        OmegaConf.to_yaml(composed).rstrip(),
    ]
    return "\n".join(lines)


def check_flags(args: argparse.Namespace) -> None:
    """Refuse Hydra's flags that would read a config or a pickle from elsewhere than conf/: the primary
    config is lightning_llm's own (``--config-dir`` adds presets beside it, checked like any config), and
    ``--experimental-rerun`` unpickles a file."""
    if args.experimental_rerun:
        raise ConfigError("--experimental-rerun unpickles a file, which could run code; refused")
    for flag, value in (("--config-path", args.config_path), ("--config-name", args.config_name)):
        if value:
            raise ConfigError(
                f"{flag}={value}: the primary config is lightning_llm's conf/config.yaml; add your own "
                "presets with --config-dir DIR (e.g. DIR/experiment/mine.yaml, selected as experiment=mine)"
            )
    if args.config_dir and not Path(args.config_dir).expanduser().is_dir():
        raise ConfigError(
            f"--config-dir {args.config_dir}: not a folder; give the folder holding your presets "
            "(e.g. DIR/experiment/mine.yaml)"
        )


def parse_overrides(overrides: list[str]) -> None:
    """One line naming the override Hydra's grammar cannot parse, instead of its parser's traceback; and a
    ``hydra.searchpath`` that is not folders, refused before Hydra reads it (``pkg://`` imports a module)."""
    parser = OverridesParser.create()
    for override in overrides:
        try:
            (parsed,) = parser.parse_overrides([override])
            if parsed.key_or_group == "hydra.searchpath" and not parsed.is_delete():
                value = parsed.value()
                for entry in value if isinstance(value, list) else [value]:
                    check_search_path(str(entry), override)
        except OverrideParseException as error:
            caret = next((line for line in str(error).splitlines() if line.strip() == "^"), "")
            start = len(str(error).splitlines()[0]) - len(override)
            where = caret.index("^") - start if caret else -1
            at = f" at {override[where]!r} (character {where + 1})" if 0 <= where < len(override) else ""
            raise ConfigError(
                f"cannot parse the override {override!r}{at}: quote a value that holds special characters, "
                "e.g. \"data.paths=['~/corpus/*.txt']\" (grammar: "
                "https://hydra.cc/docs/advanced/override_grammar/basic)"
            ) from None


def resume_overrides(overrides: list[str]) -> list[str]:
    """A resumed launch (``ckpt_path`` set, ``hydra.run.dir`` an earlier run's folder) starts from the
    overrides that trained the run's latest checkpoint (stored in it), so nothing has to be typed again;
    those given now come after them and replace them key by key. Hydra's own keys and ``ckpt_path`` are never
    taken over. (A checkpoint from before overrides were stored: the run's ``.hydra/overrides.yaml``.)"""
    folder, ckpt_path = _given("hydra.run.dir", overrides), _given("ckpt_path", overrides)
    if ckpt_path in (None, "", "null") or not folder or "${" in folder:
        return []
    from lightning_llm import run_folder  # deferred: it imports torch, which --help does not need

    folder = Path(folder).expanduser()
    if run_folder.is_launching_rank():  # the other ranks start while the first holds the folder
        run_folder.check_not_in_use(folder)  # a live run rewrites its checkpoints
    checkpoint = _latest_checkpoint(folder)
    if checkpoint is None:
        return []  # nothing to resume (a launch that failed before its first checkpoint): a fresh start
    stored, source = _stored_overrides(checkpoint), checkpoint
    if stored is None:
        source = folder / ".hydra" / "overrides.yaml"
        if not source.is_file():
            return []
        try:
            if source.stat().st_size > 1 << 20 or not source.is_file():  # Hydra writes a few hundred bytes
                raise ValueError("not a file of the size Hydra writes")
            # PyYAML keeps an alias a reference (OmegaConf would expand a 400-byte alias bomb without end)
            stored = yaml.safe_load(source.read_text(encoding="utf-8"))
        except Exception as error:  # whatever the YAML reader raises, one line naming the file
            raise ConfigError(f"{source}: cannot read the run's overrides ({first_line(error)})") from None
    if not isinstance(stored, list) or not all(isinstance(o, str) for o in stored):
        raise ConfigError(f"{source}: expected a list of overrides, as Hydra writes it")
    parse_overrides(stored)
    given = {_override_key(o) for o in overrides}
    taken = [
        o
        for o in stored
        if (key := _override_key(o)) not in given and key != "ckpt_path" and not key.startswith("hydra")
    ]
    for override in taken:
        if "${" in override:  # resolved here: a folder handed over would read this machine's environment
            raise ConfigError(
                f"{source}: the run's override {override!r} is an interpolation, which is not taken over "
                f"from a file; give {_override_key(override)}=... on the command line"
            )
    return taken


def _latest_checkpoint(folder: Path) -> Path | None:
    from lightning_llm.checkpoint import latest_checkpoint  # deferred: it imports torch

    checkpoints = folder / "checkpoints"
    return latest_checkpoint(checkpoints) if checkpoints.is_dir() else None


def _stored_overrides(checkpoint: Path) -> object:
    """The launch overrides ``checkpoint`` records (None when it records none). Written by the launch
    that trained it, so a later launch refused before training (Hydra rewrites ``.hydra/`` first) cannot
    change what a resume starts from."""
    from lightning_llm.checkpoint import CheckpointError, read_metadata

    try:
        meta = read_metadata(checkpoint)
    except CheckpointError:  # an unreadable checkpoint: resuming says what is wrong with it
        return None
    return meta.get("overrides") if isinstance(meta, dict) else None


def _override_key(override: str) -> str:
    return OverridesParser.create().parse_override(override).key_or_group


def search_path_overrides(args: argparse.Namespace) -> list[str]:
    """``--config-dir DIR`` as the ``hydra.searchpath`` override that composing needs to see it (Hydra's
    own run adds it from the flag)."""
    if not args.config_dir:
        return []
    parsed = OverridesParser.create().parse_overrides(args.overrides)
    given = [o.value() for o in parsed if o.key_or_group == "hydra.searchpath"]
    paths = [*(given[-1] if given else []), f"file://{Path(args.config_dir).expanduser().resolve()}"]
    return [f"hydra.searchpath=[{','.join(paths)}]"]


def plugin_defaults(overrides: list[str]) -> list[str]:
    """Overrides that complete a choice: ``model=decoder`` alone also selects the decoder's default objective
    (``default_objective`` of the model class), and that objective's default data and metrics
    (``default_data``, ``default_metrics``), unless the overrides choose them. Only choices that differ
    from conf/config.yaml's are returned."""
    parsed = [
        o
        for o in OverridesParser.create().parse_overrides(overrides)
        if o.key_or_group in ("model", "objective", "data", "metrics") and not o.is_delete()
    ]
    chosen = {
        o.key_or_group: o.value()
        for o in parsed
        if not o.is_sweep_override() and o.value() is not None  # group=null: composing says what is wrong
    }
    swept = {o.key_or_group: list(o.sweep_string_iterator()) for o in parsed if o.is_discrete_sweep()}
    primary = _primary_choices()
    added = {}
    follows = (
        ("model", "objective", "default_objective"),
        ("objective", "data", "default_data"),
        ("objective", "metrics", "default_metrics"),
    )
    for leader, key, attribute in follows:
        if leader in swept and key not in chosen and key not in swept:
            chosen[key] = _shared_default(leader, swept[leader], key, attribute)
            if _as_override(chosen[key]) != _as_override(primary.get(key)):
                added[key] = _as_override(chosen[key])
        elif leader in chosen and key not in chosen and key not in swept:
            default = getattr(registry.get(leader, str(chosen[leader])).product(), attribute, None)
            if default:
                chosen[key] = default
                if _as_override(default) != _as_override(primary.get(key)):
                    added[key] = _as_override(default)
    return [f"{key}={value}" for key, value in added.items()]


def _shared_default(leader: str, options: list[str], key: str, attribute: str) -> object:
    """The default ``key`` every swept option of ``leader`` has; refused where they differ: the jobs of a
    sweep share every choice but the swept ones, so no one choice would fit them all."""
    product = {option: registry.get(leader, option).product() for option in options}
    defaults = {option: getattr(made, attribute, None) for option, made in product.items()}
    if len({_as_override(default) for default in defaults.values()}) > 1:
        each = ", ".join(f"{option}: {_as_override(default)}" for option, default in defaults.items())
        raise ConfigError(
            f"{leader}={','.join(options)}: each has its own default {key} ({each}), and a sweep's jobs "
            f"share every choice but the swept ones: choose {key}=... for all of them, or sweep each "
            f"{leader} on its own"
        )
    return next(iter(defaults.values()))


def _as_override(value: object) -> str:
    return f"[{','.join(map(str, value))}]" if isinstance(value, list | tuple | ListConfig) else str(value)


@functools.cache
def _primary_choices() -> dict[str, object]:
    """Group choices of conf/config.yaml's defaults list, and its metrics."""
    primary = OmegaConf.load(Path(config.config_dir()) / "config.yaml")
    choices = {k: v for entry in primary.defaults if isinstance(entry, DictConfig) for k, v in entry.items()}
    return {**choices, "metrics": list(primary.metrics)}


def precheck(
    overrides: list[str], multirun: bool = False, folders: dict[str, str] | None = None
) -> DictConfig:
    """Compose and check every job the overrides describe (up to MAX_CHECKED_JOBS); returns the first, and
    puts its run folder in ``folders`` (see ``compose_config``), or a sweep's folder and each job's."""
    first = None
    for number, job in enumerate(itertools.islice(_jobs(overrides, multirun), MAX_CHECKED_JOBS)):
        choices: dict[str, str] = {}
        if multirun:  # each job's folder, as Hydra names it: hydra.sweep.subdir is ${hydra.job.num}
            cfg = compose_config([*job, f"hydra.job.num={number}"], choices, folders, sweep=True)
        else:
            cfg = compose_config(job, choices, folders if first is None else None)
        try:
            config.check(cfg)
            check_known_keys(cfg, job, choices)
            check_plugin_values(cfg)
        except OmegaConfBaseException as error:  # a value that does not resolve: ${oc.env:UNSET}
            key = getattr(error, "full_key", None)
            raise ConfigError(f"{f'{key}: ' if key else ''}{first_line(error)}") from None
        first = first or cfg
    return first


def check_on_this_machine(cfg: DictConfig) -> None:
    """For a run that starts here and now (not a sweep's jobs, which may run elsewhere): what the run would
    otherwise refuse only after making its folder, the devices and precision this machine has and the
    tokenizer's own values, a model larger than its memory."""
    from lightning_llm import parts
    from lightning_llm.distributed.strategy import resolve_run

    resolve_run(cfg.trainer, cfg.parallel)
    try:
        tokenizer = parts.build(cfg, "tokenizer")
    except (ValueError, OSError) as error:
        raise ConfigError(first_line(error)) from None
    vocab_size = tokenizer.vocab_size if tokenizer.is_trained else cfg.tokenizer.get("vocab_size")
    parts.check_model_fits(cfg, vocab_size if isinstance(vocab_size, int) else 1)  # 1: left to the data


def check_plugin_values(cfg: DictConfig) -> None:
    """Build the optimizer and its schedule on one stand-in parameter, the objective on a stand-in tokenizer
    and the metrics, so their own checks of their values (``optim.lr`` > 0, a warmup longer than the run,
    ``objective.mask_prob`` in (0, 1), BLEU's ``n_gram``) refuse a bad one for every job of a sweep before
    the first one trains (a plugin checks its values when it is built, not from its signature)."""
    import torch  # deferred: --help does not need it

    from lightning_llm.optim import param_groups

    optim, optim_params = config.plugin_params("optim", cfg.optim)
    scheduler, scheduler_params = config.plugin_params("scheduler", cfg.scheduler)
    decay_embeddings = config.framework_params("optim", cfg.optim)["decay_embeddings"]
    max_steps = cfg.trainer.get("max_steps")
    total_steps = max_steps if isinstance(max_steps, int) and max_steps > 0 else 10**9  # unknown: no limit

    def optimizer_and_schedule() -> None:
        optimizer = optim(params=param_groups(torch.nn.Linear(2, 2), decay_embeddings), **optim_params)
        scheduler(optimizer=optimizer, total_steps=total_steps, **scheduler_params)

    checked = (("optim", optim, optim_params), ("scheduler", scheduler, scheduler_params))
    _refuse_values(optimizer_and_schedule, "", *checked)
    objective, objective_params = config.plugin_params("objective", cfg.objective)
    _refuse_values(
        lambda: objective(tokenizer=_NotBuiltYet("the tokenizer"), **objective_params),
        "",
        ("objective", objective, objective_params),
    )
    for index, node in enumerate(config.metric_nodes(cfg)):
        key = f"metrics[{index}]"
        metric, metric_params = config.plugin_params("metric", node, key=key)
        if "num_classes" in metric_params and metric_params["num_classes"] is None:
            metric_params["num_classes"] = 2  # left to the data, which decides it when the run starts
        _refuse_values(lambda: metric(**metric_params), f"{key}: ", (key, metric, metric_params))  # noqa: B023


class _NotBuiltYet:
    """Stands in for what a run builds before a plugin (its tokenizer): using it ends the check of the
    plugin's values, which plugins check before they use what they are given."""

    def __init__(self, what: str) -> None:
        self._what = what

    def __getattr__(self, name: str) -> Any:
        raise _StandInUsed(f"{self._what}.{name}")


class _StandInUsed(Exception):
    pass


def _refuse_values(
    build: Callable[[], Any], prefix: str, *checked: tuple[str, registry.Plugin, dict[str, Any]]
) -> None:
    """Call ``build``: a ``ValueError`` (the plugins' way to refuse a value) is the user's error, and so is a
    ``TypeError`` where a parameter without a type was given a value of another kind than its default
    (``checked``: the key, plugin and parameters of each plugin built). Any other failure is left to the
    run, which builds the plugins with what they need."""
    try:
        build()
    except (ValueError, TypeError) as error:
        for key, plugin, params in checked:  # first: a value a parameter without a type could not take
            if misfit := _untyped_misfit(plugin, params):
                name, value, default = misfit
                raise ConfigError(
                    f"{key}.{name}={value!r}: {key} '{plugin.name}' declares no type for {name}, and its "
                    f"default is {default!r}; building it with this value failed ({first_line(error)})"
                ) from None
        if isinstance(error, ValueError):  # the plugins' way to refuse a value
            raise ConfigError(f"{prefix}{first_line(error)}") from None
    except Exception:  # a plugin that cannot be built on a stand-in: it checks itself when the run builds it
        return


def _untyped_misfit(plugin: registry.Plugin, params: dict[str, Any]) -> tuple[str, Any, Any] | None:
    """``(name, value, default)`` of a parameter without an annotation given a value of another kind than
    its default (a string for a number, a list for a scalar), if any."""

    def kind(value: Any) -> type:
        return float if isinstance(value, int | float) and not isinstance(value, bool) else type(value)

    for param in plugin.parameters():
        default, given = param.default, params.get(param.name, param.default)
        unannotated = param.annotation is inspect.Parameter.empty
        if (
            unannotated
            and default is not inspect.Parameter.empty
            and default is not None
            and kind(given) is not kind(default)
        ):
            return param.name, given, default
    return None


# Checked elsewhere: the plugins' parameters against their signatures, the trainer's against Lightning's.
_CHECKED_ELSEWHERE = frozenset((*config.GROUP_KINDS, "trainer"))


# Groups whose presets only set values of settings that exist without them (hparams_search's define the
# ``search`` node): a key such a preset sets must be known to the config composed without it.
VALUE_PRESET_GROUPS = frozenset(("experiment", "debug"))


def check_known_keys(cfg: DictConfig, overrides: list[str], choices: dict[str, str]) -> None:
    """Refuse a setting that no config defines (``+foo=1``, ``+callbacks.throughput.every=5``, or
    ``callbacks.throughput.everyy: 3`` in an experiment preset): it would be ignored, or fail deep inside
    the run. The settings that exist are those of the config composed with only the group choices the job
    resolved to (``choices``: the overrides' and those the presets make, ``override /logger: csv``), without
    the value presets (``VALUE_PRESET_GROUPS``) themselves."""
    groups = _config_groups() - VALUE_PRESET_GROUPS
    kept = [f"{group}={option}" for group, option in sorted(choices.items()) if group in groups]
    # With the search path: --config-dir's presets are group choices too.
    kept += [o for o in overrides if o.startswith("hydra.searchpath")]
    reference = _reference_config(tuple(kept))
    for key in _unknown_keys(cfg, reference, ""):
        given = any(_override_key(o).lstrip("+") == key for o in overrides)
        presets = [f"{group}={choices[group]}" for group in sorted(VALUE_PRESET_GROUPS) if group in choices]
        by = f" (set by {' or '.join(presets)})" if presets and not given else ""
        raise ConfigError(not_a_setting(key, reference, by))


def not_a_setting(key: str, reference: DictConfig, by: str = "") -> str:
    """``trainer.max_stepss is not a setting; did you mean trainer.max_steps? valid in trainer: ...``: the
    settings beside ``key`` in ``reference``, the closest first if one is close."""
    if dotted := _through_dotted_key(key, reference):
        where, name = dotted
        return (
            f"{key}: {where}'s key {name!r} holds dots, which an override cannot reach one part at a time; "
            f"set the entry whole: '{where}={{{name}: {{...}}}}' (it merges with the others)"
        )
    parent = key.rsplit(".", 1)[0] if "." in key else ""
    node = OmegaConf.select(reference, parent) if parent else reference
    names = [str(k) for k in node if parent or k != "hydra"] if isinstance(node, DictConfig) else []
    close = difflib.get_close_matches(key.rsplit(".", 1)[-1], names, n=1)
    hint = f"did you mean {parent + '.' if parent else ''}{close[0]}? " if close else ""
    where = f"in {parent}" if parent else "at the top level"
    more = "; another Lightning Trainer argument: +trainer.<name>=<value>" if parent == "trainer" else ""
    return f"{key} is not a setting{by}; {hint}valid {where}: {', '.join(names)}{more}"


def _through_dotted_key(key: str, reference: DictConfig) -> tuple[str, str] | None:
    """``("search.params", "optim.lr")`` for ``search.params.optim.lr.low``: a key that reaches into an entry
    whose own name has dots (a search range is named by its override key), if it does."""
    node: Any = reference
    parts = key.split(".")
    for depth in range(len(parts)):
        if not isinstance(node, DictConfig):
            return None
        rest = ".".join(parts[depth:])
        for name in node:
            if "." in str(name) and (rest == name or rest.startswith(f"{name}.")):
                return ".".join(parts[:depth]), str(name)
        try:
            node = node.get(parts[depth])
        except OmegaConfBaseException:  # a value that does not resolve: not a section to look into
            return None
    return None


@functools.lru_cache(maxsize=16)
def _reference_config(choices: tuple[str, ...]) -> DictConfig:
    """The config the group choices alone compose: what ``check_known_keys`` reads (and never changes).
    Composed once per set of choices, so a sweep over values composes it once, not once per job."""
    return compose_config(list(choices))


@functools.cache
def _optional_groups() -> frozenset[str]:
    """The groups conf/config.yaml's defaults list marks optional (experiment, hparams_search, debug)."""
    keys = [str(key) for key in _primary_choices()]
    return frozenset(key.removeprefix("optional ").strip() for key in keys if key.startswith("optional "))


@functools.cache
def _config_groups() -> frozenset[str]:
    """The top-level config groups (model, experiment, logger, ...)."""
    with initialize_config_dir(config.config_dir(), version_base="1.3"):
        return frozenset(GlobalHydra.instance().config_loader().list_groups(""))


def _unknown_keys(cfg: DictConfig, reference: DictConfig, prefix: str) -> Iterable[str]:
    for key in cfg:
        path = f"{prefix}{key}"
        if not prefix and key in _CHECKED_ELSEWHERE:
            continue
        if key not in reference:
            yield path
        elif isinstance(cfg[key], DictConfig) and isinstance(reference[key], DictConfig):
            yield from _unknown_keys(cfg[key], reference[key], f"{path}.")


def claim_run_folder(folder: str | None, resuming: bool, cfg: DictConfig | None = None) -> None:
    """Before Hydra writes into ``hydra.run.dir`` (``folder``, None when the clock names it: a new folder):
    refuse a folder that is not a run's or (fresh launches) holds one, and lock it for this launch
    (``run_folder``), whether an override or a preset chose it; a resume of ``cfg`` that its checkpoint
    refuses (another model) is refused before Hydra rewrites the folder's ``.hydra/``."""
    from lightning_llm import run_folder  # deferred: it imports torch, which --help does not need
    from lightning_llm.errors import CheckpointError

    run_folder.check_rank_variables(run_folder.planned_processes(cfg.trainer) if cfg is not None else None)
    if cfg is not None and run_folder.is_launching_rank():
        run_folder.check_master_address(cfg.trainer)
    if folder and run_folder.is_launching_rank():
        run_folder.check_launch(folder, resuming)
        if resuming and cfg is not None:
            try:
                run_folder.check_resume_early(cfg, folder)
            except CheckpointError as error:
                raise ConfigError(str(error)) from None
            run_folder.keep_record(folder)  # Hydra rewrites .hydra/: a refused launch puts it back
        run_folder.lock(folder)


def check_sweep_folders(folders: dict[str, str], resuming: bool) -> None:
    """Before Hydra writes a sweep's ``multirun.yaml`` and each job's ``.hydra/``: the sweep folder must hold
    only what sweeps write (job folders, ``multirun.yaml``, a report, submitit's logs), and each job's folder
    must be one its job could launch into (``run_folder.check_launch``: a finished job is continued with
    ckpt_path=auto, never started again over its record)."""
    from lightning_llm import run_folder  # deferred: it imports torch, which --help does not need

    if "hydra.sweep.dir" not in folders:  # the clock names it: a new folder
        return
    sweep = Path(folders["hydra.sweep.dir"])
    if sweep.is_dir():
        foreign = [
            entry.name
            for entry in sorted(sweep.iterdir())
            if entry.name not in run_folder.SWEEP_ENTRIES
            and not (entry.is_dir() and not entry.is_symlink() and not run_folder.foreign_entries(entry))
        ]
        if foreign:
            shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3 else "")
            raise ConfigError(
                f"hydra.sweep.dir={sweep} holds files that are not a sweep's ({shown}); a sweep writes only "
                "into a new folder or an earlier sweep's: choose another hydra.sweep.dir"
            )
    for key, folder in folders.items():
        if key.startswith("job "):
            run_folder.check_launch(folder, resuming, key="hydra.sweep.dir")


def check_output_folder(overrides: list[str], multirun: bool = False) -> None:
    """The run (or sweep) folder must be one that can be made: Hydra creates it before any of our code runs
    and reports a failure with a traceback. Checks the nearest existing folder on its path."""
    key = "hydra.sweep.dir" if multirun else "hydra.run.dir"
    given = _given(key, overrides)
    folder = Path(given) if given else Path("multirun" if multirun else "outputs")
    existing = folder
    while not existing.exists() and existing.parent != existing:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise ConfigError(f"{key}={folder}: {existing} is a file, not a folder; choose another {key}")
    if existing.exists() and not os.access(existing, os.W_OK | os.X_OK):
        raise ConfigError(f"{key}={folder}: {existing} is not writable; choose another {key}")


def _given(key: str, overrides: list[str]) -> str | None:
    """The value the last override of ``key`` gives it, if any."""
    given = [o.split("=", 1)[1] for o in overrides if o.lstrip("+").startswith(f"{key}=")]
    return given[-1] if given else None


def compose_config(
    overrides: list[str],
    choices: dict[str, str] | None = None,
    folders: dict[str, str] | None = None,
    sweep: bool = False,
) -> DictConfig:
    """Compose conf/ with ``overrides``, turning Hydra's and OmegaConf's errors into one-line messages. The
    ``hydra`` node is composed too, checked for code a config may not select (``check_hydra_node``) and,
    for a ``sweep``'s job, for a SLURM launcher that cannot run it (``check_slurm_tasks``), and left out of
    the result; ``choices``, when given, receives the option each config group resolved to, and ``folders``
    ``hydra.run.dir`` unless the clock names it (a folder Hydra would make new), and for a sweep's job also
    ``hydra.sweep.dir``, ``job <n>`` (that job's folder) and ``launcher`` (the launcher's class)."""
    try:
        with initialize_config_dir(config.config_dir(), version_base="1.3"):
            try:
                cfg = compose("config", overrides=overrides, return_hydra_config=True)
            except (HydraException, OmegaConfBaseException, ValueError, AttributeError, TypeError) as error:
                # ValueError: group=null; AttributeError: a dict given to a node Hydra keeps null
                # (sweeper.params)
                if isinstance(error, UnicodeDecodeError):
                    raise
                raise ConfigError(explain(error, overrides)) from None
            if unknown := _unknown_option(overrides, _optional_groups()):  # Hydra skipped it without a word
                raise ConfigError(unknown)
    except (yaml.YAMLError, UnicodeDecodeError) as error:  # a preset of one's own (--config-dir), not YAML
        raise ConfigError(f"a config file is not readable YAML: {' '.join(str(error).split())}") from None
    check_hydra_node(cfg.hydra)
    check_names(cfg)
    if sweep:
        check_launcher_values(cfg.hydra.get("launcher"))
        check_slurm_tasks(cfg.hydra.get("launcher"), cfg.get("trainer") or {})
        if folders is not None:
            folders["launcher"] = str((cfg.hydra.get("launcher") or {}).get("_target_", ""))
    if choices is not None:
        choices.update({str(k): str(v) for k, v in cfg.hydra.runtime.choices.items() if v is not None})
    run_dir = OmegaConf.to_container(cfg.hydra.run, resolve=False).get("dir")
    if folders is not None and isinstance(run_dir, str) and "${now:" not in run_dir:
        folders["hydra.run.dir"] = str(cfg.hydra.run.dir)  # ${task_name}, a plain name, resolved
    sweep_dir = OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("dir")
    if folders is not None and sweep and isinstance(sweep_dir, str) and "${now:" not in sweep_dir:
        folders["hydra.sweep.dir"] = str(cfg.hydra.sweep.dir)
        folders[f"job {cfg.hydra.job.num}"] = str(Path(cfg.hydra.sweep.dir) / str(cfg.hydra.sweep.subdir))
    with open_dict(cfg):
        del cfg["hydra"]
    return cfg


# The launchers' settings that reach joblib or SLURM unchecked (n_jobs=0 was joblib's traceback, a negative
# time limit a job SLURM refuses): (launcher class suffix, setting, smallest value; None allowed where unset)
_LAUNCHER_BOUNDS = (
    ("JoblibLauncher", "n_jobs", None),  # any whole number but 0 (negative: all cores but |n| - 1)
    ("SlurmLauncher", "timeout_min", 1),
    ("SlurmLauncher", "nodes", 1),
    ("SlurmLauncher", "tasks_per_node", 1),
    ("SlurmLauncher", "cpus_per_task", 1),
    ("SlurmLauncher", "gpus_per_node", 0),
    ("SlurmLauncher", "mem_gb", 1),
    ("SlurmLauncher", "max_num_timeout", 0),
    ("SlurmLauncher", "signal_delay_s", 0),
)
_JOBLIB_CHOICES = {"backend": ("loky", "threading", "multiprocessing"), "prefer": ("processes", "threads")}


def check_launcher_values(launcher: Any) -> None:
    """Refuse a launcher setting joblib or SLURM would refuse only once the sweep is submitted (a traceback,
    or a job that never runs), or would ignore (joblib's unknown backend runs on loky)."""
    target = str((launcher or {}).get("_target_", ""))
    for suffix, key, minimum in _LAUNCHER_BOUNDS:
        value = launcher.get(key) if target.endswith(suffix) else None
        if value is None:
            continue
        whole = isinstance(value, int) and not isinstance(value, bool)
        if not whole or (value < minimum if minimum is not None else value == 0):
            need = f">= {minimum}" if minimum is not None else "other than 0 (-1: every core)"
            raise ConfigError(f"hydra.launcher.{key}={value!r}: needs a whole number {need}")
    if target.endswith("JoblibLauncher"):
        for key, choices in _JOBLIB_CHOICES.items():
            if (value := launcher.get(key)) is not None and value not in choices:
                raise ConfigError(f"hydra.launcher.{key}={value!r}: choose one of {', '.join(choices)}")


def check_slurm_tasks(launcher: Any, trainer: Any) -> None:
    """Refuse a SLURM launcher whose jobs cannot run the trainer: Lightning runs one process per device and
    per SLURM task, and refuses a job whose tasks per node or nodes differ, after its wait in the queue."""
    if not str((launcher or {}).get("_target_", "")).endswith("SlurmLauncher"):
        return
    devices, nodes = trainer.get("devices"), trainer.get("num_nodes", 1)
    count = len(devices) if isinstance(devices, list | ListConfig) else devices
    for key, asked, given in (
        ("tasks_per_node", count, "trainer.devices"),
        ("nodes", nodes, "trainer.num_nodes"),
    ):
        has = launcher.get(key)
        if isinstance(asked, int) and not isinstance(asked, bool) and isinstance(has, int) and has != asked:
            fix = "gpus_per_node (tasks_per_node follows it)" if key == "tasks_per_node" else key
            raise ConfigError(
                f"hydra.launcher.{key}={has}, but {given}={asked}: Lightning runs one process per device and "
                f"SLURM task, so every job would fail once it starts; set hydra.launcher.{fix} to {asked}"
            )


def explain(error: Exception, overrides: list[str]) -> str:
    """The shortest true account of why composing ``overrides`` failed."""
    groups = frozenset(GlobalHydra.instance().config_loader().list_groups(""))  # (inside compose's Hydra)
    if unknown := _unknown_option(overrides, groups):
        return unknown
    parsed = OverridesParser.create().parse_overrides(overrides)
    if misused := _misused_prefix(str(error), parsed):
        return misused
    cause = error.__cause__ if isinstance(error.__cause__, OmegaConfBaseException) else error
    full_key = str(getattr(cause, "full_key", "") or "")
    kind = full_key.split(".", 1)[0]
    if kind in config.GROUP_KINDS and "." in full_key:
        plugin = registry.get(kind, _selected(kind, overrides))
        if isinstance(cause, ConfigKeyError | ConfigAttributeError):
            valid = [p.name for p in plugin.parameters()] + list(config.FRAMEWORK_PARAMS.get(kind, {}))
            return config.unknown_key_message(full_key, plugin, valid)
        if isinstance(cause, ValidationError):
            return config.bad_value_message(kind, plugin, cause)
    if (reference := _choices_config(parsed, groups)) is not None:
        if unknown := _unknown_top_level_name(parsed, groups, reference):
            return unknown
        if unknown := _unknown_nested_key(str(error), reference):
            return unknown
    if isinstance(cause, ValidationError):  # a typed setting of no plugin (parallel.*): the value's problem
        return f"{full_key + ': ' if full_key else ''}{first_line(cause)}"
    if where := _composing_error(str(error), overrides):
        return where
    if isinstance(error, AttributeError | TypeError):  # OmegaConf merging a value into a node it cannot take
        given = " ".join(o for o in overrides if "=" in o and "{" in o.split("=", 1)[1])
        return f"cannot compose the config with {given or 'these overrides'} ({first_line(error)})"
    return f"{full_key + ': ' if full_key else ''}{first_line(error)}"


def _misused_prefix(text: str, parsed: list[Any]) -> str | None:
    """What to write instead of ``~key`` for a setting its typed section cannot be without (a plugin's
    parameter, ``parallel.*``) and of ``+key=value`` for a setting that exists: Hydra says only "Error
    merging override" and "Could not append"."""
    for override in parsed:
        key = override.key_or_group
        if override.is_delete() and f"Error merging override ~{key}" in text:
            return f"~{key}: {key} cannot be removed (its section needs a value); set it instead: {key}=..."
        if override.is_add() and f"An item is already at '{key}'" in text:
            return f"+{key}: {key} is already a setting; change it without the '+': {key}={override.value()}"
    return None


def _composing_error(text: str, overrides: list[str]) -> str | None:
    """``experiment/mine: parallel.compilee: Key 'compilee' not in 'ParallelPlan'`` from Hydra's "In
    'experiment/mine': ConfigKeyError raised while composing config:" (the reason is on its next lines).
    Where the preset sets a key of a group the command line chose another option of, say so: the preset's
    setting was written for its own choice, and no override can remove it."""
    lines = text.splitlines()
    if not (lines and lines[0].startswith("In '") and "raised while composing config" in lines[0]):
        return None
    where = lines[0].split("'")[1]
    reason = lines[1].strip() if len(lines) > 1 else lines[0]
    key = next((line.split(":", 1)[1].strip() for line in lines if line.strip().startswith("full_key:")), "")
    message = f"{where}: {key + ': ' if key else ''}{reason}"
    group = key.split(".", 1)[0]
    if chosen := _given(group, overrides):
        message += (
            f"; {where} sets {key} for its own {group}, which {group}={chosen} replaces: choose an option "
            f"of {group} that has it, or a preset of your own (--config-dir) without it"
        )
    return message


def _unknown_option(overrides: list[str], groups: frozenset[str]) -> str | None:
    """``unknown experiment 'gpt_tinyy' (did you mean 'gpt_tiny'?) ...`` for a choice in one of ``groups``
    that names no config of its group (``--config-dir``'s presets count), else None. Hydra refuses one in a
    plain group, but in an optional one (experiment, hparams_search, debug) it skips the choice silently, and
    the run would train something else."""
    loader = GlobalHydra.instance().config_loader()
    for override in OverridesParser.create().parse_overrides(overrides):
        group = override.key_or_group
        if group in groups and not override.is_delete():
            options = loader.get_group_options(group, config_name="config", overrides=overrides)
            if not override.is_sweep_override() and override.value() is None:  # Hydra: a ValueError
                return f"{group}=null: choose one of: {', '.join(options)}; leave {group} out for the default"
            for value in _values(override):
                if value not in options:
                    return registry.unknown_name_message(group, value, options)
    return None


def _choices_config(parsed: list, groups: frozenset[str]) -> DictConfig | None:
    """The config the overrides' group choices alone compose (inside compose's Hydra); None if they cannot."""
    searched = ("hydra.searchpath",)  # presets of one's own: their options are choices too
    choices = [
        o.input_line
        for o in parsed
        if (o.key_or_group in groups or o.key_or_group in searched or o.key_or_group.startswith("hydra/"))
        and not o.is_delete()
    ]
    try:  # with the hydra node: its launcher's settings are named too (hydra.launcher.n_jobss)
        return compose("config", overrides=choices, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException):
        return None


def _unknown_top_level_name(parsed: list, groups: frozenset[str], reference: DictConfig) -> str | None:
    """``tokenizr.vocab_size=3: no setting or group 'tokenizr'; did you mean tokenizer? ...`` for an override
    whose first name is neither a group nor a setting of ``reference``, the config its group choices
    compose (Hydra says only "Could not override"); None when every name exists."""
    top = ({str(key) for key in reference} | groups) - {"hydra", "schema"}
    for override in parsed:
        name = override.key_or_group.split(".", 1)[0].split("@", 1)[0]
        if name and name not in top and name.split("/")[0] not in ("hydra", "schema"):  # hydra/launcher=x
            close = difflib.get_close_matches(name, sorted(top), n=1)
            hint = f"did you mean {close[0]}? " if close else ""
            return (
                f"{override.input_line}: no setting or group '{name}'; {hint}valid: {', '.join(sorted(top))}"
            )
    return None


def _unknown_nested_key(text: str, reference: DictConfig) -> str | None:
    """``not_a_setting``'s message for Hydra's "Could not override 'trainer.max_stepss'" (a key its section
    of ``reference`` does not have; Hydra names neither the valid keys nor the one meant)."""
    if not text.startswith("Could not override '") or "." not in text.split("'")[1]:
        return None
    return not_a_setting(text.split("'")[1], reference)


def _selected(kind: str, overrides: list[str]) -> str:
    """The plugin chosen for ``kind`` once the overrides that touch its parameters are left out."""
    others = [o for o in overrides if not o.lstrip("+~").startswith(f"{kind}.")]
    return str(compose("config", overrides=others)[kind]["name"])


def _values(override) -> Iterable[str]:
    if override.is_discrete_sweep():
        return list(override.sweep_string_iterator())
    if override.is_sweep_override():
        return []
    value = override.value()
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _jobs(overrides: list[str], multirun: bool) -> Iterable[list[str]]:
    """Each job's override list: the cartesian product of the discrete sweeps, as Hydra's basic sweeper makes
    it (a later override of a key replaces an earlier one); a glob or a search space (``interval(...)``),
    which the basic sweeper cannot expand or run, is refused."""
    if not multirun:
        return [overrides]
    choices: dict[str, list[str]] = {}
    for override in OverridesParser.create().parse_overrides(overrides):
        key = override.get_key_element()
        kind = type(override.value()).__name__
        if kind == "Glob":  # expanded from the group's options, which Hydra's loader holds only inside a run
            raise ConfigError(
                f"{override.input_line}: list the options to sweep instead of a glob, e.g. {key}=a,b,c "
                f"(python -m lightning_llm --help lists them)"
            )
        if override.is_sweep_override() and not override.is_discrete_sweep():  # interval(...): a search's
            raise ConfigError(
                f"{override.input_line}: a search space ({kind}); -m sweeps a list, range() or choice(), "
                "and python -m lightning_llm.search samples ranges (README: sweeps)"
            )
        if override.is_discrete_sweep():
            choices[key] = [f"{key}={value}" for value in override.sweep_string_iterator()]
        elif not override.is_sweep_override():
            choices[key] = [f"{key}={override.get_value_element_as_str()}"]
    return (list(job) for job in itertools.product(*choices.values()))
