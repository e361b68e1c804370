"""The hyperparameter search: it finishes and names the best trial, continues an interrupted study without
re-running finished trials, prunes trials that fall behind, and rejects a bad search space in one line."""

import math
import os
import shutil
import time
import types

import optuna
import pytest
import torch
import yaml
from hydra.core.override_parser.overrides_parser import OverridesParser
from lightning.pytorch.trainer.states import TrainerFn
from optuna.trial import TrialState

from lightning_llm import search
from tests.conftest import TINY

MAX_STEPS = 8  # validation every 4 steps: the pruner sees steps 4 and 8


def overrides(tmp_path, cache_dir, params, *extra):
    """A tiny search over ``params`` (the gpt_lr search space replaced), with its study in tmp_path."""
    return [
        *TINY,
        f"paths.cache_dir={cache_dir}",
        "data.batch_size=32",  # few, large batches over a small val split: the final pass over it is most
        "data.val_fraction=0.01",  # of a tiny trial
        "scheduler.warmup_steps=0",
        "hparams_search=gpt_lr",
        f"search.dir={tmp_path / 'study'}",
        "search.sampler.name=random",
        "~search.sampler.n_startup_trials",
        "search.pruner.name=none",
        "~search.pruner.n_startup_trials",
        "~search.pruner.n_warmup_steps",
        "~search.params",
        f"+search.params={params}",
        *extra,
    ]


LR = "{optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}}"


def open_study(tmp_path):
    (tmp_path / "study").mkdir(exist_ok=True)
    storage = f"sqlite:///{tmp_path / 'study' / 'study.db'}"
    return optuna.create_study(
        storage=storage, study_name="gpt_lr", direction="minimize", load_if_exists=True
    )


@pytest.mark.slow
def test_search_runs_its_trials_and_writes_the_best(tmp_path, cache_dir, capsys):
    study = search.search(overrides(tmp_path, cache_dir, LR, "search.n_trials=3"))

    assert [t.state for t in study.trials] == [TrialState.COMPLETE] * 3
    best = yaml.safe_load((tmp_path / "study" / "best.yaml").read_text())
    values = {t.number: t.value for t in study.trials}
    assert best["value"] == min(values.values()) and values[best["trial"]] == best["value"]
    assert best["params_overrides"] == [f"optim.lr={study.trials[best['trial']].params['optim.lr']!r}"]
    assert "hparams_search=gpt_lr" not in best["overrides"] and best["overrides"][-1].startswith("optim.lr=")
    run_dir = tmp_path / "study" / f"trial_{best['trial']}"
    assert yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())["optim"]["lr"] == pytest.approx(
        study.trials[best["trial"]].params["optim.lr"]
    )
    assert "search" not in yaml.safe_load((run_dir / ".hydra" / "config.yaml").read_text())  # nor did train()
    assert (run_dir / "summary.json").is_file() and (run_dir / "train.log").is_file()
    printed = capsys.readouterr().out
    assert "trial  state     val_loss" in printed and f"best: trial {best['trial']}" in printed


