"""Read the checkpoints a run writes: rebuild its model, load its tokenizer, or seed a new model with them.

A run folder holds ``tokenizer.json`` and ``checkpoints/*.ckpt``. Each checkpoint is Lightning's dict with
our extras: ``state_dict`` (the LanguageModule's, so the model's keys start with ``model.``), ``config`` (the
resolved run config as plain data; ``config["model"]`` is ``{"name": ..., **params}``) and
``tokenizer_fingerprint``. The model is rebuilt through the registry from that config, never from pickled
code: files are read with ``torch.load(weights_only=True)``, and a config naming code (``_target_``) is
refused.

A checkpoint is a file, or (under FSDP) a directory of DCP shards plus Lightning's ``meta.pt``. Writers
(``lightning_llm.distributed.checkpointing``) make a checkpoint appear under its final name only once it is
whole: files via a ``.tmp-<pid>`` temp name, directories via ``<name>.partial`` swapped in while the
previous one waits as ``<name>.old``. ``is_complete`` and ``latest_checkpoint`` encode that contract, so
readers never pick a half-written checkpoint. They live here, not beside the writers, because reading
must stay cheap: importing Lightning (which the writers subclass) costs seconds that ``generate`` does not
need; DCP is imported only when a sharded directory is actually read.

``python -m lightning_llm.checkpoint consolidate <run folder | sharded dir>`` turns a sharded checkpoint into
one file (see ``main``).
"""

from __future__ import annotations

import argparse
import logging
import pickle
import re
import sys
import warnings
import zipfile
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lightning_llm import plugins, registry
from lightning_llm.atomic import atomic_write, blocked_parent
from lightning_llm.config import plugin_params, refuse_code_paths
from lightning_llm.dcp_index import DCP_METADATA, read_dcp_metadata, safe_reader
from lightning_llm.errors import (
    EXIT_BAD_INPUT,
    ArgumentParser,
    CheckpointError,
    ctrl_c_exits,
    first_line,
    path_argument,
)
from lightning_llm.tokenizers import Tokenizer
from lightning_llm.untrusted import check_plain_structure, check_stored_config, torch_file_is_zip

__all__ = [
    "CheckpointError",
    "atomic_save",
    "build_model_from_checkpoint",
    "check_output_parents",
    "check_tied_weights",
    "consolidate",
    "export_consolidated",
    "find_checkpoint",
    "init_from",
    "is_complete",
    "is_sharded",
    "latest_checkpoint",
    "load_checkpoint",
    "load_run",
    "load_sharded",
    "main",
    "model_state_dict",
    "run_config",
    "run_folder",
]

log = logging.getLogger("lightning_llm")

CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = ".lock"  # a run folder's launch lock and ledger (lightning_llm.run_folder)
TOKENIZER_FILE = "tokenizer.json"
# what a Hugging Face model folder holds its weights in (one file, or an index of shards)
HF_WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
_MODEL_PREFIX = "model."
# Segments that wrappers insert into parameter names (torch.compile, activation checkpointing, FSDP1).
_WRAPPER_SEGMENTS = ("_orig_mod.", "_checkpoint_wrapped_module.", "_fsdp_wrapped_module.")

LAST = "last.ckpt"
META_FILE = "meta.pt"  # Lightning's non-tensor state in a sharded checkpoint, written by rank 0
PARTIAL_SUFFIX = ".partial"  # a sharded checkpoint being written: <name>.partial-<pid of rank 0>
OLD_SUFFIX = ".old"  # the previous sharded checkpoint while the new one is swapped in (still complete)
DELETING_MARKER = ".deleting-"  # a checkpoint being removed: <name>.deleting-<pid>
# Exactly the names the writers give unfinished work: a checkpoint name (.ckpt, or .pt for meta.pt and
# consolidated exports) plus one marker. Cleanup deletes only such names, so a user's `notes.partial/` or
# `draft.tmp-1` is never touched.
_UNFINISHED_NAME = re.compile(
    r".+\.(ckpt|pt)(\.partial(-(?P<partial>\d+))?|\.tmp-(?P<tmp>\d+)(-[0-9a-f]+)?|\.deleting-(?P<deleting>\d+))"
)


# --------------------------------------------------------------------------- finding and reading


def is_sharded(path: str | Path) -> bool:
    """Whether ``path`` is a directory laid out as a sharded checkpoint (complete or not)."""
    path = Path(path)
    return path.is_dir() and ((path / META_FILE).exists() or (path / DCP_METADATA).exists())


