"""FSDP and DDP with 2 processes train exactly like one process on the same global batch, and a sharded FSDP
run resumed from its checkpoint (with 2 processes, or with 1) continues exactly like the uninterrupted run.

Real runs of ``python -m lightning_llm`` (Lightning launches the second process over gloo on CPU), compared
step by step through the losses each run logs to its CSV file.
"""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lightning_llm.testing import TINY, run_cli

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

STEPS = 20
# fp32 on CPU: the runs differ only in the order of floating-point sums (sharded reductions, split batches).
RTOL = 2e-5

BASE = [
    *TINY,
    "model.dropout=0.0",  # dropout masks depend on how a batch is split, so they would differ by design
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=10",
    "trainer.log_every_n_steps=1",
    "callbacks.checkpoint.save_top_k=-1",  # keep the step-10 checkpoint for the resume runs
    "callbacks.samples.num_samples=0",
]
GLOBAL_BATCH = 8


def launch(run_dir: Path, cache_dir: Path, *overrides: str) -> dict:
    """Run the CLI into ``run_dir``; returns its summary plus ``losses``: step -> train loss."""
    summary = run_cli(*BASE, *overrides, run_dir=run_dir, cache_dir=cache_dir)
    summary["losses"] = train_losses(run_dir)
    return summary


def train_losses(run_dir: Path) -> dict[int, float]:
    losses = {}
    for path in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        with path.open() as file:
            for row in csv.DictReader(file):
                if row.get("train/loss"):
                    losses[int(row["step"]) + 1] = float(row["train/loss"])  # csv step 0 = optimizer step 1
    return losses