@pytest.mark.slow
def test_a_restarted_search_keeps_finished_trials_and_resumes_an_interrupted_one(tmp_path, cache_dir):
    search.search(overrides(tmp_path, cache_dir, LR, "search.n_trials=2"))
    study = open_study(tmp_path)
    first = {t.number: (t.params, t.value) for t in study.trials}
    summaries = {n: (tmp_path / "study" / f"trial_{n}" / "summary.json").stat().st_mtime_ns for n in first}
    # A process killed during trial 2: RUNNING in the study, its heartbeat stopped, its run folder holding a
    # checkpoint. (Heartbeats, not process ids: the search may have run on another machine.)
    shutil.copytree(tmp_path / "study" / "trial_1", tmp_path / "study" / "trial_2")
    storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 'study' / 'study.db'}", heartbeat_interval=1)
    study = optuna.load_study(storage=storage, study_name="gpt_lr")
    study.enqueue_trial(study.trials[1].params)
    killed = study.ask()
    killed.suggest_float("optim.lr", 1e-3, 1e-2, log=True)  # the enqueued value
    # recorded where the search folder was before it moved: only the folder's name is taken from a study
    killed.set_user_attr("run_dir", str(tmp_path / "moved_from" / "trial_2"))
    storage.record_heartbeat(killed._trial_id)  # its last sign of life
    time.sleep(2.5)  # over the grace period, in the database's whole seconds

    heartbeat = ["search.heartbeat_interval=1", "search.grace_period=1"]
    study = search.search(overrides(tmp_path, cache_dir, LR, "search.n_trials=4", *heartbeat))

    states = [t.state for t in study.trials]
    assert states == [TrialState.COMPLETE, TrialState.COMPLETE, TrialState.FAIL, *[TrialState.COMPLETE] * 2]
    assert search.counted(study) == 4  # the interrupted trial's retry takes its place
    for number, (params, value) in first.items():  # the finished trials were kept, not run again
        assert (study.trials[number].params, study.trials[number].value) == (params, value)
        summary = tmp_path / "study" / f"trial_{number}" / "summary.json"
        assert summary.stat().st_mtime_ns == summaries[number]
    retry = study.trials[3]
    assert retry.user_attrs["retry_of"] == 2 and retry.params == killed.params
    assert retry.user_attrs["run_dir"] == str(tmp_path / "study" / "trial_2")
    # It continued from the checkpoint at the last step: no training, so no validation during fit, and the
    # same weights as trial 1 give the same loss.
    assert retry.intermediate_values == {} and retry.user_attrs["step"] == MAX_STEPS
    assert retry.value == pytest.approx(first[1][1], rel=1e-6)


@pytest.mark.slow
def test_trials_that_fall_behind_are_pruned_and_bad_ones_fail_without_stopping_the_search(
    tmp_path, cache_dir
):
    lr = "optim.lr: {type: categorical, choices: [1.0e-2, 1.0e-6]}"
    params = f"{{{lr}, model.n_head: {{type: int, low: 2, high: 3}}}}"
    study = open_study(tmp_path)
    study.enqueue_trial({"optim.lr": 1e-2, "model.n_head": 2})  # learns: runs to the end
    study.enqueue_trial({"optim.lr": 1e-6, "model.n_head": 2})  # barely moves: behind the median at step 4
    study.enqueue_trial({"optim.lr": 1e-2, "model.n_head": 3})  # 32 channels do not split over 3 heads
    pruner = [
        "search.pruner.name=median",
        "+search.pruner.n_startup_trials=1",
        "+search.pruner.n_warmup_steps=0",
    ]

    study = search.search(overrides(tmp_path, cache_dir, params, "search.n_trials=3", *pruner))

    good, slow, invalid = study.trials
    assert good.state == TrialState.COMPLETE and sorted(good.intermediate_values) == [4, 8]
    assert slow.state == TrialState.PRUNED and slow.last_step == 4 < MAX_STEPS
    assert slow.user_attrs["note"].startswith("pruned: val/loss=")
    assert slow.intermediate_values[4] > good.intermediate_values[4]
    slow_dir = tmp_path / "study" / "trial_1"
    assert not (slow_dir / "summary.json").exists()
    assert "val/loss" in (slow_dir / "csv" / "version_0" / "metrics.csv").read_text()  # loggers finalised
    from lightning_llm.report import load_run_record

    assert load_run_record(slow_dir)["status"] == "pruned"  # not "unfinished" in the report
    assert invalid.state == TrialState.FAIL and "n_head" in invalid.user_attrs["note"]
    assert yaml.safe_load((tmp_path / "study" / "best.yaml").read_text())["trial"] == 0


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        (
            "{optim.lr: {type: float, low: 1.0e-2, high: 1.0e-4}}",
            "search.params.optim.lr: low=0.01 is above high",
        ),
        (
            "{optim.lr: {type: float, low: 0, high: 1, log: true}}",
            "search.params.optim.lr: log scale needs low > 0",
        ),
        ("{optim.lr: {type: floaty, low: 0, high: 1}}", "search.params.optim.lr: needs 'type: float'"),
        ("{optim.lr: {type: float, lo: 0, high: 1}}", "search.params.optim.lr: float has no field 'lo'"),
        (
            "{model.n_layer: {type: int, low: 2, high: 4.5}}",
            "search.params.model.n_layer.high=4.5: int needs an",
        ),
        (
            "{optim: {type: categorical, choices: []}}",
            "search.params.optim: categorical needs a non-empty list",
        ),
        (
            "{optim.lrr: {type: float, low: 0.1, high: 1}}",
            "optim 'adamw' has no parameter 'lrr' (did you mean",
        ),
        ("{optim: {type: categorical, choices: [adam, adamx]}}", "search.params.optim=adamx: unknown optim"),
        (  # Optuna searched only 0 of [0, 2] with step 50, with a warning
            "{scheduler.warmup_steps: {type: int, low: 0, high: 2, step: 50}}",
            "high - low = 2 is not a whole number of steps of 50",
        ),
    ],
)
def test_a_bad_search_space_fails_in_one_line_naming_the_key(params, expected, tmp_path, cache_dir):
    with pytest.raises(SystemExit) as exit_info:
        search.main(overrides(tmp_path, cache_dir, params))
    assert exit_info.value.code == 2
    message = exit_info.value.line
    assert message.startswith("error: ") and "\n" not in message
    assert expected in message, message
    assert not (tmp_path / "study").exists()  # no study, no trial folders


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        ("search.pruner.name=medain", "search.pruner.name='medain': choose one of: none, median"),
        ("+search.sampler.n_startup=3", "search.sampler (random): "),
        ("search.direction=up", "search.direction='up': choose minimize or maximize"),
        ("search.heartbeat_interval=10000000000", "search.heartbeat_interval=10000000000: needs an"),
        ("search.grace_period=1", "search.grace_period=1: must be at least search.heartbeat_interval=60"),
        ("search.sampler.seed=abc", "search.sampler.seed='abc': needs a whole number >= 0"),  # a traceback
        ("search.sampler.seed=1.5", "search.sampler.seed=1.5: needs a whole number"),  # was taken as 1
        ("+search.n_trails=3", "search.n_trails is not a search setting"),
        ("search.storage=notaurl", "search.storage=notaurl: cannot open it as an Optuna storage"),
        ("search.storage=sqlite://", "an in-memory database ends with the process"),  # lost at the end
        ("search.study_name=../../escaped", "search.study_name='../../escaped': a plain name"),
        ("search.storage=postgresql://me:secret@host/db", "search.storage=postgresql://me:***@host/db: "),
        ("--config-dir", "--config-dir: python -m lightning_llm.search takes overrides only"),
        ("data.paths=[~/x]", "cannot parse the override 'data.paths=[~/x]'"),
        ("search.params.optim.lr.low=1e-3", "search.params's key 'optim.lr' holds dots"),  # listed no keys
    ],
)
def test_a_bad_search_setting_flag_or_override_fails_in_one_line(extra, expected, tmp_path, cache_dir):
    with pytest.raises(SystemExit) as exit_info:
        search.main(overrides(tmp_path, cache_dir, LR, extra))
    assert exit_info.value.code == 2
    message = exit_info.value.line
    assert expected in message and "\n" not in message and "secret" not in message, message
    assert not (tmp_path / "study").exists()