def is_complete(path: str | Path) -> bool:
    """Whether ``path`` is a whole checkpoint: not a temp/partial/being-deleted name, and either a file that
    is a whole zip archive (``torch.save``'s format; a truncated write lacks the zip's closing directory) or
    a directory holding both ``meta.pt`` and DCP's ``.metadata`` (each written only after the shards)."""
    path = Path(path)
    if is_unfinished(path):
        return False
    if path.is_dir():
        return (path / META_FILE).is_file() and (path / DCP_METADATA).is_file()
    return path.is_file() and zipfile.is_zipfile(path)


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The checkpoint to resume from in a checkpoints ``folder`` (see ``survey_checkpoints``), or None."""
    return survey_checkpoints(folder)[0]


def survey_checkpoints(folder: str | Path, also: Iterable[Path] = ()) -> tuple[Path | None, dict[Path, str]]:
    """``(latest, unusable)`` for a checkpoints ``folder`` (and the checkpoints ``also`` names, ranked alike:
    a run's SLURM requeue checkpoints).

    ``latest``: of the usable ``*.ckpt`` (files or sharded directories) and ``last.ckpt.old`` (left by a
    crash during a sharded swap), the one holding the most optimizer steps; on a tie ``last.ckpt``, then
    the newest; None when there is none. By step, not by name: a kill between Lightning's two saves of one
    step (``best-step…`` first, then ``last.ckpt``) leaves ``last.ckpt`` one interval behind.
    ``unusable``: each checkpoint under a final name that cannot be used, with the reason (truncated,
    unreadable, pickled code). Unfinished writes are neither: they are expected after a crash."""
    folder = Path(folder)
    candidates = [folder / LAST, folder / (LAST + OLD_SUFFIX), *folder.glob("*.ckpt"), *also]
    steps, unusable = survey_paths(candidates)
    ranked = [(step, path.name == LAST, mtime, path.name, path) for path, (step, mtime) in steps.items()]
    return (max(ranked)[-1] if ranked else None), unusable


def survey_paths(paths: Iterable[Path]) -> tuple[dict[Path, tuple[int, float]], dict[Path, str]]:
    """``({usable path: (step, mtime)}, {unusable path: why})`` of the checkpoints among ``paths``, each read
    once. Unfinished writes are in neither, and nor is a checkpoint deleted while it was read: a live run
    replaces its best checkpoints, and that is not damage."""
    usable, unusable = {}, {}
    for path in dict.fromkeys(paths):
        if not path.exists() or is_unfinished(path):
            continue
        step, problem = inspect_checkpoint(path)
        try:
            mtime = path.stat().st_mtime
        except FileNotFoundError:
            continue
        if problem:
            unusable[path] = problem
        else:
            usable[path] = (step, mtime)
    return usable, unusable


def _is_legacy_file(path: Path) -> bool:
    """Whether ``path`` is a regular file in torch's pre-zip format (a pickle stream, protocol 2)."""
    if not path.is_file():  # opening a FIFO would block
        return False
    try:
        with open(path, "rb") as file:
            return file.read(2) == b"\x80\x02"
    except OSError:
        return False


def inspect_checkpoint(path: Path) -> tuple[int | None, str | None]:
    """``(global_step, None)`` for a usable checkpoint, ``(None, why not)`` otherwise. Reads only metadata:
    the pickled structure of a file (memory-mapped, ``weights_only``), or a sharded folder's ``meta.pt``
    and DCP index (through the allowlist of ``read_dcp_metadata``)."""
    if is_unfinished(path):
        return None, "an unfinished write (a temp, partial or being-deleted name)"
    if not is_complete(path):
        if path.is_dir():
            return None, f"incomplete sharded checkpoint: it needs both {META_FILE} and {DCP_METADATA}"
        if _is_legacy_file(path):
            return None, "in torch's pre-1.6 format, which no lightning_llm run writes"
        return None, "not a whole checkpoint file (truncated?)"
    try:
        if path.is_dir():
            read_dcp_metadata(path / DCP_METADATA)
        checkpoint = read_metadata(path)
    except CheckpointError as error:
        return None, error.reason
    except Exception as error:  # whatever torch raises for a damaged file
        return None, _unreadable_reason(error)
    if not isinstance(checkpoint, dict):
        return None, "not a checkpoint dict"
    return int(checkpoint.get("global_step", -1)), None


# What Lightning's resume reads from a checkpoint's dict, besides the weights
_RESUMED_ENTRIES = ("pytorch-lightning_version", "global_step", "loops")


def resume_problem(checkpoint: Any) -> str | None:
    """Why a training run cannot resume from ``checkpoint`` (its dict, as loaded): not a dict, or one
    Lightning's ``Trainer.save_checkpoint`` did not write (a ``torch.save`` of weights, say); else None."""
    if not isinstance(checkpoint, dict):
        return f"not a checkpoint dict but a {type(checkpoint).__name__}"
    if missing := [key for key in _RESUMED_ENTRIES if key not in checkpoint]:
        return f"not a Lightning training checkpoint (it has no {', '.join(missing)})"
    return None


def read_metadata(path: Path) -> Any:
    """A checkpoint's dict (a sharded folder's ``meta.pt``), memory-mapped: only the pickled structure is
    read, not the tensors. A file that cannot be read so (damaged, pickled code) is a ``CheckpointError``."""
    source = path / META_FILE if path.is_dir() else path
    mmap = torch_file_is_zip(source)  # torch memory-maps only its zip format; the legacy one is read whole
    try:
        meta = torch.load(source, map_location="cpu", mmap=mmap, weights_only=True)
    except Exception as error:  # whatever torch and its unpickler raise for a damaged or hostile file
        raise _unreadable(path, error) from None
    check_loaded(meta, path)
    return meta


# The entries lightning_llm adds to a checkpoint, of the types it writes them with
_OWN_ENTRIES = {
    "config": dict,
    "overrides": list,
    "tokenizer_fingerprint": str,
    "frozen_fingerprint": str,
    "tokens_seen": int,
    "rng_states": dict,
    "data_settings": dict,
}


# Lightning's counters and ours: what a resume, `report` and the step ranking read as numbers
_COUNTS = ("global_step", "epoch", "tokens_seen")


def check_loaded(checkpoint: Any, source: object) -> None:
    """What every reader of a checkpoint's dict checks once torch has loaded it: its plain data's shape
    (``untrusted.check_plain_structure``) and lightning_llm's own entries (``check_own_entries``)."""
    check_plain_structure(checkpoint, source)
    check_own_entries(checkpoint, source)


def check_own_entries(checkpoint: Any, source: object) -> None:
    """Refuse a checkpoint whose lightning_llm entries are not of the types it writes, or whose run config
    (stored resolved) holds an interpolation (``${oc.env:...}`` would read this machine's environment into
    the run's config and logs): a damaged or crafted file, said in one line instead of a traceback later."""
    if not isinstance(checkpoint, dict):
        return
    for key, kind in _OWN_ENTRIES.items():
        value = checkpoint.get(key)
        if value is not None and (not isinstance(value, kind) or isinstance(value, bool)):
            raise CheckpointError(
                f"{source}: its {key} is a {type(value).__name__}, not the {kind.__name__} lightning_llm "
                "writes (damaged or crafted); refused"
            )
    for key in _COUNTS:  # a count's digits are printed and compared: 5,000 of them are a ValueError in str()
        value = checkpoint.get(key)
        if value is not None and not (
            isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**63
        ):
            raise CheckpointError(
                f"{source}: its {key} is not a count of 0 to 2**63 - 1 (damaged or crafted); refused"
            )
    if any(not isinstance(item, str) for item in checkpoint.get("overrides") or []):
        raise CheckpointError(f"{source}: its overrides are not all strings (damaged or crafted); refused")
    pending = [checkpoint.get("config") or {}]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, str) and "${" in node:
            raise CheckpointError(
                f"{source}: its run config holds the interpolation {node[:80]!r}, which lightning_llm stores "
                "resolved (damaged or crafted); refused"
            )


