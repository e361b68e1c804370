"""The command line as a user meets it: typos fail fast with one short message, before any work."""

import os
import subprocess
import sys

import pytest

from lightning_llm import cli
from tests.reliability.test_bad_inputs import refused_before_hydra


def run_cli(*args, timeout=120, env=None):
    return subprocess.run(
        [sys.executable, "-m", "lightning_llm", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HYDRA_FULL_ERROR": "", **(env or {})},
    )


BAD_OVERRIDES = [
    (["model=gtp"], "unknown model 'gtp' (did you mean 'gpt'?); valid model names:"),
    (["optim.lrr=1"], "optim.lrr: optim 'adamw' has no parameter 'lrr' (did you mean 'lr'?)"),
    (["optim=adam", "optim.lr=abc"], "optim.lr='abc' is not a valid float for optim 'adam'"),
    (["optim=sgd", "optim.betas=1"], "optim.betas: optim 'sgd' has no parameter 'betas'"),
    (["tokenizer=pretrained"], "tokenizer.path is required by tokenizer 'pretrained'"),
    (["model.positions=alibi"], "choose one of: learned, rotary"),
    (["+optim._target_=os.system"], "refused"),
    (["-m", "optim=adam,adamx"], "unknown optim 'adamx'"),
    (["-m", "optim.lr=1e-3,abc"], "optim.lr='abc' is not a valid float"),
    (["-m", "optim.lr=1e-3,-1"], "optim.lr must be > 0, got -1"),  # a value the optimizer itself refuses
    (["-m", "trainer.max_steps=10", "scheduler.warmup_steps=5,50"], "scheduler.warmup_steps=50 is longer"),
    (["logger=wandbb"], "unknown logger 'wandbb' (did you mean 'wandb'?)"),
    (["+foo=1"], "foo is not a setting; valid at the top level: metrics, seed"),
    (["tokenizr.vocab_size=3"], "no setting or group 'tokenizr'; did you mean tokenizer?"),
    (["+callbacks.early_stoping.patience=3"], "did you mean callbacks.early_stopping?"),
    (["+callbacks.throughput.every=5"], "callbacks.throughput.every is not a setting; valid in"),
    (
        ["+parallel.fp8=true"],
        "parallel.fp8 is not a setting; valid in parallel: activation_checkpointing",
    ),
    (["parallel.float8=maybe"], "parallel.float8='maybe' is not true or false"),
    (["logger=csv", "+logger.project=x"], "logger.project is not a setting; valid in logger: name"),
    (["data.paths=[~/corpus/*.txt]"], "cannot parse the override 'data.paths=[~/corpus/*.txt]' at '~'"),
    # An optional group (experiment, hparams_search, debug): Hydra would skip a choice it cannot find.
    (["experiment=gpt_tinyy"], "unknown experiment 'gpt_tinyy' (did you mean 'gpt_tiny'?); valid experiment"),
    (["-m", "experiment=gpt_tiny,bert_tinyy"], "unknown experiment 'bert_tinyy' (did you mean 'bert_tiny'?)"),
    (["debug=fastt"], "unknown debug 'fastt' (did you mean 'fast'?); valid debug names: fast"),
    (["model=null"], "model=null: choose one of: decoder, encoder, gpt; leave model out for the default"),
    # A key its section does not have: Hydra says only "Could not override".
    (
        ["trainer.max_stepss=3"],
        "trainer.max_stepss is not a setting; did you mean trainer.max_steps? valid in",
    ),
    (
        ["callbacks.checkpoint.save_top_kk=2"],
        "did you mean callbacks.checkpoint.save_top_k? valid in callbacks",
    ),
    (["experiment=null"], "experiment=null: choose one of: bert_base, "),
    # Values that used to pass the checks and fail later: after training, or in Lightning's own words.
    (["callbacks.samples.prompt=1984"], "callbacks.samples.prompt=1984: must be a string"),
    (["callbacks.nan_guard.action=explode"], "callbacks.nan_guard.action='explode': must be stop or skip"),
    (["trainer.deterministic=maybe"], "trainer.deterministic='maybe': must be true, false, warn or null"),
    (["seed=${oc.env:LIGHTNING_LLM_UNSET_VARIABLE}"], "seed: KeyError raised while resolving interpolation"),
    (["eval=5"], "eval=5: eval is a section; set eval.max_batches=N"),
    (["task_name=a/b"], "task_name='a/b': a name for the run's log file and folder"),
    (["--cfg", "job", "experiment=nope"], "unknown experiment 'nope'"),  # printed the defaults before
    (["callbacks.samples=5"], "callbacks.samples is a section of settings"),
    (["~callbacks.samples"], "callbacks.samples is a section of settings"),
    (["~trainer.max_steps"], "trainer.max_steps is required (it was removed)"),
    (["+trainer.callbacks=[]"], "trainer.callbacks is set by lightning_llm itself; add callbacks with"),
    (["+trainer.default_root_dir=/tmp"], "trainer.default_root_dir is set by lightning_llm itself"),
    # Lightning refused these only once the run had started, naming objects the user never set, or (the
    # last) changed the run without a word
    (
        ["+trainer.barebones=true"],
        "trainer.barebones is set by lightning_llm itself; it turns off the logging",
    ),
    (["+trainer.enable_checkpointing=false"], "checkpoints follow callbacks.checkpoint (save_top_k=0 and"),
    (["+trainer.fast_dev_run=true"], "trainer.fast_dev_run is set by lightning_llm itself; for a quick run"),
    (["model.n_layer=100000000"], "model.n_layer=100000000: at most 10,000 layers"),
    (["metrics=[accuracy,accuracy]"], "metrics[1]: accuracy is listed twice; list each metric once"),
    (["--config-dir", "/nonexistent/presets"], "--config-dir /nonexistent/presets: not a folder"),
    (["trainer.val_check_interval=0.5"], "a fraction of an epoch needs trainer.check_val_every_n_epoch"),
    (["logger=wandb", "logger.project=a/b"], "logger.project='a/b': a W&B project name has 1 to 128"),
    (["logger=wandb", f"logger.tags=[{'x' * 65}]"], "is not a W&B tag (a string of 1 to 64 characters)"),
    # OmegaConf turns any integer into a bool: 2 was silently true.
    (["logger=csv", "logger.name=x/y"], "logger.name='x/y' is not a logger; choose one of: wandb, csv"),
    (["model.bias=2"], "model.bias=2 is not true or false"),
    (["-m", "model.bias=true,2"], "model.bias=2 is not true or false"),
    (["--cfg", "job", "parallel.float8=3"], "parallel.float8=3 is not true or false"),
    (["parallel.float8=no"], "parallel.float8='no' is not true or false"),  # a true string to Python
    (["model.lora.adapters_only=1"], "model.lora.adapters_only=1 is not true or false"),
    (["optim.decay_embeddings=0.0"], "optim.decay_embeddings=0.0 is not true or false"),
    (["trainer.enable_progress_bar=no"], "trainer.enable_progress_bar='no': must be true or false, or null"),
    (["callbacks.checkpoint.save_last=2"], "callbacks.checkpoint.save_last=2: must be true or false"),
    # 3.3 trillion parameters: the kernel's OOM killer ended the run without a word
    (
        ["model.n_layer=64", "model.n_embd=65536", "model.n_head=8"],
        "model=gpt: its 3.3e+03B parameters and its buffers",
    ),
    # a path setting that cannot be looked up: each was a traceback from the part that read it first
    (["model.init_from='~no_user_zq/gpt2'"], "model.init_from=~no_user_zq/gpt2: its ~ names no home folder"),
    (["paths.cache_dir='~no_user_zq/c'"], "paths.cache_dir=~no_user_zq/c: its ~ names no home folder"),
    (["tokenizer=pretrained", "tokenizer.path='~no_user_zq/t.json'"], "tokenizer.path=~no_user_zq/t.json"),
    (["ckpt_path=" + "/tmp/" + "c" * 300], "cannot be looked up (File name too long)"),
    (["data=text", "data.paths=['/tmp/" + "d" * 300 + "/*.txt']"], "cannot be looked up (File name"),
    # a top-level setting every run reads, removed: tracebacks, ~eval after a whole run had trained
    (["~eval"], "eval: removed or null, but every run reads it"),
    (["eval=null"], "eval: removed or null, but every run reads it"),
    (["~seed"], "seed: removed or null"),
    (["~parallel"], "parallel: removed or null"),
    (["~task_name"], "hydra.job.name: Interpolation key 'task_name' not found"),
    (["optim.lr=${nothere}"], "optim.lr: Interpolation key 'nothere' not found"),  # was three lines
    (["--cfg", "job", "optim.lr=${nothere}"], "optim.lr: Interpolation key 'nothere' not found"),
    (["paths.cache_dir=''"], "paths.cache_dir='': an empty folder name means the current folder"),
    (["-m", "optim=glob(*)"], "optim=glob(*): list the options to sweep instead of a glob"),
    (["-m", "optim.lr=interval(0,1)"], "optim.lr=interval(0,1): a search space (IntervalSweep)"),
    # Values the objective and the metrics refuse when built: refused once the tokenizer was trained, by
    # every job of a sweep (the objective is built on a stand-in tokenizer, which it uses only after)
    (["-m", "model=encoder", "objective.mask_prob=0.15,2"], "objective.mask_prob must be in (0, 1), got 2.0"),
    (["-m", "model=decoder", "objective.num_beams=1,0"], "objective.num_beams must be >= 1, got 0"),
    (["metrics=[{name: bleu, n_gram: 0}]"], "metrics[0]: bleu n_gram must be >= 1, got 0"),
    (["metrics=[accuracy, {name: f1, num_classes: 0}]"], "metrics[1]: metric f1 needs num_classes >= 1"),
    # Hydra's words for these said neither what was wrong nor what to write instead
    (["optim.decay_embedding=true"], "has no parameter 'decay_embedding' (did you mean 'decay_embeddings'?)"),
    (["model.init_fro=x"], "(did you mean 'init_from'?); its parameters: n_layer"),
    (["~optim.lr"], "~optim.lr: optim.lr cannot be removed (its section needs a value); set it instead"),
    (["~parallel.compile"], "parallel.compile cannot be removed"),
    (["+trainer.max_epochs=3"], "trainer.max_epochs is already a setting; change it without the '+'"),
]


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("model:\n  bias: 2", "model.bias=2 is not true or false"),
        ("parallel:\n  compile: 3", "parallel.compile=3 is not true or false"),
        ("model:\n  lora:\n    rank: 4\n    adapters_only: 1", "model.lora.adapters_only=1 is not true"),
        ("trainer:\n  enable_progress_bar: 2", "trainer.enable_progress_bar=2: must be true or false"),
    ],
)
def test_a_number_for_a_switch_in_a_preset_file_is_refused_too(tmp_path, setting, expected):
    """OmegaConf turns a number into a bool as it merges into a typed node, from a preset file as from the
    command line: the typed nodes keep switches as written, and every one is checked however it was set."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(f"# @package _global_\n{setting}\n")
    line = refused_before_hydra(
        "--config-dir", str(tmp_path), "experiment=mine", f"hydra.run.dir={tmp_path / 'run'}"
    )
    assert expected in line
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(("args", "expected"), BAD_OVERRIDES)
def test_bad_overrides_fail_with_one_short_message(args, expected, tmp_path):
    """Through the command's entry point in this process: one line, before anything is built."""
    line = refused_before_hydra(*args, f"hydra.run.dir={tmp_path / 'run'}")
    assert expected in line
    assert not (tmp_path / "run").exists()  # nothing was built, no half-made run folder


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"# @package _global_\nmodel:\n  n_layer: [\n", "not readable YAML: while parsing a flow node"),
        (b"\xff\xfe# @package _global_\nmodel:\n  n_layer: 2\n", "not readable YAML: 'utf-8' codec"),
    ],
)
def test_a_preset_that_is_not_yaml_is_one_line(tmp_path, content, expected):
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "broken.yaml").write_bytes(content)
    for flags in ([], ["--cfg", "job"]):
        line = refused_before_hydra(*flags, "--config-dir", str(tmp_path), "experiment=broken")
        assert expected in line