@pytest.mark.parametrize("value", [1e-05, 0.003, 3, True, None, "adamw", "a b", "1e-3", "it's", "null"])
def test_a_sampled_value_survives_the_override_round_trip(value):
    (parsed,) = OverridesParser.create().parse_overrides([search.as_override("optim.lr", value)])
    assert parsed.value() == value and type(parsed.value()) is type(value)


def test_sampler_seed_moves_on_when_a_search_continues():
    first = search.build_sampler({"name": "random", "seed": 7}, seed_offset=0)
    resumed = search.build_sampler({"name": "random", "seed": 7}, seed_offset=2)
    space = optuna.distributions.FloatDistribution(0, 1)
    draws = [s.sample_independent(None, None, "x", space) for s in (first, resumed)]  # type: ignore[arg-type]
    assert not math.isclose(*draws)


def test_a_trial_with_a_live_heartbeat_is_left_running_wherever_it_runs(tmp_path):
    """A trial another search process is running (its heartbeat is fresh, whatever machine it is on) is not
    retried, and counts towards n_trials; one whose heartbeat stopped is failed and queued again."""
    settings = search.Settings(
        metric="val_loss",
        study_name="s",
        direction="minimize",
        n_trials=3,
        dir=tmp_path,
        storage=f"sqlite:///{tmp_path / 'study.db'}",
        heartbeat_interval=1,
        grace_period=1,
        sampler={"name": "random"},
        pruner={"name": "none"},
        params={},
    )
    study = search.open_study(settings)
    live, dead = study.ask(), study.ask()
    study._storage.record_heartbeat(dead._trial_id)
    time.sleep(2.5)
    study._storage.record_heartbeat(live._trial_id)
    optuna.storages.fail_stale_trials(study)
    states = [t.state for t in study.trials]
    assert states == [TrialState.RUNNING, TrialState.FAIL, TrialState.WAITING]  # the dead one queued again
    assert search.counted(study) == 1  # the live one; the failed one's retry counts once it runs


