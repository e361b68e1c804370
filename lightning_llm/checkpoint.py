"""Read the checkpoints a run writes: rebuild its model, load its tokenizer, or seed a new model with them.

A run folder holds ``tokenizer.json`` and ``checkpoints/*.ckpt``. Each checkpoint is Lightning's dict with
our extras: ``state_dict`` (the LanguageModule's, so the model's keys start with ``model.``), ``config`` (the
resolved run config as plain data; ``config["model"]`` is ``{"name": ..., **params}``) and
``tokenizer_fingerprint``. The model is rebuilt through the registry from that config, never from pickled
code: files are read with ``torch.load(weights_only=True)``, and a config naming code (``_target_``) is
refused.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_llm import plugins, registry
from lightning_llm.config import plugin_params, refuse_code_paths
from lightning_llm.tokenizers import Tokenizer

__all__ = [
    "CheckpointError",
    "build_model_from_checkpoint",
    "find_checkpoint",
    "init_from",
    "load_checkpoint",
    "load_run",
    "model_state_dict",
    "run_config",
    "run_folder",
]

CHECKPOINT_DIR = "checkpoints"
TOKENIZER_FILE = "tokenizer.json"
_MODEL_PREFIX = "model."
# Segments that wrappers insert into parameter names (torch.compile, activation checkpointing, FSDP1).
_WRAPPER_SEGMENTS = ("_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be used; the message names the file and the problem."""