def test_a_preset_from_config_dir_is_one_of_its_groups_options(tmp_path):
    """``--config-dir DIR`` adds DIR/experiment/mine.yaml as ``experiment=mine``: an option, not a typo; a
    preset's own settings are checked like overrides."""
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text("# @package _global_\nmodel:\n  n_layer: 1\n")
    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    assert cli.compose_config(["experiment=mine", searchpath]).model.n_layer == 1
    assert cli.precheck(["experiment=mine", searchpath]).model.n_layer == 1  # the known-keys check too
    with pytest.raises(cli.ConfigError, match="unknown experiment 'mine'"):
        cli.compose_config(["experiment=mine"])
    (tmp_path / "experiment" / "typo.yaml").write_text("# @package _global_\nparallel:\n  compilee: true\n")
    with pytest.raises(cli.ConfigError, match=r"^experiment/typo: parallel.compilee: Key 'compilee' not in"):
        cli.precheck(["experiment=typo", searchpath])
    # A key of an untyped section: known only if the config composed without the preset has it.
    (tmp_path / "experiment" / "typo.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /logger: csv\nlogger:\n  project: x\n"
    )
    with pytest.raises(cli.ConfigError, match=r"^logger.project is not a setting \(set by experiment=typo\)"):
        cli.precheck(["experiment=typo", searchpath])  # csv has no project (wandb's)
    (tmp_path / "experiment" / "typo.yaml").write_text(
        "# @package _global_\ncallbacks:\n  throughput:\n    everyy: 3\n"
    )
    with pytest.raises(
        cli.ConfigError, match=r"callbacks.throughput.everyy is not a setting \(set by experiment="
    ):
        cli.precheck(["experiment=typo", searchpath])


