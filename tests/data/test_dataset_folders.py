"""A `datasets` save_to_disk folder (data=dataset): read only from itself, once, its state.json checked."""

import json
import os
from pathlib import Path

import pytest

from lightning_llm.data.sources import SourceError
from lightning_llm.data.streams import Corpus, documents


def test_a_dataset_state_json_reads_only_its_own_folder_and_is_checked(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["some words here"] * 5}).save_to_disk(str(tmp_path / "ds"))
    state = json.loads((tmp_path / "ds" / "state.json").read_text())
    (arrow,) = (tmp_path / "ds").glob("*.arrow")
    outside = "'_data_files' entry .* not a plain file name inside the folder"
    bad = {
        "abs": ({**state, "_data_files": [{"filename": str(arrow)}]}, outside),
        "up": ({**state, "_data_files": [{"filename": f"../ds/{arrow.name}"}]}, outside),
        "gone": ({**state, "_data_files": [{"filename": "x.arrow"}]}, r"'_data_files' names 'x\.arrow'"),
        "none": ({**state, "_data_files": []}, r"'_data_files' must list .*got \[\]"),
        "list": ([state], r"expected a JSON object, got list"),
        "format": ({**state, "_format_type": 3}, r"'_format_type' must be null or a format name, got 3"),
    }
    for name, (content, message) in bad.items():
        folder = tmp_path / name
        folder.mkdir()
        os.link(arrow, folder / arrow.name)
        (folder / "state.json").write_text(json.dumps(content))
        with pytest.raises(SourceError, match=rf"^{folder}/state\.json: {message}"):
            Corpus("dataset", (str(folder),)).fingerprint()  # before any cache could be hit
    (tmp_path / "ds" / "state.json").write_text(json.dumps({**state, "_format_type": "arrow"}))  # still read
    (unit,) = Corpus("dataset", (str(tmp_path / "ds"),)).units()
    assert list(documents(unit)) == ["some words here"] * 5


def test_a_dataset_folder_named_twice_is_read_once(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["one", "two"]}).save_to_disk(str(tmp_path / "ds" / "good"))
    monkeypatch.chdir(tmp_path / "ds")
    corpus = Corpus("dataset", ("good", "good/", "../ds/good", str(tmp_path / "ds" / "good")))
    assert corpus.files() == [Path("good")] and len(corpus.units()) == 1


def test_an_empty_dataset_folder_is_called_empty(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SourceError, match=r"empty: an empty folder; data=dataset reads a folder written by"):
        Corpus("dataset", (str(tmp_path / "empty"),)).fingerprint()