# --------------------------------------------------------------------------- finding and reading


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint file for ``path``: a ``.ckpt`` file itself, or in a run folder
    ``checkpoints/last.ckpt``, else the newest ``checkpoints/*.ckpt`` (a checkpoints folder works too)."""
    path = Path(path).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise FileNotFoundError(f"no such run folder or checkpoint file: {path}")
    folder = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
    last = folder / "last.ckpt"
    if last.is_file():
        return last
    checkpoints = [candidate for candidate in folder.glob("*.ckpt") if candidate.is_file()]
    if not checkpoints:
        raise FileNotFoundError(
            f"{path} holds no checkpoint (looked for {folder / 'last.ckpt'} and {folder / '*.ckpt'}); "
            "train with callbacks.checkpoint.save_last=true, or pass a .ckpt file"
        )
    return max(checkpoints, key=lambda candidate: (candidate.stat().st_mtime, candidate.name))


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict at ``path``, read with ``weights_only=True`` (plain data and tensors only)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as error:
        reason = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise CheckpointError(
            f"{path} is not a readable checkpoint (corrupt or truncated?): {reason}"
        ) from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict'")
    return checkpoint


def model_state_dict(checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The model's weights: the ``model.`` entries of the module's state dict, prefix and wrappers removed."""
    state = {
        _strip_wrappers(key.removeprefix(_MODEL_PREFIX)): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(_MODEL_PREFIX)
    }
    if not state:
        raise CheckpointError(
            "the checkpoint's state_dict has no 'model.' entries; it was not written by lightning_llm"
        )
    return state


def _strip_wrappers(key: str) -> str:
    for segment in _WRAPPER_SEGMENTS:
        key = key.replace(segment, "")
    return key


# --------------------------------------------------------------------------- rebuilding a run


def run_config(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The resolved run config stored in ``checkpoint``; one that names code (``_target_``) is refused."""
    config = checkpoint.get("config")
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not model.get("name"):
        raise CheckpointError(
            "the checkpoint holds no run config with a model section ({'name': ..., **params}); "
            "it was not written by lightning_llm"
        )
    refuse_code_paths(config, "checkpoint config")
    return config


def build_model_from_checkpoint(checkpoint: dict[str, Any], vocab_size: int) -> nn.Module:
    """The model of ``checkpoint``, rebuilt from its config through the registry with ``vocab_size`` (the
    run tokenizer's) and loaded strictly with its weights."""
    node = run_config(checkpoint)["model"]
    _register_model(str(node["name"]))
    plugin, params = plugin_params("model", node, key="checkpoint config model")
    model = plugin(vocab_size=vocab_size, **params)
    state = model_state_dict(checkpoint)
    problems = _state_differences(model.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"the checkpoint's weights do not fit model '{plugin.name}' rebuilt from its config "
            f"(vocab_size={vocab_size}): {problems}"
        )
    model.load_state_dict(state, strict=True)
    return model


def _state_differences(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """What keeps ``found`` from loading strictly into a model whose state dict is ``expected``, or ''."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    reshaped = [
        f"{name} {tuple(found[name].shape)} vs {tuple(value.shape)}"
        for name, value in expected.items()
        if name in found and found[name].shape != value.shape
    ]
    parts = [
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape differs (checkpoint vs model)", reshaped),
    ]
    return "; ".join(f"{label}: {_first_few(names)}" for label, names in parts if names)


def _first_few(names: list[str], shown: int = 3) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _register_model(name: str) -> None:
    """Make model ``name`` known to the registry: the built-ins first, which is enough for them and spares
    a command such as ``generate`` the seconds that importing every plugin (Lightning included) costs."""
    import lightning_llm.models  # noqa: F401 - registers the built-in models

    if name not in registry.names("model"):
        plugins.load()  # a third-party model comes from an installed plugin package


def run_folder(checkpoint_path: Path) -> Path:
    """The run folder of a checkpoint file: the parent of ``checkpoints/``, else the file's own folder."""
    folder = checkpoint_path.parent
    return folder.parent if folder.name == CHECKPOINT_DIR else folder


def load_run(path: str | Path) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    """``(model, tokenizer, config)`` of a run folder or a checkpoint file; the model is on the CPU in
    eval mode. The run's ``tokenizer.json`` must be the one the checkpoint was trained with."""
    checkpoint_path = find_checkpoint(path)
    checkpoint = load_checkpoint(checkpoint_path)
    config = run_config(checkpoint)
    tokenizer_path = run_folder(checkpoint_path) / TOKENIZER_FILE
    if not tokenizer_path.is_file():
        raise FileNotFoundError(
            f"no tokenizer for {checkpoint_path}: expected {tokenizer_path}, which every run folder holds"
        )
    tokenizer = Tokenizer.from_file(tokenizer_path)
    _check_tokenizer(checkpoint, tokenizer.fingerprint(), checkpoint_path, tokenizer_path)
    model = build_model_from_checkpoint(checkpoint, tokenizer.vocab_size)
    return model.eval(), tokenizer, config


def _check_tokenizer(
    checkpoint: dict[str, Any], fingerprint: str, checkpoint_path: Path, tokenizer_path: Path
) -> None:
    expected = checkpoint.get("tokenizer_fingerprint")
    if expected is None:
        raise CheckpointError(
            f"{checkpoint_path} records no tokenizer_fingerprint, so {tokenizer_path} cannot be checked "
            "against it; it was not written by lightning_llm"
        )
    if expected != fingerprint:
        raise CheckpointError(
            f"{tokenizer_path} is not the tokenizer {checkpoint_path} was trained with (fingerprint "
            f"{fingerprint[:12]}, checkpoint expects {expected[:12]}); keep a run's tokenizer.json and "
            "checkpoints together"
        )


# --------------------------------------------------------------------------- fine-tuning


def init_from(model: nn.Module, path: str | Path) -> tuple[list[str], list[str], list[str]]:
    """Copy every weight of the checkpoint at ``path`` (a run folder or .ckpt) whose name and shape match
    into ``model``, e.g. a masked-LM encoder into a classifier whose head is new.

    Returns ``(loaded, new, skipped)``: the names loaded; the model's names the checkpoint lacks (they keep
    their fresh initialisation); and the checkpoint's names left out, because the model has no such entry
    or its shape differs (a different head size; such a model entry also keeps its initialisation).
    """
    checkpoint_path = find_checkpoint(path)
    source = model_state_dict(load_checkpoint(checkpoint_path))
    target = model.state_dict()
    loaded = [name for name, value in source.items() if name in target and target[name].shape == value.shape]
    if not loaded:
        raise CheckpointError(
            f"no weight of {checkpoint_path} matches the model by name and shape; is it a checkpoint of "
            "the same model family?"
        )
    model.load_state_dict({name: source[name] for name in loaded}, strict=False)
    new = [name for name in target if name not in source]
    loaded_names = set(loaded)
    skipped = [name for name in source if name not in loaded_names]
    return loaded, new, skipped