def test_a_run_folder_a_preset_names_is_checked_before_hydra_writes_into_it(tmp_path):
    """A preset's ``hydra.run.dir`` (not an override) naming a folder of the user's: refused before Hydra
    writes ``.hydra/`` and the log into it, as the same folder given as an override is."""
    mine = tmp_path / "project"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    (tmp_path / "presets" / "experiment").mkdir(parents=True)
    (tmp_path / "presets" / "experiment" / "here.yaml").write_text(
        f"# @package _global_\nhydra:\n  run:\n    dir: {mine}\n"
    )
    line = refused_before_hydra("--config-dir", str(tmp_path / "presets"), "experiment=here")
    assert "holds files that are not a lightning_llm run (notes.txt)" in line
    assert sorted(p.name for p in mine.iterdir()) == ["notes.txt"]


@pytest.mark.slow
@pytest.mark.parametrize(("args", "expected"), [BAD_OVERRIDES[0], BAD_OVERRIDES[8], BAD_OVERRIDES[18]])
def test_a_bad_override_is_one_line_on_stderr_of_the_real_command(args, expected, tmp_path):
    """The same refusals as a user sees them from ``python -m lightning_llm``: the last line of stderr, no
    traceback (one case of each kind: a plugin name, a sweep's value, a setting that does not exist)."""
    result = run_cli(*args, f"hydra.run.dir={tmp_path / 'run'}")
    assert result.returncode != 0
    lines = [line for line in result.stderr.splitlines() if line.strip() and "Warning" not in line]
    assert lines[-1].startswith("error: "), result.stderr
    assert expected in lines[-1]
    assert "Traceback" not in result.stderr
    assert not (tmp_path / "run").exists()