def stored_step(path: Path) -> int | None:
    """The ``global_step`` a checkpoint records (-1 if none), or None if it cannot be used."""
    return inspect_checkpoint(Path(path))[0]


def find_checkpoint(path: str | Path) -> Path:
    """The checkpoint for ``path``: a checkpoint file or sharded directory itself, or in a run folder (or a
    checkpoints folder) its ``latest_checkpoint``. Temp, partial and incomplete checkpoints are refused."""
    path = Path(path).expanduser()
    if path.exists() and is_unfinished(path):
        raise CheckpointError(
            f"{path} is an unfinished checkpoint (a write or removal that did not complete); pass its run "
            "folder to get the latest complete checkpoint"
        )
    if path.is_file():
        return path
    if is_sharded(path):
        if not is_complete(path):
            raise CheckpointError(
                f"{path} is an incomplete sharded checkpoint: it needs both {META_FILE} and {DCP_METADATA}"
            )
        return path
    if not path.is_dir():
        if path.exists():  # a device, a FIFO, or a link to one
            raise CheckpointError(f"{path} is neither a checkpoint file nor a folder (a device or FIFO?)")
        raise FileNotFoundError(f"no such run folder or checkpoint file (or sharded folder): {path}")
    folder = path / CHECKPOINT_DIR if (path / CHECKPOINT_DIR).is_dir() else path
    found, unusable = survey_checkpoints(folder)
    for checkpoint, problem in unusable.items():
        log.warning("passing over %s: %s", checkpoint, problem)
    weights = [name for name in HF_WEIGHT_FILES if (path / name).is_file()]
    if found is None and (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is a Hugging Face model folder (config.json), not a lightning_llm run or checkpoint"
        )
    if found is None and weights:
        raise FileNotFoundError(
            f"{path} holds {weights[0]} but no config.json: a Hugging Face model folder needs the config.json"
            " written with its weights (save_pretrained writes both)"
        )
    if found is None and folder == path and path.name != CHECKPOINT_DIR and not unusable:
        raise FileNotFoundError(
            f"{path} holds no usable checkpoint: it has no {CHECKPOINT_DIR}/ folder (a run stopped before "
            "its first checkpoint, or not a run folder) and no .ckpt file; pass a run folder or a .ckpt file"
        )
    if found is None:
        raise FileNotFoundError(
            f"{path} holds no usable checkpoint (looked for {folder / LAST} and {folder / '*.ckpt'}"
            f"{f'; {len(unusable)} unusable' if unusable else ''}); train with "
            "callbacks.checkpoint.save_last=true, or pass a .ckpt file"
        )
    return found


def is_unfinished(path: Path) -> bool:
    """Whether ``path`` is named as a checkpoint write or removal that has not finished."""
    return _UNFINISHED_NAME.fullmatch(Path(path).name) is not None


def writer_pid(path: Path) -> int | None:
    """The pid of the process whose unfinished write or removal ``path`` is named as, if its name has one."""
    match = _UNFINISHED_NAME.fullmatch(Path(path).name)
    pid = match and (match["partial"] or match["tmp"] or match["deleting"])
    return int(pid) if pid else None


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """The checkpoint dict at ``path``, read with ``weights_only=True`` (plain data and tensors only). A
    sharded directory is consolidated in memory into the same layout a single-file checkpoint has."""
    path = Path(path).expanduser()
    if path.is_dir():
        checkpoint = _load_sharded_checked(path)
        return {**checkpoint, "state_dict": _to(checkpoint["state_dict"], map_location)}
    if not path.is_file():
        raise FileNotFoundError(f"no such checkpoint file: {path}")
    torch_file_is_zip(path, verify=True)  # it is read whole below: its checksums cost one more read
    try:
        checkpoint = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # whatever torch and its unpickler raise for a damaged or hostile file
        raise _unreadable(path, error, "corrupt or truncated?") from None
    check_loaded(checkpoint, path)
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state_dict"), dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict'")
    return checkpoint


# The dtypes the framework writes model weights in: an integer (or float8) one is a damaged or crafted index.
_SHARDED_WEIGHT_DTYPES = (torch.float32, torch.bfloat16, torch.float16, torch.float64)


def load_sharded(path: str | Path) -> dict[str, Any]:
    """A sharded (DCP) checkpoint directory as one single-file-style checkpoint dict: every entry of its
    ``meta.pt`` plus ``state_dict`` with the full (unsharded) CPU tensors of the module's weights; no
    optimizer state. Needs no process group, whatever world size wrote it. Nothing is allocated before its
    index has been checked against its shards (``read_dcp_metadata``) and its weights' dtypes are floating
    point; a ``meta.pt`` torch.save did not write (compressed entries) is refused before it is read."""
    import torch.distributed.checkpoint as dcp

    path = Path(path)
    torch_file_is_zip(path / META_FILE)  # a compressed archive could unpack into any amount of memory
    meta = torch.load(path / META_FILE, map_location="cpu", weights_only=True)
    check_loaded(meta, path)
    reader = safe_reader(path)
    index = reader.read_metadata()  # checked: each tensor's declared size needs exactly its stored bytes
    # Full-size empty tensors, as DCP's index records them, for the module's weights only: DCP fills them
    # from every rank's shards. The optimizer_<i> entries would double the memory and are useless here.
    declared = _declared_weights(index)
    for name, entry in declared.items():
        _check_sharded_weight_dtype(path, f"state_dict.{name}", entry.properties.dtype)
    weights = {name: torch.empty(item.size, dtype=item.properties.dtype) for name, item in declared.items()}
    with warnings.catch_warnings():  # it warns that it loads in one process even when told to (no_dist)
        warnings.filterwarnings("ignore", message="torch.distributed is disabled", category=UserWarning)
        dcp.load({"state_dict": weights}, storage_reader=reader, no_dist=True)
    return {**meta, "state_dict": weights}


