"""export's refusals that need no trained run (the exports themselves: tests/test_huggingface.py)."""

import pytest

from lightning_llm import registry
from lightning_llm.export import _export_refusal


def test_an_objective_declares_why_its_runs_are_not_exported(own_registry):
    """The refusal is the objective's declaration (``export_refusal``), not a name the exporter knows: a
    third-party objective gets the same treatment as the built-in classifier."""

    @registry.register("objective", "reward_model")
    class RewardModel:
        export_refusal = "its scalar head scores answers; no exported architecture has one"

    assert "holds this run's own labels" in _export_refusal({"name": "classification", "tokenizer": None})
    assert _export_refusal({"name": "reward_model"}) == RewardModel.export_refusal
    for kept in ({"name": "causal_lm"}, {"name": "masked_lm_nsp"}, {"name": "not_installed"}, None):
        assert _export_refusal(kept) is None


def test_an_export_into_a_run_folder_is_refused(tmp_path):
    """The run's next launch would refuse a folder holding files no run writes."""
    from lightning_llm.export import _check_not_in_a_run

    run = tmp_path / "run"
    (run / ".hydra").mkdir(parents=True)
    (run / ".lock").write_text("")
    with pytest.raises(ValueError, match=r"--out .*/run/hf is inside the run folder .*could not be resumed"):
        _check_not_in_a_run(run / "hf")
    _check_not_in_a_run(tmp_path / "hf")  # beside it: fine


def test_merge_lora_for_a_run_without_adapters_is_refused(tmp_path):
    """A flag that would do nothing was accepted in silence: most likely the wrong run."""
    from lightning_llm.export import export
    from tests.test_checkpoint import make_run

    run_dir, _, _ = make_run(tmp_path / "run")
    with pytest.raises(ValueError, match=r"--merge-lora: .*run has no LoRA adapters"):
        export(run_dir, tmp_path / "out", merge_lora=True)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("below", ["sub", "sub/deeper"])
def test_an_out_below_a_file_names_the_file(tmp_path, capsys, below):
    """It said "cannot create it (File exists)", naming neither the file nor what is wrong with it."""
    from lightning_llm.export import main
    from tests.test_checkpoint import make_run

    run_dir, _, _ = make_run(tmp_path / "run")
    (tmp_path / "userfile").write_text("mine")
    out = tmp_path / "userfile" / below
    assert main([str(run_dir), "--out", str(out)]) == 2
    expected = f"--out {out}: {tmp_path / 'userfile'} is a file, not a folder; name another --out"
    assert capsys.readouterr().err == f"error: {expected}\n"
    assert (tmp_path / "userfile").read_text() == "mine"