def test_a_trial_folder_or_best_yaml_the_search_did_not_write_stops_it_untouched(tmp_path, cache_dir):
    study_dir = tmp_path / "study"
    (study_dir / "trial_0").mkdir(parents=True)
    (study_dir / "trial_0" / "notes.txt").write_text("mine")
    with pytest.raises(search.ConfigError, match=r"trial_0 holds files that are not a lightning_llm run"):
        search.search(overrides(tmp_path, cache_dir, LR, "search.n_trials=1"))
    assert sorted(p.name for p in (study_dir / "trial_0").iterdir()) == ["notes.txt"]
    (study_dir / "best.yaml").write_text("my: notes\n")
    with pytest.raises(search.ConfigError, match=r"holds a best.yaml that search 'gpt_lr' did not write"):
        search.search(overrides(tmp_path, cache_dir, LR, "search.n_trials=1"))
    assert (study_dir / "best.yaml").read_text() == "my: notes\n"


@pytest.mark.slow
def test_an_optimized_metric_that_validation_does_not_log_stops_the_search_at_its_first_validation(
    tmp_path, cache_dir
):
    argv = overrides(tmp_path, cache_dir, LR, "search.n_trials=3", "optimized_metric=val_bleu")
    with pytest.raises(SystemExit) as exit_info:
        search.main(argv)
    assert exit_info.value.code == 2
    assert "optimized_metric=val_bleu is not logged by validation; it logs: [" in exit_info.value.line
    assert "'val_loss'" in exit_info.value.line
    (trial,) = open_study(tmp_path).trials  # no second trial
    assert trial.state == TrialState.FAIL
    rows = (tmp_path / "study" / "trial_0" / "csv" / "version_0" / "metrics.csv").read_text().splitlines()
    assert max(int(row.split(",")[0]) for row in rows[1:] if row) <= MAX_STEPS // 2  # stopped at step 4


def test_pruning_reads_val_perplexity_from_the_summary_not_the_validation():
    trainer = types.SimpleNamespace(
        sanity_checking=False,
        state=types.SimpleNamespace(fn=TrainerFn.FITTING),
        callback_metrics={"val/loss": torch.tensor(2.0)},
        global_step=4,
    )
    search.Pruning(trial=None, monitor="val/perplexity").on_validation_end(trainer, None)  # derived later
    with pytest.raises(search.ConfigError, match=r"optimized_metric=val_acc is not logged.*\['val_loss'\]"):
        search.Pruning(trial=None, monitor="val/acc").on_validation_end(trainer, None)


def test_a_database_the_search_did_not_make_is_left_untouched(tmp_path, cache_dir):
    """Optuna would add its tables to any SQLite file named study.db in search.dir."""
    import hashlib
    import sqlite3

    (tmp_path / "study").mkdir()
    mine = tmp_path / "study" / "study.db"
    with sqlite3.connect(mine) as database:
        database.execute("CREATE TABLE mine (x)")
    before = hashlib.sha256(mine.read_bytes()).hexdigest()
    with pytest.raises(search.ConfigError, match=r"study.db is another program's database \(tables: mine\)"):
        search.search(overrides(tmp_path, cache_dir, LR, "search.n_trials=1"))
    assert hashlib.sha256(mine.read_bytes()).hexdigest() == before
    mine.write_text("my notes")
    with pytest.raises(search.ConfigError, match=r"study.db is not an SQLite database"):
        search.search(overrides(tmp_path, cache_dir, LR, "search.n_trials=1"))


def test_a_study_names_a_retried_trials_folder_only_inside_the_search_folder():
    """A crafted (or moved) study.db recorded a dead trial's run_dir as any path: the retry trained there,
    over a finished run elsewhere."""
    from lightning_llm.search import _trial_folder_name

    assert _trial_folder_name("/old/place/trial_7", 9) == "trial_7"
    for recorded in ("/home/me/victim_run", "../trial_x", None, 5, "/etc/trial_1/../passwd"):
        assert _trial_folder_name(recorded, 9) == "trial_9"