def _declared_weights(index: Any) -> dict[str, Any]:
    """The module weights a DCP index declares (``state_dict.<name>`` tensor entries), by name."""
    from torch.distributed.checkpoint.metadata import TensorStorageMetadata

    return {
        key.removeprefix("state_dict."): entry
        for key, entry in index.state_dict_metadata.items()
        if key.startswith("state_dict.") and isinstance(entry, TensorStorageMetadata)
    }


def _check_sharded_weight_dtype(path: Path, key: str, dtype: torch.dtype) -> None:
    """Refuse a model weight that a sharded checkpoint's index declares other than floating point: DCP
    would cast the stored floats into it (an integer weight of zeros), silently."""
    if dtype not in _SHARDED_WEIGHT_DTYPES:
        reason = (
            f"its {DCP_METADATA} declares the weight {key} as {str(dtype).removeprefix('torch.')}; weights "
            "are floating point (float32, bfloat16, float16 or float64), refused (damaged or crafted)"
        )
        raise CheckpointError(f"{path} is not a readable sharded checkpoint: {reason}", reason)


def _load_sharded_checked(path: Path) -> dict[str, Any]:
    if not is_complete(path):
        raise CheckpointError(
            f"{path} is not a complete sharded checkpoint (it needs {META_FILE} and {DCP_METADATA}, and no "
            f"{PARTIAL_SUFFIX} name)"
        )
    from torch.distributed.checkpoint import CheckpointException  # a BaseException, not an Exception

    read_dcp_metadata(path / DCP_METADATA)  # refused here in one line, before DCP retries and logs
    try:
        checkpoint = load_sharded(path)
    except CheckpointError:
        raise
    except (Exception, CheckpointException) as error:  # DCP and torch.load raise many types
        raise CheckpointError(f"{path} is not a readable sharded checkpoint: {first_line(error)}") from None
    if not checkpoint["state_dict"]:
        raise CheckpointError(f"{path} holds no 'state_dict' shards; it was not written by Lightning")
    return checkpoint


def _to(state: dict[str, Any], device: str | torch.device) -> dict[str, Any]:
    if torch.device(device).type == "cpu":
        return state
    return {
        key: value.to(device) if isinstance(value, torch.Tensor) else value for key, value in state.items()
    }


def _unreadable(path: Path, error: BaseException, guess: str = "") -> CheckpointError:
    """A ``CheckpointError`` saying why the checkpoint at ``path`` cannot be read (``_unreadable_reason``)."""
    reason = _unreadable_reason(error, guess)
    return CheckpointError(f"{path} is not a readable checkpoint: {reason}", reason)


def _unreadable_reason(error: BaseException, guess: str = "") -> str:
    """Pickled code (``weights_only=True`` refuses anything but tensors and plain data), or damage
    (``guess``: what may have happened)."""
    if isinstance(error, pickle.UnpicklingError) and str(error).startswith("Weights only load failed"):
        if operand := re.search(r"Unsupported operand (\d+)", str(error)):
            what = " (a number of over 600 digits)" if operand[1] == str(pickle.LONG4[0]) else ""
            return (
                f"its pickle uses instruction {operand[1]}{what}, which nothing torch.save writes for a "
                "checkpoint needs (damaged or crafted), refused"
            )
        return "it holds pickled code or objects, refused (checkpoints load with weights_only=True)"
    return f"{guess + ': ' if guess else ''}{first_line(error)}"


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
    config = checkpoint.get("config") if isinstance(checkpoint, dict) else None
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not model.get("name"):
        raise CheckpointError(
            "the checkpoint holds no run config with a model section ({'name': ..., **params}); "
            "it was not written by lightning_llm"
        )
    refuse_code_paths(config, "checkpoint config")
    return config


def build_model_from_checkpoint(
    checkpoint: dict[str, Any], vocab_size: int, source: object = "the checkpoint"
) -> nn.Module:
    """The model of ``checkpoint`` (named ``source`` in errors), rebuilt from its config through the registry
    with ``vocab_size`` (the run tokenizer's) and loaded strictly with its weights."""
    node = run_config(checkpoint)["model"]
    _register_model(str(node["name"]))
    plugin, params = plugin_params("model", node, key="checkpoint config model")
    state = model_state_dict(checkpoint)
    check_stored_config(lambda: plugin(vocab_size=vocab_size, **params), _weights_budget(state, checkpoint))
    model = plugin(vocab_size=vocab_size, **params)
    if "frozen_fingerprint" in checkpoint:
        state = _with_base(model, state, checkpoint)
    state = _without_adapters(state, checkpoint)
    problems = _state_differences(model.state_dict(), state)
    if problems:
        raise CheckpointError(
            f"the checkpoint's weights do not fit model '{plugin.name}' rebuilt from its config "
            f"(vocab_size={vocab_size}): {problems}"
        )
    check_tied_weights(model, state, source)
    model.load_state_dict(state, strict=True)
    return model