def test_help_lists_groups():
    result = run_cli("--help", "model=encoder")
    assert result.returncode == 0
    for group in ("model", "optim", "tokenizer", "scheduler", "data"):
        assert f"\n  {group}: " in result.stdout
    assert "schema" not in result.stdout  # the plugins' internal config nodes are not choices
    assert "python -m lightning_llm.plugins <kind> <name>" in result.stdout  # where settings are explained
    assert "== Config (with model=encoder objective=masked_lm) ==" in result.stdout


def test_cfg_job_prints_composed_config():
    result = run_cli("optim=adam", "optim.lr=3e-4", "--cfg", "job")
    assert result.returncode == 0, result.stderr
    assert "name: adam" in result.stdout and "lr: 0.0003" in result.stdout


def test_plugin_listing():
    result = subprocess.run(
        [sys.executable, "-m", "lightning_llm.plugins"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    for line in ("model:", "gpt ", "[lightning_llm]", "n_layer=4", "optim:", "adamw", "lr="):
        assert line in result.stdout


@pytest.mark.slow
def test_missing_data_file_is_one_short_message(tmp_path):
    result = run_cli(
        "data=text",
        f"data.paths=[{tmp_path}/nothing/*.txt]",
        f"paths.cache_dir={tmp_path / 'cache'}",
        f"hydra.run.dir={tmp_path / 'run'}",
        "logger=none",
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{tmp_path}/nothing/*.txt" in result.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


@pytest.mark.slow
def test_a_chosen_model_brings_its_default_objective_and_data():
    result = run_cli("--cfg", "job", "model=decoder")
    assert result.returncode == 0, result.stderr
    assert "name: seq2seq" in result.stdout and "name: reverse_words" in result.stdout
    encoder = run_cli("model=encoder", "objective=classification", "--cfg", "job")
    assert encoder.returncode == 0, encoder.stderr
    assert "name: classification" in encoder.stdout and "name: pydoc_topics" in encoder.stdout
    explicit = run_cli("model=encoder", "data=text", "data.paths=[x.txt]", "--cfg", "job")
    assert "name: masked_lm" in explicit.stdout and "name: text" in explicit.stdout


@pytest.mark.slow
def test_mismatched_objective_is_refused():
    result = run_cli("model=gpt", "objective=seq2seq", "data=reverse_words", "logger=none", "debug=fast")
    assert result.returncode != 0
    assert "objective=seq2seq does not fit model=gpt" in result.stderr


def test_settings_a_chosen_preset_brings_are_known():
    """The keys that exist are those of the config composed with the same group choices: a search preset's
    own section, an experiment's settings."""
    for overrides in (
        ["hparams_search=gpt_lr"],
        ["experiment=bert_tiny"],
        ["logger=wandb", "logger.project=p"],
    ):
        cli.precheck(overrides)  # no error


@pytest.mark.slow
def test_a_resumed_launch_takes_the_runs_own_settings(tmp_path, cache_dir):
    """``ckpt_path=auto`` into a run folder needs nothing retyped: the run's overrides come first, the ones
    given now replace them key by key (a new max_steps, with a warning that the LR schedule changes)."""
    import json

    from lightning_llm.testing import TINY, cli_command, cli_env

    run = tmp_path / "run"
    first = cli_command(*TINY, "trainer.max_steps=4", "model.n_embd=48", run_dir=run, cache_dir=cache_dir)
    assert subprocess.run(first, capture_output=True, text=True, env=cli_env(), timeout=300).returncode == 0
    tokenizer = (run / "tokenizer.json").read_bytes()
    again = [sys.executable, "-m", "lightning_llm", f"hydra.run.dir={run}", "ckpt_path=auto"]

    # A launch refused for another model (after Hydra rewrote .hydra/) leaves what a resume starts from alone.
    def launch(*overrides: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*again, *overrides], capture_output=True, text=True, env=cli_env(), timeout=300
        )

    refused = launch("model.n_embd=64")
    assert refused.returncode != 0 and "model.n_embd=48 there, 64 here" in refused.stderr, refused.stderr
    # The optimizer's state is restored: a new learning rate would be recorded in the config but not used.
    ignored = launch("optim.lr=0.5")
    assert ignored.returncode != 0 and "would not be used: optim.lr=" in ignored.stderr, ignored.stderr
    result = launch("trainer.max_steps=6")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "resuming with the run's own settings:" in result.stdout and "model.n_embd=48" in result.stdout
    assert json.loads((run / "summary.json").read_text())["step"] == 6
    assert (run / "tokenizer.json").read_bytes() == tokenizer
    assert "trainer.max_steps=4 there, 6 now: the learning-rate schedule" in (run / "train.log").read_text()


def test_the_plugins_command_helps_and_shows_one_plugin(capsys):
    """--help is usage, not a crash; a misspelt kind or name is one line with a did-you-mean; one plugin shows
    each parameter with the value a run would use (conf/'s, not the signature's) and its documentation."""
    from lightning_llm import plugins

    with pytest.raises(SystemExit) as exit_:
        plugins.main(["--help"])
    assert exit_.value.code == 0 and "usage: python -m lightning_llm.plugins" in capsys.readouterr().out
    assert plugins.main(["optimizer"]) == 2
    assert "unknown plugin kind 'optimizer' (did you mean 'optim'?)" in capsys.readouterr().err
    assert plugins.main(["scheduler", "inv_sqrt"]) == 2
    assert (
        "unknown scheduler 'inv_sqrt'; valid scheduler names: constant, cosine, linear"
        in capsys.readouterr().err
    )
    assert plugins.main(["tokenizer", "byte_bpe"]) == 0
    shown = capsys.readouterr().out
    assert "tokenizer.vocab_size=1024" in shown  # conf/tokenizer/byte_bpe.yaml's, not the signature's 4096
    assert "Largest vocabulary size" in shown  # its Args: entry
    assert plugins.main(["model", "gpt"]) == 0
    assert (
        "model.n_embd=128\n      width of the residual stream" in capsys.readouterr().out
    )  # a field's comment


def test_a_stale_master_address_is_refused_for_processes_started_here(monkeypatch, tmp_path):
    """``MASTER_ADDR`` left in a shell from a cluster job: a run of 2 processes Lightning starts here had its
    second rank wait out torch's 30-minute timeout trying to reach it. A launcher's is its own."""
    from lightning_llm.run_folder import check_master_address

    for name in ("RANK", "LOCAL_RANK", "WORLD_SIZE", "SLURM_PROCID", "SLURM_NTASKS", "JSM_NAMESPACE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MASTER_ADDR", "192.0.2.7")  # TEST-NET-1: never an address of this machine
    run = [f"hydra.run.dir={tmp_path / 'run'}", "trainer.accelerator=cpu", "trainer.devices=2"]
    line = refused_before_hydra(*run, "trainer.strategy=ddp")
    assert "MASTER_ADDR=192.0.2.7 is set in the environment but is not an address of this machine" in line
    assert not (tmp_path / "run").exists()
    check_master_address({"devices": 1})  # one process: no rendezvous
    check_master_address({"devices": 2, "num_nodes": 2})  # several nodes: the address is another's
    for local in ("127.0.0.1", "localhost"):
        monkeypatch.setenv("MASTER_ADDR", local)
        check_master_address({"devices": 2})
    monkeypatch.setenv("MASTER_ADDR", "192.0.2.7")
    monkeypatch.setenv("WORLD_SIZE", "2")  # torchrun's launch: its address
    check_master_address({"devices": 2})


@pytest.mark.parametrize("variable", ["RANK", "LOCAL_RANK", "SLURM_PROCID", "JSM_NAMESPACE_RANK"])
def test_a_stray_rank_variable_is_refused_not_obeyed(variable, monkeypatch, tmp_path):
    """``RANK=1`` left in a shell made the one process a rank that owns no run folder: no check, no lock, a
    finished run or a user's folder written over; with a launch size beside it too, for a one-process run."""
    from lightning_llm.run_folder import is_launching_rank

    sizes = {"RANK": "WORLD_SIZE", "LOCAL_RANK": "WORLD_SIZE", "SLURM_PROCID": "SLURM_NTASKS"}
    size = sizes.get(variable, "JSM_NAMESPACE_SIZE")
    for name in (*sizes, "JSM_NAMESPACE_RANK", "WORLD_SIZE", "SLURM_NTASKS", "JSM_NAMESPACE_SIZE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, " 1")  # Lightning reads it with int(), spaces and all
    assert is_launching_rank()  # the checks apply
    line = refused_before_hydra(f"hydra.run.dir={tmp_path / 'run'}")
    assert f"{variable}=1 is set in the environment, but no launch of several processes" in line
    monkeypatch.setenv(size, "2")
    assert not is_launching_rank()  # a real launch's rank 1
    line = refused_before_hydra(f"hydra.run.dir={tmp_path / 'run'}")  # but this run is one process
    assert "(this run is one process)" in line


@pytest.mark.parametrize("where", ["checkpoint", "hydra"])
def test_a_resume_takes_no_interpolation_over_from_the_run_folder(tmp_path, where):
    """The overrides a resume takes over come from a folder that may have been handed over: an
    interpolation there would read this machine's environment (or grow without bound as it resolves)."""
    import torch

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    stored = ["seed=3", "logger.name=${oc.env:HOME}"]
    meta = {"global_step": 2, "state_dict": {}} | ({"overrides": stored} if where == "checkpoint" else {})
    torch.save(meta, run / "checkpoints" / "last.ckpt")
    (run / ".hydra").mkdir()
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in stored))
    resume = [f"hydra.run.dir={run}", "ckpt_path=auto"]
    with pytest.raises(
        cli.ConfigError, match=r"override 'logger.name=\$\{oc.env:HOME\}' is an interpolation"
    ):
        cli.resume_overrides(resume)
    assert cli.resume_overrides([*resume, "logger.name=mine"]) == ["seed=3"]  # given now: not taken over


@pytest.mark.parametrize(
    ("overrides", "added"),
    [
        (["model=encoder"], ["objective=masked_lm"]),
        (["model=encoder,encoder"], ["objective=masked_lm"]),  # options sharing their default objective
        (["model=encoder,decoder", "objective=masked_lm"], []),  # chosen for all: nothing added
        (["objective=causal_lm,masked_lm", "model=encoder"], []),  # a swept choice is not replaced
    ],
)
def test_a_sweep_of_choices_gets_the_defaults_its_options_share(overrides, added):
    """A swept model or objective took none of its defaults (model=gpt,encoder failed, blaming an objective
    the user never chose), and a model's default objective replaced an objective sweep (a later override)."""
    assert cli.plugin_defaults(overrides) == added


def test_a_sweep_of_choices_whose_defaults_differ_is_refused_naming_them():
    with pytest.raises(
        cli.ConfigError,
        match=r"model=gpt,encoder: each has its own default objective "
        r"\(gpt: causal_lm, encoder: masked_lm\).*choose objective=\.\.\. for all of them",
    ):
        cli.plugin_defaults(["model=gpt,encoder"])