@pytest.mark.parametrize(
    "case", ["run folder", "user folder", "linked study", "hard-linked study", "foreign tables"]
)
def test_a_search_folder_or_study_that_is_not_a_searchs_is_refused(tmp_path, cache_dir, case):
    """A search wrote study.db, best.yaml and trial folders into a finished run's folder or a user's; a
    study.db linked elsewhere, or a database with a table named ``studies``, got Optuna's tables."""
    import sqlite3

    study = tmp_path / "study"
    study.mkdir()
    expected = "holds files a search does not write"
    if case == "run folder":
        (study / ".hydra").mkdir()
        (study / "summary.json").write_text("{}")
    elif case == "user folder":
        (study / "notes.txt").write_text("mine")
    elif case == "linked study":
        (tmp_path / "mine.db").write_bytes(b"")
        (study / "study.db").symlink_to(tmp_path / "mine.db")
        expected = "study.db is a link"
    elif case == "hard-linked study":  # another search's database: its file gets this study too
        (tmp_path / "other.db").write_bytes(b"")
        os.link(tmp_path / "other.db", study / "study.db")
        expected = "study.db is a link"
    else:
        with sqlite3.connect(study / "study.db") as database:
            database.execute("CREATE TABLE studies (x INTEGER)")
        expected = "is another program's database (tables: studies)"
    before = sorted(p.name for p in study.iterdir())
    with pytest.raises(SystemExit) as exit_info:
        search.main(overrides(tmp_path, cache_dir, LR))
    assert exit_info.value.code == 2 and expected in exit_info.value.line, exit_info.value.line
    assert sorted(p.name for p in study.iterdir()) == before