def check_tied_weights(model: nn.Module, state: dict[str, torch.Tensor], source: object) -> None:
    """Refuse ``state`` where it gives different values to entries ``model`` ties into one tensor: loading
    copies each in turn into that tensor, so the last silently wins (NaN in the embedding alone would even
    pass a check of the loaded model for non-finite weights)."""
    from lightning_llm.models.lora import tied_groups

    for names in tied_groups(model):
        given = [name for name in names if isinstance(state.get(name), torch.Tensor)]
        for other in given[1:]:
            if not _same_values(state[given[0]], state[other]):
                raise CheckpointError(
                    f"{source}: its {other} differs from its {given[0]}, which the model ties it to (one "
                    "tensor: loading would keep one and silently drop the other); damaged or edited, refused"
                )


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether ``a`` and ``b`` hold the same values, NaN where the other has NaN (a diverged tied head)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if a.device == b.device and a.data_ptr() == b.data_ptr() and a.stride() == b.stride():
        return True  # saved tied: one storage
    return bool(torch.allclose(a, b.to(a.device), rtol=0.0, atol=0.0, equal_nan=True))


def check_stored_checkpoint(path: Path, build: Callable[[], nn.Module]) -> None:
    """``check_stored_config`` for the checkpoint at ``path`` (a file or a sharded folder), read once and
    without its tensors' data: a file memory-mapped, a sharded folder's sizes from its index."""
    meta = read_metadata(path)  # a file's whole dict, its tensors mapped; a folder's meta.pt
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it holds a {type(meta).__name__}")
    check_stored_config(build, _weights_budget(_stored_state(path, meta), meta))


def _weights_budget(state: dict[str, torch.Tensor], checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The tensors a stored config must fit: the checkpoint's own and, for an adapters-only checkpoint (its
    frozen base is not stored but read again from ``model.init_from``), the base's, without their data."""
    if "frozen_fingerprint" not in checkpoint:
        return state
    return {**stored_weights(_adapted_base(checkpoint)), **state}


def _adapted_base(checkpoint: dict[str, Any]) -> Path:
    """The base model an adapters-only checkpoint's LoRA adapters were trained on (``model.init_from``)."""
    base = run_config(checkpoint)["model"].get("init_from")
    if not base or not Path(str(base)).expanduser().exists():
        raise CheckpointError(
            f"the checkpoint holds LoRA adapters only (model.lora.adapters_only); its base model "
            f"model.init_from={base!r} is needed to load it and was not found"
        )
    return Path(str(base)).expanduser()


def stored_weights(path: Path) -> dict[str, torch.Tensor]:
    """The model weights stored at ``path`` (a run folder, a checkpoint file or sharded folder, or a Hugging
    Face folder) without reading their data: memory-mapped, or on the meta device from an index's sizes."""
    from lightning_llm import huggingface

    if huggingface.is_hf_folder(path):
        shapes = huggingface.read_hf_shapes(path)
        return {name: torch.empty(shape, device="meta") for name, shape in shapes.items()}
    path = find_checkpoint(path)
    return _stored_state(path, read_metadata(path))


def _stored_state(path: Path, meta: Any) -> dict[str, torch.Tensor]:
    """The model weights of the checkpoint at ``path`` whose dict (a folder's ``meta.pt``) is ``meta``."""
    if path.is_dir():
        index = read_dcp_metadata(path / DCP_METADATA)
        stored = {
            name: torch.empty(entry.size, device="meta") for name, entry in _declared_weights(index).items()
        }
    elif isinstance(meta, dict) and isinstance(meta.get("state_dict"), dict):
        stored = meta["state_dict"]
    else:
        raise CheckpointError(f"{path} is not a Lightning checkpoint: it has no 'state_dict'")
    return model_state_dict({"state_dict": stored})


def _with_base(
    model: nn.Module, trained: dict[str, torch.Tensor], checkpoint: dict[str, Any]
) -> dict[str, torch.Tensor]:
    """An adapters-only checkpoint's weights completed with its frozen base, read again from the run's
    ``model.init_from`` into ``model`` and checked against the fingerprint the run recorded."""
    from lightning_llm.models.lora import frozen_fingerprint

    base = _adapted_base(checkpoint)
    init_from(model, base)
    frozen = {name: value for name, value in model.state_dict().items() if name not in trained}
    if frozen_fingerprint(frozen) != checkpoint["frozen_fingerprint"]:
        raise CheckpointError(
            f"the checkpoint holds LoRA adapters trained on other base weights than {base} holds now; "
            "load it with the base it was trained on"
        )
    return {**frozen, **trained}


def _without_adapters(state: dict[str, torch.Tensor], checkpoint: dict[str, Any]) -> dict[str, torch.Tensor]:
    """A LoRA run's weights with its adapters merged in (``models/lora.py``): a plain model of the
    architecture then loads them, to generate, evaluate, export or fine-tune further."""
    from lightning_llm.config import lora_settings
    from lightning_llm.models.lora import has_adapters, merged_state

    if not has_adapters(state):
        return state
    lora = lora_settings(run_config(checkpoint)["model"])
    if lora.rank < 1:
        raise CheckpointError("the checkpoint holds LoRA adapters but its config has no model.lora.rank")
    return merged_state(state, lora.alpha / lora.rank)