def two_processes(strategy: str) -> list[str]:
    return [f"trainer.strategy={strategy}", "trainer.devices=2", f"data.batch_size={GLOBAL_BATCH // 2}"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """The reference single-process run and the 2-process FSDP run, shared by the tests below."""
    root = tmp_path_factory.mktemp("equivalence")
    cache = root / "cache"
    single = launch(root / "single", cache, f"data.batch_size={GLOBAL_BATCH}")
    fsdp = launch(root / "fsdp", cache, *two_processes("fsdp"))
    return {"root": root, "cache": cache, "single": single, "fsdp": fsdp}


def assert_same_losses(run: dict, reference: dict, steps: range) -> None:
    got = [run["losses"][step] for step in steps]
    want = [reference["losses"][step] for step in steps]
    assert got == pytest.approx(want, rel=RTOL)


def test_fsdp_two_processes_match_one_process(runs: dict) -> None:
    """Rank 1 never builds the weights (meta device, then its shards of rank 0's): the same losses from
    step 1 show the same initial weights."""
    rank_1_log = (runs["root"] / "fsdp" / "train_ddp_process_1.log").read_text()
    assert "on the meta device: its shards come from rank 0" in rank_1_log
    assert "meta device" not in (runs["root"] / "fsdp" / "train.log").read_text()  # rank 0 builds them
    assert sorted(runs["single"]["losses"]) == list(range(1, STEPS + 1))
    assert_same_losses(runs["fsdp"], runs["single"], range(1, STEPS + 1))
    assert runs["fsdp"]["val_loss"] == pytest.approx(runs["single"]["val_loss"], rel=RTOL)
    # Training moved: the comparison is not between two untrained models.
    assert runs["single"]["losses"][STEPS] < runs["single"]["losses"][1] - 0.3


def test_fsdp_shards_parameters(runs: dict) -> None:
    total, local = runs["fsdp"]["params"], runs["fsdp"]["params_per_process"]
    assert runs["single"]["params_per_process"] == runs["single"]["params"] == total
    assert 0.45 * total <= local <= 0.55 * total


def test_a_multi_process_run_writes_one_run_folder(runs: dict) -> None:
    folders = [path.name for path in runs["root"].iterdir() if path.name != "cache"]
    assert sorted(folders) == ["fsdp", "single"]
    run = runs["root"] / "fsdp"
    assert len(list(run.glob("summary.json"))) == 1
    assert len(list(run.glob("csv/version_*"))) == 1
    assert (run / ".hydra" / "config.yaml").is_file()


def test_ddp_two_processes_match_one_process(runs: dict) -> None:
    ddp = launch(runs["root"] / "ddp", runs["cache"], *two_processes("ddp"))
    assert_same_losses(ddp, runs["single"], range(1, STEPS + 1))


@pytest.mark.parametrize("devices", [2, 1], ids=["same-world-size", "resharded-to-1"])
def test_fsdp_resume_from_sharded_checkpoint_matches_uninterrupted(runs: dict, devices: int) -> None:
    checkpoint = runs["root"] / "fsdp" / "checkpoints" / "best-step000010.ckpt"
    assert checkpoint.is_dir()  # sharded: a folder of per-rank files
    resumed = launch(
        runs["root"] / f"fsdp-resumed-{devices}",
        runs["cache"],
        "trainer.strategy=fsdp",
        f"trainer.devices={devices}",
        f"data.batch_size={GLOBAL_BATCH // devices}",
        f"ckpt_path={checkpoint}",
    )
    assert sorted(resumed["losses"]) == list(range(11, STEPS + 1))
    assert_same_losses(resumed, runs["fsdp"], range(11, STEPS + 1))


def test_fsdp_encoder_decoder_decodes_without_deadlock(runs: dict) -> None:
    """Greedy decoding stops when its own batch is done, so processes run different numbers of forward
    passes; under FSDP they gather the weights once first (``parallelize.gathered``) instead of hanging."""
    summary = launch(
        runs["root"] / "fsdp-decoder",
        runs["cache"],
        *two_processes("fsdp"),
        "model=decoder",
        "trainer.max_steps=4",
        "objective.max_new_tokens=12",
        "trainer.limit_test_batches=2",
        "callbacks.samples.num_samples=2",
    )
    assert summary["step"] == 4 and "val_bleu" in summary and "test_rouge" in summary
    assert (runs["root"] / "fsdp-decoder" / "samples.txt").read_text().count("prediction:") == 2


def test_fsdp_with_accumulation_recomputation_and_loss_in_chunks_matches_one_process(runs: dict) -> None:
    """2 processes x 4 micro-batches of 1: the same 8-sequence steps. The step's gradient is normalised over
    both processes and both micro-batches, and synchronised once, after the last micro-batch. Activations are
    recomputed in backward (each block's forward runs again inside FSDP's unsharded window). With
    ``objective.logits_chunk=16`` the head and cross-entropy run 16 tokens at a time inside the sharded
    model's forward (the head's weight gathered there), so the logits never exist whole: the losses, val loss
    and perplexity are those of the single-process run with whole logits. (One run for the three: each
    2-process launch costs ~15 s of CI.)"""
    accumulated = launch(
        runs["root"] / "fsdp-accumulate",
        runs["cache"],
        "trainer.strategy=fsdp",
        "trainer.devices=2",
        f"data.batch_size={GLOBAL_BATCH // 8}",  # x 2 processes x 4 micro-batches
        "trainer.accumulate_grad_batches=4",
        "parallel.activation_checkpointing=true",
        "objective.logits_chunk=16",
    )
    assert_same_losses(accumulated, runs["single"], range(1, STEPS + 1))
    assert accumulated["val_loss"] == pytest.approx(runs["single"]["val_loss"], rel=RTOL)
    assert accumulated["val_perplexity"] == pytest.approx(runs["single"]["val_perplexity"], rel=RTOL)


@pytest.mark.parametrize("devices", [1, 2], ids=["one-process", "fsdp-two-processes"])
def test_compiled_blocks_and_loss_match_eager(runs: dict, devices: int) -> None:
    """``parallel.compile=true`` compiles every block and the objective's loss (model call, head and
    cross-entropy as one graph, with FSDP's hooks left eager): the numbers are those of eager training."""
    sharded = ["trainer.strategy=fsdp", "trainer.devices=2"] if devices == 2 else []
    compiled = launch(
        runs["root"] / f"compiled-{devices}",
        runs["cache"],
        *sharded,
        f"data.batch_size={GLOBAL_BATCH // devices}",
        "parallel.compile=true",
    )
    assert_same_losses(compiled, runs["single"], range(1, STEPS + 1))
    assert compiled["val_loss"] == pytest.approx(runs["single"]["val_loss"], rel=RTOL)


def test_lora_under_fsdp_matches_one_process(runs: dict, tmp_path: Path) -> None:
    """LoRA fine-tuning of the reference run: adapters trainable, the rest frozen, sharded over 2 processes
    (rank 1 builds its adapters on the meta device too), the same losses as one process."""
    lora = [f"model.init_from={runs['root'] / 'single'}", "model.lora.rank=4", "trainer.max_steps=10"]
    lora += ["optim.lr=1e-2"]
    single = launch(tmp_path / "single", runs["cache"], f"data.batch_size={GLOBAL_BATCH}", *lora)
    fsdp = launch(tmp_path / "fsdp", runs["cache"], *two_processes("fsdp"), *lora)
    assert "LoRA rank 4" in (tmp_path / "fsdp" / "train_ddp_process_1.log").read_text()
    assert_same_losses(fsdp, single, range(1, 11))
    assert single["losses"][10] < single["losses"][1]  # the adapters trained


def test_float8_under_fsdp_follows_float8_in_one_process(runs: dict) -> None:
    """float8 matmuls (emulated on a CPU) in sharded blocks: each process scales its own half of the batch's
    activations, so the numbers are float8's rounding apart, not equal; the weights' scales are the gathered
    weights', as in one process."""
    steps = ["trainer.max_steps=8", "parallel.float8=true"]
    one = launch(runs["root"] / "float8-1", runs["cache"], f"data.batch_size={GLOBAL_BATCH}", *steps)
    two = launch(runs["root"] / "float8-2", runs["cache"], *two_processes("fsdp"), *steps)
    assert [two["losses"][s] for s in range(1, 9)] == pytest.approx(
        [one["losses"][s] for s in range(1, 9)], rel=0.01
    )