def test_a_shorter_grace_period_is_refused_while_a_trial_runs_in_a_live_process(tmp_path, cache_dir):
    """A second search with a shorter grace period took the first one's live trial for dead: Optuna failed it
    in that process (a traceback there) and the retry here met its locked folder."""
    import subprocess
    import sys

    (tmp_path / "study").mkdir()
    storage = optuna.storages.RDBStorage(
        f"sqlite:///{tmp_path / 'study' / 'study.db'}", heartbeat_interval=60
    )
    study = optuna.create_study(storage=storage, study_name="gpt_lr")
    study.set_user_attr("grace_period", 120)
    running = study.ask()
    running.set_user_attr("run_dir", str(tmp_path / "study" / f"trial_{running.number}"))
    holder = subprocess.Popen(  # the first search's trial process, holding its run folder
        [sys.executable, "-c", "import time; from lightning_llm import run_folder; "
         f"run_folder.lock({str(tmp_path / 'study' / 'trial_0')!r}); print('held', flush=True); "
         "time.sleep(60)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(SystemExit) as exit_info:
            search.main(
                overrides(tmp_path, cache_dir, LR, "search.grace_period=1", "search.heartbeat_interval=1")
            )
        assert "trial 0 is running (pid" in exit_info.value.line and "use 120" in exit_info.value.line
    finally:
        holder.kill()
        holder.wait()
    from lightning_llm.run_folder import holder as folder_holder

    assert folder_holder(tmp_path / "study" / "trial_0") is None  # gone: a shorter wait is fine again


@pytest.mark.slow
def test_a_trial_folder_another_study_wrote_is_refused(tmp_path, cache_dir):
    """Two searches sharing one search.dir on different storages: the second one's retry of its trial 0
    resumed over the first one's finished trial_0. Each trial folder now names its study and storage."""
    trial = tmp_path / "study" / "trial_0"
    trial.mkdir(parents=True)
    (trial / "search_trial.json").write_text('{"study": "other", "storage": "sqlite:////elsewhere.db"}\n')
    (trial / ".lock").write_text("pid 1 on elsewhere since 2026-01-01 00:00:00\n")  # a launch made it
    with pytest.raises(SystemExit) as exit_info:
        search.main(overrides(tmp_path, cache_dir, LR))
    assert exit_info.value.code == 2
    assert "trial_0 is a trial of another study" in exit_info.value.line, exit_info.value.line
    assert sorted(p.name for p in trial.iterdir()) == [".lock", "search_trial.json"]
    # The refused trial trained nothing and does not count: run again, the search trains the trial asked
    # for (it counted the refusal as a failed trial and was done).
    study = search.search(overrides(tmp_path, cache_dir, LR, "search.n_trials=1"))
    states = [t.state.name for t in study.trials]
    assert states == ["FAIL", "COMPLETE"], states
    assert study.trials[0].user_attrs["note"].startswith("refused before training: search.dir")
    assert sorted(p.name for p in trial.iterdir()) == [".lock", "search_trial.json"]


def test_every_search_setting_may_be_given_whether_or_not_its_preset_writes_it(tmp_path):
    """gpt_shape does not write grace_period: ``search.grace_period=500`` was "not a setting" (only the
    ``+`` form worked), though --help and the README list it."""
    given = ["hparams_search=gpt_shape", "search.grace_period=500", "search.heartbeat_interval=7"]
    settings = search.Settings.from_config(
        search.compose(search.with_search_settings(search.with_search_group(given)))
    )
    assert (settings.grace_period, settings.heartbeat_interval) == (500, 7)


def test_search_params_on_the_command_line_replace_the_presets():
    """``search.params={...}`` merged into the preset's ranges (optim.lr was searched as well), and
    ``search.params={}`` was no change at all."""
    shape = "{model.n_embd: {type: int, low: 32, high: 64, step: 32}}"

    def params(*given: str) -> list[str]:
        composed = search.compose(search.with_search_settings(search.with_search_group(list(given))))
        return list(composed.search.params)

    assert "optim.lr" in params("hparams_search=gpt_lr")
    assert params("hparams_search=gpt_lr", f"search.params={shape}") == ["model.n_embd"]
    assert params("hparams_search=gpt_lr", "search.params={}") == []


def test_a_mistake_beside_a_preset_of_ones_own_is_the_one_named(tmp_path):
    """With a preset from hydra.searchpath, a misspelt setting was reported as the (valid) first override
    under search, "no setting or group 'search'": the group choices were composed without the searchpath."""
    (tmp_path / "hparams_search").mkdir()
    (tmp_path / "hparams_search" / "mine.yaml").write_text(
        "# @package _global_\nsearch:\n  n_trials: 2\n  params:\n"
        "    optim.lr: {type: float, low: 1.0e-3, high: 1.0e-2}\n"
    )
    with pytest.raises(SystemExit) as refused:
        search.main(["hparams_search=mine", f"hydra.searchpath=[file://{tmp_path}]", "search.n_trials=3",
                     "search.n_trialz=2"])  # fmt: skip
    assert refused.value.code == 2
    assert "search.n_trialz is not a setting; did you mean search.n_trials?" in refused.value.line


def test_a_study_continued_with_other_training_overrides_is_refused_and_best_yaml_keeps_its_own(tmp_path):
    """Continued with trainer.max_steps=3 after 300-step trials, a study ranked 3-step trials against them,
    and best.yaml's overrides read `trainer.max_steps=300 ... trainer.max_steps=3`: the best trial trained
    again for 3 steps."""
    study = optuna.create_study(direction="minimize")
    settings = types.SimpleNamespace(
        dir=tmp_path, study_name="s", params={"optim.lr": {}}, metric="val_loss", direction="minimize"
    )
    started = ["model.n_layer=2", "trainer.max_steps=300", "hparams_search=gpt_lr", "search.n_trials=4"]
    search._check_same_training(study, settings, started)
    search._check_same_training(study, settings, [*reversed(started[:2]), "search.n_trials=8"])  # the same
    with pytest.raises(
        search.ConfigError,
        match=r"was started with the overrides \[model.n_layer=2 trainer."
        r"max_steps=300\], not \[model.n_layer=2 trainer.max_steps=300 trainer.max_steps=3\]",
    ):
        search._check_same_training(study, settings, [*started, "trainer.max_steps=3"])
    study.add_trial(
        optuna.trial.create_trial(
            params={"optim.lr": 1e-3},
            distributions={"optim.lr": optuna.distributions.FloatDistribution(1e-4, 1e-2)},
            value=4.0,
        )
    )
    best = search.write_best(study, settings)
    assert best["overrides"] == ["model.n_layer=2", "trainer.max_steps=300", "optim.lr=0.001"]