def _state_differences(expected: dict[str, torch.Tensor], found: dict[str, torch.Tensor]) -> str:
    """What keeps ``found`` from loading strictly into a model whose state dict is ``expected``, or ''."""
    missing = [name for name in expected if name not in found]
    unexpected = [name for name in found if name not in expected]
    reshaped = [
        f"{name} {tuple(found[name].shape)} vs {tuple(value.shape)}"
        for name, value in expected.items()
        if name in found and found[name].shape != value.shape
    ]
    retyped = [  # integer weights for float ones would load as whole numbers, silently
        f"{name} {found[name].dtype} vs {value.dtype}"
        for name, value in expected.items()
        if isinstance(found.get(name), torch.Tensor)
        and (found[name].is_floating_point() != value.is_floating_point() or found[name].is_complex())
    ]
    parts = [
        ("missing", missing),
        ("unexpected", unexpected),
        ("shape differs (checkpoint vs model)", reshaped),
        ("type differs (checkpoint vs model)", retyped),
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


def enclosing_run(path: Path) -> Path | None:
    """The run folder ``path`` is (or is inside), links resolved: the nearest folder holding a launch's lock
    and ``.hydra/``. A file written there that no run writes would stop the run's next launch."""
    resolved = path.expanduser().resolve()
    for folder in (resolved, *resolved.parents):
        if (folder / LOCK_FILE).is_file() and (folder / ".hydra").is_dir():
            return folder
    return None


def check_output_parents(path: str | Path, flag: str) -> None:
    """Refuse an output ``path`` (given as ``flag``) that cannot be made (``blocked_parent``)."""
    if problem := blocked_parent(path):
        raise ValueError(f"{flag} {path}: {problem}; name another {flag}")


def load_run(
    path: str | Path, tokenizer_file: str | Path | None = None
) -> tuple[nn.Module, Tokenizer, dict[str, Any]]:
    """``(model, tokenizer, config)`` of a run folder, a checkpoint file or a Hugging Face model folder; the
    model is on the CPU in eval mode. The run's ``tokenizer.json`` must be the one the checkpoint was
    trained with. A Hugging Face folder's config holds the model node only (``{"model": {...}}``). Where
    there is no tokenizer.json beside the weights (a Hugging Face folder without one, a checkpoint file away
    from its run), it may be given as ``tokenizer_file`` (a ``tokenizer.json`` or a folder holding one); a
    checkpoint's is held to the tokenizer fingerprint the checkpoint records."""
    from lightning_llm import huggingface

    path = Path(path).expanduser()
    if huggingface.is_hf_folder(path):
        given = None if tokenizer_file is None else _tokenizer_json(tokenizer_file)
        model, tokenizer, node = huggingface.load_hf_run(path, given)
        return model.eval(), tokenizer, {"model": node}
    checkpoint_path = find_checkpoint(path)
    checkpoint = load_checkpoint(checkpoint_path)
    config = run_config(checkpoint)
    tokenizer_path = _checkpoint_tokenizer(checkpoint_path, tokenizer_file)
    tokenizer = Tokenizer.from_file(tokenizer_path, roles=())  # as saved: no role added
    check_tokenizer(checkpoint, tokenizer.fingerprint(), checkpoint_path, tokenizer_path)
    model = build_model_from_checkpoint(checkpoint, tokenizer.vocab_size, checkpoint_path)
    return model.eval(), tokenizer, config


def _checkpoint_tokenizer(checkpoint_path: Path, given: str | Path | None) -> Path:
    """The tokenizer.json of a checkpoint: its run folder's, else the one ``given`` (a checkpoint file copied
    out of its run, e.g. by ``consolidate --output``); the caller checks it against the checkpoint's
    fingerprint. Both at once is refused: which one was meant?"""
    own = run_folder(checkpoint_path) / TOKENIZER_FILE
    if own.is_file() and given is not None:
        raise CheckpointError(
            f"{checkpoint_path} keeps its own tokenizer.json ({own}); a tokenizer is given only to a "
            "checkpoint with none beside it, or to a Hugging Face folder without one"
        )
    if own.is_file():
        return own
    if given is not None:
        return _tokenizer_json(given)
    raise FileNotFoundError(
        f"no tokenizer for {checkpoint_path}: there is no {own}; copy its run's tokenizer.json there, or "
        "give that file (generate --tokenizer FILE, evaluate tokenizer=pretrained tokenizer.path=FILE), "
        "which is checked against the checkpoint"
    )


def _tokenizer_json(path: str | Path) -> Path:
    """``path`` as a tokenizer.json file: the file itself, or the one in the folder it names."""
    path = Path(path).expanduser()
    file = path / TOKENIZER_FILE if path.is_dir() else path
    if not file.is_file():
        raise FileNotFoundError(f"no tokenizer at {path}: give a tokenizer.json file or a folder holding one")
    return file


def check_tokenizer(
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


def check_resumable(
    path: str | Path,
    model_config: dict[str, Any],
    tokenizer_fingerprint: str | None,
    schedule: dict[str, Any] | None = None,
    restored: dict[str, Any] | None = None,
    partial: bool = False,
    data_settings: dict[str, Any] | None = None,
    max_steps: int | None = None,
    choices: dict[str, str] | None = None,
) -> None:
    """Refuse to resume from a checkpoint of another model shape or tokenizer, naming what differs (only
    the model settings ``model_config`` holds, when ``partial``; no tokenizer check without a
    fingerprint). (Lightning would fail later with a wall of missing/unexpected keys, or worse, load
    same-shaped weights that mean something else under another tokenizer.) Refuse a change to the settings
    whose state the checkpoint restores (``restored``: dotted key -> value; the optimizer's, the windows',
    the seed's): the new value would be recorded in the run's config but not used. Warn, naming them, when
    the settings the learning-rate schedule is computed from (``schedule``) differ from the run's: given
    on purpose (a run trained further), but the schedule then changes mid-run. Refuse a file that is not
    a Lightning training checkpoint, or is damaged (its checksums), and a ``max_steps`` already passed.
    ``choices`` (group -> plugin name: the objective, the data) are compared first: another task explains
    every other difference, so it is the one to name."""
    path = Path(path)
    if path.is_dir():
        read_dcp_metadata(path / DCP_METADATA)  # before DCP unpickles it while loading the shards
    else:
        torch_file_is_zip(path, verify=True)  # Lightning reads it whole to resume: damage must not load
    meta = read_metadata(path)
    stored_config = (meta.get("config") if isinstance(meta, dict) else None) or {}
    try:  # first: a config naming code is the finding that matters, whatever else the file lacks
        refuse_code_paths(stored_config, "config")
    except ValueError as error:
        raise CheckpointError(f"{path}: {error}") from None
    if problem := resume_problem(meta):
        raise CheckpointError(f"cannot resume from {path}: {problem}")
    stored = {group: _dotted(stored_config, f"{group}.name") for group in choices or {}}
    if other := [
        f"{group}={stored[group]} there, {group}={name} here"
        for group, name in (choices or {}).items()
        if stored[group] not in (None, name)
    ]:
        raise CheckpointError(
            f"{path} was trained for another task: {'; '.join(other)}. Resume with the run's own, or start a "
            f"new run from its weights with model.init_from={path}"
        )
    if max_steps is not None and 0 <= max_steps < meta["global_step"]:  # equal: a requeue of its evaluation
        raise CheckpointError(
            f"{path} is at step {meta['global_step']}, past trainer.max_steps={max_steps}: nothing to train. "
            f"To train further, set trainer.max_steps above {meta['global_step']}"
        )
    stored_tokenizer = meta.get("tokenizer_fingerprint")
    if tokenizer_fingerprint is not None and stored_tokenizer not in (None, tokenizer_fingerprint):
        raise CheckpointError(
            f"{path} was trained with another tokenizer (fingerprint {stored_tokenizer[:12]}, this run's is "
            f"{tokenizer_fingerprint[:12]}): other tokenizer settings, or a corpus that changed since (a "
            "tokenizer is trained on it); resume with the one the run saved: tokenizer=pretrained "
            f"tokenizer.path={path.resolve().parent.parent / 'tokenizer.json'}"
        )
    stored_model = stored_config.get("model") or {}
    differences = [
        f"model.{key}={stored_model.get(key)!r} there, {model_config.get(key)!r} here"
        for key in sorted(set(model_config) if partial else set(stored_model) | set(model_config))
        if key != "init_from" and stored_model.get(key) != model_config.get(key)
    ]
    if stored_model and differences:
        raise CheckpointError(
            f"{path} holds another model: {'; '.join(differences)}. Resume with the same model settings, or "
            f"start a new run from its weights with model.init_from={path}"
        )
    check_data_settings(meta.get("data_settings"), data_settings, path, "this data")
    ignored = [
        f"{key}={_dotted(stored_config, key)!r} there, {value!r} here"
        for key, value in (restored or {}).items()
        if stored_config and _dotted(stored_config, key) != value
    ]
    if ignored:
        raise CheckpointError(
            f"{path} restores the state these settings made, so a new value would not be used: "
            f"{'; '.join(ignored)}. Resume with the run's own, or start a new run from its weights with "
            f"model.init_from={path}"
        )
    changed = [
        f"{key}={_dotted(stored_config, key)!r} there, {value!r} now"
        for key, value in (schedule or {}).items()
        if stored_config and _dotted(stored_config, key) != value
    ]
    if changed:
        log.warning(
            "resuming %s with %s: the learning-rate schedule is computed from these, so it changes from "
            "here on (the steps already trained followed the old one)",
            path,
            "; ".join(changed),
        )


def stored_data_settings(path: str | Path) -> dict[str, Any] | None:
    """What the data decided that the model at ``path`` (a run folder or checkpoint) relies on, as its
    checkpoint stores it; None for a Hugging Face folder or a checkpoint from before they were stored."""
    from lightning_llm import huggingface

    path = Path(path).expanduser()
    if huggingface.is_hf_folder(path):
        return None
    stored = read_metadata(find_checkpoint(path)).get("data_settings")
    return stored if isinstance(stored, dict) else None


def check_data_settings(stored: Any, given: dict[str, Any] | None, source: object, data: str) -> None:
    """Refuse data that decides otherwise than the data a model was trained on (``stored``, its checkpoint's
    ``data_settings``): a classifier's class i must mean the same label, or every score is silently wrong."""
    for key, value in (given or {}).items():
        if isinstance(stored, dict) and key in stored and stored[key] != value:
            raise CheckpointError(
                f"{source} was trained with {key} [{_shown(stored[key])}], {data} gives [{_shown(value)}]: "
                f"class i would mean another {key.removesuffix('s')}; use data with the run's {key}"
            )


def _shown(values: Any, limit: int = 200) -> str:
    text = ", ".join(map(str, values)) if isinstance(values, list) else repr(values)
    return text if len(text) <= limit else text[:limit] + "..."


def _dotted(config: dict[str, Any], key: str) -> Any:
    for part in key.split("."):
        config = config.get(part) if isinstance(config, dict) else None
    return config


# --------------------------------------------------------------------------- fine-tuning


def init_from(model: nn.Module, path: str | Path) -> tuple[list[str], list[str], list[str]]:
    """Copy every weight of the checkpoint at ``path`` (a run folder or .ckpt) whose name and shape match
    into ``model``, e.g. a masked-LM encoder into a classifier whose head is new. From a Hugging Face folder
    every weight is mapped by its architecture's table (``lightning_llm.huggingface``), the model having been
    built from its config.json; a tensor the table does not know is refused, naming it.

    Returns ``(loaded, new, skipped)``: the names loaded; the model's names the checkpoint lacks (they keep
    their fresh initialisation); and the checkpoint's names left out, because the model has no such entry
    or its shape differs (a different head size; such a model entry also keeps its initialisation).
    """
    from lightning_llm import huggingface

    path = Path(path).expanduser()
    if huggingface.is_hf_folder(path):  # every tensor of it is mapped, or the load is refused naming it
        folder = Path(path)
        architecture = huggingface.architecture_of(huggingface.read_hf_config(folder), folder)
        weights, new, skipped = huggingface.map_hf_state(
            architecture, huggingface.read_hf_weights(folder), model.state_dict(), folder
        )
        model.load_state_dict(weights, strict=False)
        return list(weights), new, skipped
    checkpoint_path = find_checkpoint(path)
    checkpoint = load_checkpoint(checkpoint_path)
    if "frozen_fingerprint" in checkpoint:  # adapters only: the run's own model, its base read again
        source = build_model_from_checkpoint(checkpoint, model.config.vocab_size).state_dict()
    else:
        source = _without_adapters(model_state_dict(checkpoint), checkpoint)
    target = model.state_dict()
    loaded = [name for name, value in source.items() if name in target and target[name].shape == value.shape]
    if not loaded:
        raise CheckpointError(
            f"no weight of {checkpoint_path} matches the model by name and shape; is it a checkpoint of "
            "the same model family?"
        )
    check_tied_weights(model, {name: source[name] for name in loaded}, checkpoint_path)
    model.load_state_dict({name: source[name] for name in loaded}, strict=False)
    new = [name for name in target if name not in source]
    loaded_names = set(loaded)
    skipped = [name for name in source if name not in loaded_names]
    return loaded, new, skipped


# --------------------------------------------------------------------------- writing


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj, path)`` such that ``path`` is either untouched or the whole new file, also across a
    crash (``lightning_llm.atomic``). On any error the temp file is removed and the error re-raised."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_write(path) as file:
        torch.save(obj, file)
    return path


def consolidate(sharded_dir: str | Path, out_file: str | Path) -> Path:
    """Write the sharded checkpoint ``sharded_dir`` as ONE file, atomically, in the layout of a single-device
    Lightning checkpoint: ``state_dict`` with the module's full weights (``model.blocks.0...``) plus every
    entry of ``meta.pt`` (run config, tokenizer fingerprint, counters); no optimizer state. It loads with
    ``torch.load(weights_only=True)`` and needs no process group. Returns ``out_file``."""
    sharded_dir, out_file = Path(sharded_dir), Path(out_file)
    if not sharded_dir.is_dir():
        raise CheckpointError(f"{sharded_dir} is not a sharded checkpoint directory")
    if out_file.is_dir():
        raise IsADirectoryError(f"{out_file} is a directory; name the file to write")
    return atomic_save(load_checkpoint(sharded_dir), out_file)


def export_consolidated(run_dir: Path) -> Path | None:
    """After a sharded (FSDP) run: its last checkpoint as one file beside it, for inference and fine-tuning
    (``consolidated_path``); None when the latest checkpoint is a file already."""
    sharded = latest_checkpoint(run_dir / CHECKPOINT_DIR)
    if sharded is None or not sharded.is_dir():
        return None
    out = consolidate(sharded, consolidated_path(sharded))
    log.info("consolidated %s -> %s", sharded.name, out)
    return out


# --------------------------------------------------------------------------- command line

CONSOLIDATED_SUFFIX = ".consolidated.pt"
DESCRIPTION = """Work with a run's checkpoints.

consolidate: turn a sharded (FSDP) checkpoint directory into one file with the layout of a single-device
checkpoint (state_dict + run config + tokenizer fingerprint + counters), weights only: no optimizer state.
It loads with torch.load(weights_only=True) anywhere, without a process group, e.g. for generate or
model.init_from on one device. The default output is <checkpoint name without .ckpt>.consolidated.pt beside
the checkpoint (checkpoints/last.ckpt -> checkpoints/last.consolidated.pt): not a .ckpt name, so resuming
(which needs optimizer state) never picks it up, while the run folder's tokenizer.json still goes with it."""


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_llm.checkpoint",
        description=DESCRIPTION,
        epilog="example:\n  python -m lightning_llm.checkpoint consolidate outputs/2024-01-01/12-00-00",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    consolidate = commands.add_parser("consolidate", help="a sharded checkpoint -> one weights-only file")
    consolidate.add_argument(
        "path",
        type=path_argument,
        help="a run folder (its latest complete checkpoint) or a sharded checkpoint directory",
    )
    consolidate.add_argument(
        "--output",
        type=path_argument,
        metavar="FILE",
        help=f"where to write (<checkpoint>{CONSOLIDATED_SUFFIX} beside it)",
    )
    return parser


@ctrl_c_exits
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = _consolidate(Path(args.path), args.output)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except OSError as error:  # the output's folder cannot be made or written (no such parent, read-only)
        print(
            f"error: cannot write {error.filename or args.output}: {error.strerror or error}", file=sys.stderr
        )
        return EXIT_BAD_INPUT
    print(written)
    return 0


def consolidated_path(sharded: Path) -> Path:
    """Where a sharded checkpoint's single-file export goes: beside it, not a ``.ckpt`` name, so resuming
    (which needs optimizer state) never picks it up."""
    return sharded.with_name(sharded.name.removesuffix(".ckpt") + CONSOLIDATED_SUFFIX)


def _consolidate(path: Path, output: str | None) -> Path:
    source = find_checkpoint(path)
    if not source.is_dir():
        read_metadata(source)  # a file torch did not write, or one holding code, is named as such
        raise CheckpointError(f"{source} is a single-file checkpoint already; load it as it is")
    if not output and (source.is_symlink() or source.parent.is_symlink()):
        raise CheckpointError(
            f"{source} is reached through a link, and its consolidation would be written beside the link's "
            "target; name the file to write with --output"
        )
    target = Path(output).expanduser() if output else consolidated_path(source)
    check_output_parents(output or target, "--output")
    _check_output(target, source)
    return consolidate(source, target)


def _check_output(target: Path, source: Path) -> None:
    """``--output`` must name a new file outside the checkpoint: a file that exists is the user's (or the
    run's: its tokenizer.json, a checkpoint) and is never replaced, except the consolidation this command
    itself writes beside ``source`` (``consolidated_path``), which a second consolidation renews."""
    if target.is_dir():
        raise CheckpointError(
            f"--output {target} is a folder; name the file to write, e.g. {target}/model.pt"
        )
    if target.resolve().is_relative_to(source.resolve()):
        raise CheckpointError(f"--output {target} is inside the checkpoint {source}; write it elsewhere")
    run = enclosing_run(target)
    if run is not None and not target.resolve().is_relative_to(run / CHECKPOINT_DIR):
        raise CheckpointError(
            f"--output {target} is inside the run folder {run}, which then could not be resumed; write it "
            f"elsewhere, or beside a checkpoint in {CHECKPOINT_DIR}/"
        )
    if (target.exists() or target.is_symlink()) and target.resolve() != consolidated_path(source).resolve():
        raise CheckpointError(
            f"--output {target} exists; name a new file (an existing file is never replaced)"
        )


if __name__ == "__main__":
    sys.exit(main())
