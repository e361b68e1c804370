"""The Trainer's own callbacks: what a restored checkpoint callback may delete."""

from __future__ import annotations

from pathlib import Path

import torch

from lightning_llm.trainer import LatestCheckpoint, OwnFilesCheckpoint


def _best(folder: Path) -> OwnFilesCheckpoint:
    return OwnFilesCheckpoint(
        dirpath=folder, filename="best-step{step:06d}", monitor="val/loss", save_top_k=2
    )


def test_a_restored_record_of_files_outside_the_folder_is_forgotten(tmp_path, caplog):
    """A crafted checkpoint's callback state naming ``checkpoints/../../x`` or any other path: Lightning would
    delete it once a better checkpoint replaced it (it compares paths as text)."""
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    own = str(folder / "best-step000004.ckpt")
    escape = str(folder / ".." / ".." / "project")
    callback = _best(folder)
    callback.load_state_dict(
        {
            "dirpath": str(folder),
            "monitor": "val/loss",
            "best_model_score": torch.tensor(0.5),
            "best_model_path": escape,
            "best_k_models": {escape: torch.tensor(0.5), own: torch.tensor(1.5), "/etc/x": torch.tensor(2.0)},
            "kth_best_model_path": "/etc/x",
            "kth_value": torch.tensor(2.0),
            "last_model_path": "",
        }
    )
    assert "they are forgotten, never deleted" in caplog.text
    assert callback.best_k_models == {own: torch.tensor(1.5)}
    assert callback.best_model_path == callback.kth_best_model_path == own
    assert callback.kth_value == 1.5 and callback.best_model_score == 1.5
    latest = LatestCheckpoint(folder, None)
    latest.load_state_dict({"dirpath": "/elsewhere", "best_model_path": escape})  # Lightning keeps this one
    assert latest.best_model_path == ""


def test_a_record_of_its_own_files_is_kept(tmp_path, caplog):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    paths = [str(folder / f"best-step00000{i}.ckpt") for i in (2, 4)]
    state = {
        "dirpath": str(folder),
        "monitor": "val/loss",
        "best_model_score": torch.tensor(1.0),
        "best_model_path": paths[1],
        "best_k_models": {paths[0]: torch.tensor(2.0), paths[1]: torch.tensor(1.0)},
        "kth_best_model_path": paths[0],
        "kth_value": torch.tensor(2.0),
        "last_model_path": "",
    }
    callback = _best(folder)
    callback.load_state_dict(state)
    assert not caplog.records
    assert callback.best_k_models == state["best_k_models"] and callback.kth_best_model_path == paths[0]


def test_a_record_of_other_types_is_forgotten_not_a_traceback(tmp_path, caplog):
    """An int path (``TypeError: expected str``) or a NUL byte in one ended a resume in a traceback."""
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    callback = _best(folder)
    callback.load_state_dict(
        {
            "dirpath": str(folder),
            "monitor": "val/loss",
            "best_model_score": torch.tensor(1.0),
            "best_model_path": 5,
            "best_k_models": {5: torch.tensor(1.0)},
            "kth_best_model_path": str(folder / "a\0b.ckpt"),
            "kth_value": torch.tensor(1.0),
            "last_model_path": "",
        }
    )
    assert "of other types; forgotten" in caplog.text
    assert (
        callback.best_k_models == {} and callback.best_model_path == "" and callback.kth_best_model_path == ""
    )
