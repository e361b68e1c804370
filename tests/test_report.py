"""python -m lightning_llm.report: run folders made by hand (finished, resumed, unfinished, without a metric),
then one real two-job multirun."""

import csv
import json
import math
import os
import re
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lightning_llm.report import ReportError, build_table, default_out, find_runs, load_run_record, main
from tests.conftest import TINY

COLUMNS = ["epoch", "perf/tokens_per_sec", "step", "train/loss", "val/loss", "val/perplexity"]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TAB10 = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40)]  # matplotlib's first four colours


def write_run(run: Path, overrides: list[str], summary: dict | None, versions: list[list[dict]]) -> Path:
    """A run folder as train() leaves it: overrides, summary.json (None: still running), one metrics.csv
    per launch."""
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text("".join(f"- {item}\n" for item in overrides))
    (run / ".hydra" / "config.yaml").write_text("seed: 1\n")
    if summary is not None:
        (run / "summary.json").write_text(json.dumps(summary))
    for number, rows in enumerate(versions):
        folder = run / "csv" / f"version_{number}"
        folder.mkdir(parents=True)
        with (folder / "metrics.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
    return run


def train_row(step: int, loss: float, tokens_per_sec: float = 1000.0) -> dict:
    return {"epoch": 0, "step": step, "train/loss": loss, "perf/tokens_per_sec": tokens_per_sec}


def val_row(step: int, loss: float) -> dict:
    return {"epoch": 0, "step": step, "val/loss": loss, "val/perplexity": math.exp(loss)}


def summary(val_loss: float | None, tokens_per_second: float, wall_seconds: float, step: int = 20) -> dict:
    return {
        "train_loss": 3.1,
        "val_loss": val_loss,
        "val_perplexity": None if val_loss is None else math.exp(val_loss),
        "test_loss": None if val_loss is None else val_loss + 0.01,
        "tokens_per_second": tokens_per_second,
        "mfu": None,
        "step": step,
        "wall_seconds": wall_seconds,
        "params": 1234,
    }


@pytest.fixture
def sweep(tmp_path: Path) -> Path:
    """Four jobs of one multirun: 0 finished; 1 resumed once (two csv versions); 2 unfinished; 10 finished
    without a val loss and with an extra override."""
    root = tmp_path / "multirun" / "2024-01-01_00-00-00"
    common = ["seed=1", "tokenizer=char"]
    write_run(
        root / "0",
        [*common, "optim.lr=0.001"],
        summary(3.0, 1000.0, 10.0),
        [[train_row(4, 4.5), train_row(9, 4.0), val_row(9, 3.9), train_row(19, 3.2), val_row(19, 3.1)]],
    )
    first_launch = [
        train_row(4, 4.4),
        train_row(9, 3.9),
        val_row(9, 3.8),
        train_row(14, 3.5),
        train_row(19, 9.9),
    ]
    second_launch = [train_row(19, 2.8, 1500.0), val_row(19, 2.7), train_row(24, 2.6, 1500.0)]
    write_run(
        root / "1", [*common, "optim.lr=0.003"], summary(2.5, 1500.0, 20.0, 25), [first_launch, second_launch]
    )
    write_run(
        root / "2",
        [*common, "optim.lr=0.002"],
        None,
        [[train_row(4, 4.3, 900.0), val_row(9, 3.6), train_row(14, 3.0, 1100.0), val_row(14, 2.75)]],
    )
    write_run(
        root / "10",
        [*common, "optim.lr=0.01", "+model.n_layer=4"],
        summary(None, 800.0, 5.0),
        [[train_row(4, 5.0), train_row(9, 4.8)]],
    )
    (root / "multirun.yaml").write_text("hydra: {}\n")
    return root


def run_report(capsys, *args) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


def table_lines(out: str) -> list[str]:
    """The text table: its header line and one line per run."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("run "))
    return lines[start : lines.index("", start)]


# --------------------------------------------------------------------------- finding and reading runs


def test_find_runs_takes_a_multirun_a_folder_above_it_or_run_folders(sweep, tmp_path):
    jobs = [sweep / name for name in ("0", "1", "2", "10")]  # 10 after 2: Hydra's job numbers
    assert find_runs([sweep]) == jobs
    assert find_runs([tmp_path / "multirun"]) == jobs  # two levels down
    assert find_runs([sweep / "10", sweep / "1", sweep / "10"]) == [sweep / "10", sweep / "1"]


def test_a_resumed_run_merges_its_csv_versions_and_the_later_launch_wins(sweep):
    record = load_run_record(sweep / "1")
    assert record["status"] == "finished"
    # the first launch's step 19 (9.9, lost after its checkpoint) gives way to the second launch's; the
    # CSV's 0-based steps read as optimizer steps (step 24's row is the 25th step, summary.json's last)
    assert record["train_curve"] == [(5, 4.4), (10, 3.9), (15, 3.5), (20, 2.8), (25, 2.6)]
    assert record["val_curve"] == [(10, 3.8), (20, 2.7)]
    assert record["overrides"] == {"seed": "1", "tokenizer": "char", "optim.lr": "0.003"}
    assert record["metrics"]["val_loss"] == 2.5
    assert record["metrics"]["step"] == 25


def test_an_unfinished_run_reports_its_last_logged_values(sweep):
    record = load_run_record(sweep / "2")
    assert record["status"] == "unfinished"
    metrics = record["metrics"]
    assert metrics["val_loss"] == 2.75
    assert metrics["val_perplexity"] == pytest.approx(math.exp(2.75))
    assert metrics["train_loss"] == 3.0
    assert metrics["tokens_per_second"] == 1100.0
    assert metrics["step"] == 15  # its last training row, logged at CSV step 14
    assert metrics["wall_seconds"] is None


# --------------------------------------------------------------------------- the table


def test_the_table_sorts_by_the_metric_with_runs_lacking_it_last(sweep):
    records = [load_run_record(path) for path in find_runs([sweep])]
    rows = build_table(records, "val_loss", descending=False)
    assert [row["run"] for row in rows] == ["1", "2", "0", "10"]
    assert list(rows[0]) == [
        "run",
        "status",
        "optim.lr",
        "model.n_layer",
        "val_loss",
        "val_perplexity",
        "tokens/s",
        "wall time (s)",
        "step",
    ]
    assert rows[0] == {
        "run": "1",
        "status": "finished",
        "optim.lr": "0.003",
        "model.n_layer": None,
        "val_loss": 2.5,
        "val_perplexity": math.exp(2.5),
        "tokens/s": 1500.0,
        "wall time (s)": 20.0,
        "step": 25,
    }
    assert rows[1]["status"] == "unfinished"
    assert rows[3]["model.n_layer"] == "4"
    descending = build_table(records, "val_loss", descending=True)
    assert [row["run"] for row in descending] == ["0", "2", "1", "10"]
    by_speed = build_table(records, "tokens_per_second", descending=True)
    assert [row["run"] for row in by_speed] == ["1", "2", "0", "10"]
    assert [row["tokens/s"] for row in by_speed] == [1500.0, 1100.0, 1000.0, 800.0]


def test_a_metric_outside_the_standard_columns_gets_its_own_column(sweep):
    records = [load_run_record(path) for path in find_runs([sweep])]
    rows = build_table(records, "test_loss", descending=False)
    assert list(rows[0])[4] == "test_loss"
    assert [(row["run"], row["test_loss"]) for row in rows] == [
        ("1", 2.51),
        ("0", 3.01),
        ("2", None),  # runs without it keep their folder order
        ("10", None),
    ]


def test_the_command_prints_an_aligned_table_and_writes_csv_and_md(sweep, tmp_path, capsys):
    out_dir = tmp_path / "report"
    code, out, err = run_report(capsys, sweep, "--out", out_dir)
    assert code == 0, err
    assert "common overrides: seed=1 tokenizer=char" in out
    lines = table_lines(out)
    assert re.split(r"\s{2,}", lines[0]) == [
        "run",
        "status",
        "optim.lr",
        "model.n_layer",
        "val_loss",
        "val_perplexity",
        "tokens/s",
        "wall time (s)",
        "step",
    ]
    assert [line.split()[:4] for line in lines[1:]] == [
        ["1", "finished", "0.003", "-"],
        ["2", "unfinished", "0.002", "-"],
        ["0", "finished", "0.001", "-"],
        ["10", "finished", "0.01", "4"],
    ]
    assert lines[1].split()[4:] == ["2.5000", "12.18", "1500", "20.0", "25"]
    assert lines[2].split()[4:] == ["2.7500", "15.64", "1100", "-", "15"]
    # numbers are right-aligned: each column ends at its header's end
    end = lines[0].index("val_loss") + len("val_loss")
    assert all(line[end - 6 : end] in ("2.5000", "2.7500", "3.0000", "     -") for line in lines[1:])

    with (out_dir / "report.csv").open(newline="") as handle:
        written = list(csv.DictReader(handle))
    assert [row["run"] for row in written] == ["1", "2", "0", "10"]
    assert float(written[0]["val_perplexity"]) == math.exp(2.5)  # full precision
    assert written[3]["val_loss"] == "" and written[3]["model.n_layer"] == "4"
    assert written[1]["status"] == "unfinished" and written[1]["wall time (s)"] == ""

    markdown = (out_dir / "report.md").read_text().splitlines()
    assert "Common overrides: `seed=1`, `tokenizer=char`." in markdown[2]
    header = markdown.index(
        "| run | status | optim.lr | model.n_layer | val_loss | val_perplexity | tokens/s "
        "| wall time (s) | step |"
    )
    assert markdown[header + 1] == "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: |"
    assert markdown[header + 2] == "| 1 | finished | 0.003 | - | 2.5000 | 12.18 | 1500 | 20.0 | 25 |"
    assert markdown[header + 5] == "| 10 | finished | 0.01 | 4 | - | - | 800 | 5.0 | 20 |"


def test_the_loss_curves_png_draws_every_run(sweep, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, out, err = run_report(capsys, sweep, "--out", tmp_path / "report")
    assert code == 0, err
    png = tmp_path / "report" / "loss_curves.png"
    assert f"wrote {tmp_path / 'report' / 'report.csv'}" in out and str(png) in out
    assert png.read_bytes()[:8] == PNG_SIGNATURE
    width, height = struct.unpack(">II", png.read_bytes()[16:24])  # the IHDR chunk
    assert (width, height) == (1100, 660)
    assert png.stat().st_size > 20_000
    assert_colours_drawn(png, TAB10)  # one colour per run: all four runs have curves


def assert_colours_drawn(png: Path, colours: list[tuple[int, int, int]]) -> None:
    """Each colour covers more pixels than its legend entry alone does (about 120): its run's curves are
    drawn."""
    from matplotlib.image import imread

    image = imread(png)[..., :3] * 255
    near = [int((np.abs(image - np.array(colour)).max(axis=-1) <= 30).sum()) for colour in colours]
    assert all(count > 250 for count in near), near


REPORT_FILES = {"report.csv", "report.md", "loss_curves.png", ".report.json"}


def report_files(top: Path) -> set[str]:
    """Every report file under ``top`` (links not followed), relative to it: where a report really wrote."""
    return {
        (Path(folder) / name).relative_to(top).as_posix()
        for folder, _, names in os.walk(top)
        for name in names
        if name in REPORT_FILES
    }


def written_into(folder: str) -> set[str]:
    written = {"report.csv", "report.md", ".report.json"}
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        pass
    else:
        written.add("loss_curves.png")
    return {f"{folder}/{name}" for name in written}


def test_the_report_goes_to_the_folder_given_by_default(sweep, tmp_path, capsys):
    code, out, err = run_report(capsys, sweep, "--metric", "wall_seconds")
    assert code == 0, err
    assert [line.split()[0] for line in table_lines(out)[1:]] == ["10", "0", "1", "2"]
    assert report_files(tmp_path) == written_into("multirun/2024-01-01_00-00-00")
    # several paths: the one that holds the others
    code, out, err = run_report(capsys, sweep, sweep / "1", "--metric", "wall_seconds")
    assert code == 0, err
    assert "common overrides: seed=1 tokenizer=char" in out
    assert report_files(tmp_path) == written_into("multirun/2024-01-01_00-00-00")


def test_a_run_linked_into_the_folder_given_leaves_the_report_in_that_folder(tmp_path, capsys):
    """A link to a run elsewhere does not move the report beside the link's target (nor, with a link to /,
    into /): the report goes into the folder named, and its runs are named as that folder's jobs."""
    given = tmp_path / "c12" / "multi"
    rows = [[train_row(4, 4.5), val_row(4, 4.4)]]
    write_run(given / "0", ["seed=1", "optim.lr=0.001"], summary(3.0, 1000.0, 10.0), rows)
    elsewhere = write_run(
        tmp_path / "elsewhere" / "deep" / "exp",
        ["seed=1", "optim.lr=0.003"],
        summary(2.5, 1000.0, 10.0),
        rows,
    )
    (given / "1").symlink_to(elsewhere)
    code, out, err = run_report(capsys, given)
    assert code == 0, err
    assert report_files(tmp_path) == written_into("c12/multi")
    assert f"wrote {given / 'report.csv'}" in out
    assert [line.split()[:3] for line in table_lines(out)[1:]] == [
        ["1", "finished", "0.003"],
        ["0", "finished", "0.001"],
    ]


def test_a_single_run_given_through_a_link_gets_the_report_in_the_run_folder(tmp_path, capsys):
    run = write_run(tmp_path / "store" / "exp", ["seed=1"], summary(3.0, 1000.0, 10.0), [[train_row(4, 4.5)]])
    link = tmp_path / "runs" / "mine"
    link.parent.mkdir()
    link.symlink_to(run)
    code, out, err = run_report(capsys, link)
    assert code == 0, err
    assert f"wrote {link / 'report.csv'}" in out
    assert (link / "report.csv").is_file()
    assert report_files(tmp_path) == written_into("store/exp")  # the run folder, not store/ or runs/


def test_several_paths_none_holding_the_others_are_refused_without_out(sweep, tmp_path, capsys, monkeypatch):
    """No folder the user named to write into: one line asking for --out, nothing written. The same for a
    common folder that is the home folder (or the filesystem root)."""
    home = tmp_path / "home"
    write_run(home / "r0", ["seed=1"], summary(3.0, 1000.0, 10.0), [[train_row(4, 4.5)]])
    monkeypatch.setenv("HOME", str(home))
    elsewhere = tmp_path / "link-to-a-run"
    elsewhere.symlink_to(sweep / "1")
    cases = [
        ([sweep / "0", sweep / "1"], f"their common folder {sweep} is none of them"),
        ([sweep / "0", elsewhere], f"their common folder {tmp_path} is none of them"),
        ([home, home / "r0"], f"their common folder {home} is your home folder"),
    ]
    for paths, fragment in cases:
        code, out, err = run_report(capsys, *paths)
        assert (code, out) == (2, ""), err
        assert err.count("\n") == 1 and err.startswith("error: 2 paths given and "), err
        assert fragment in err and err.endswith("name the folder to write the report into with --out DIR\n")
    assert report_files(tmp_path) == set()
    code, out, err = run_report(capsys, sweep / "0", sweep / "1", "--out", tmp_path / "report")
    assert code == 0, err
    assert report_files(tmp_path) == written_into("report")
    with pytest.raises(ReportError, match="their common folder / is the filesystem root"):
        default_out(["/", tmp_path])
    assert default_out([sweep / "0"]) == sweep / "0"


def test_a_report_replaces_only_its_own_files(sweep, tmp_path, capsys):
    """Run again, a report renews what it wrote; a report.md it did not write (or one edited since) is the
    user's, and the report stops naming it instead of replacing it."""
    out_dir = tmp_path / "out"
    assert run_report(capsys, sweep, "--out", out_dir)[0] == 0
    assert run_report(capsys, sweep, "--out", out_dir)[0] == 0  # its own files: renewed
    (out_dir / "report.md").write_text("my notes on these runs")
    code, out, err = run_report(capsys, sweep, "--out", out_dir)
    assert code == 2 and "report.md is there and no earlier report wrote it" in err and str(out_dir) in err
    assert (out_dir / "report.md").read_text() == "my notes on these runs"


def test_a_report_stopped_partway_leaves_files_the_next_one_replaces(sweep, tmp_path, capsys, monkeypatch):
    """Killed between swapping in its files (or out of disk), a report left its first file new and unrecorded,
    and every later report refused the folder; the files were also written in place, through hard links."""
    out_dir = tmp_path / "out"
    assert run_report(capsys, sweep, "--out", out_dir)[0] == 0
    (tmp_path / "snapshot.csv").hardlink_to(out_dir / "report.csv")  # rsync --link-dest, cp -al
    kept = (tmp_path / "snapshot.csv").read_bytes()
    replace, calls = os.replace, []

    def stop_after_one(source, target):
        calls.append(target)
        if len(calls) > 1:
            raise OSError(28, "No space left on device")  # stopped between the renames
        replace(source, target)

    monkeypatch.setattr(os, "replace", stop_after_one)
    code, out, err = run_report(capsys, sweep, "--out", out_dir, "--descending")
    assert code == 2 and "No space left on device" in err
    monkeypatch.setattr(os, "replace", replace)
    assert not [name for name in os.listdir(out_dir) if ".tmp-" in name]  # its staged files are gone
    code, out, err = run_report(capsys, sweep, "--out", out_dir)
    assert code == 0, err
    assert (tmp_path / "snapshot.csv").read_bytes() == kept  # a new file was renamed in, not written through


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["{tmp}/nope"], "error: {tmp}/nope: no such file or directory"),
        (["{tmp}/empty"], "error: {tmp}/empty: no runs in it"),
        (
            ["{sweep}", "--metric", "bleu"],
            "error: --metric bleu: no run has it; summary keys: mfu, params, samples_per_second, step",
        ),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_it(sweep, tmp_path, capsys, args, expected):
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    args = [arg.format(tmp=tmp_path, sweep=sweep) for arg in args]
    code, out, err = run_report(capsys, *args)
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith(expected.format(tmp=tmp_path))


def test_the_command_starts_without_torch_and_exits_2_on_a_bad_path(tmp_path):
    check = "import sys, lightning_llm.report; print(sorted({'torch', 'lightning'} & set(sys.modules)))"
    imported = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "[]", imported.stderr
    result = subprocess.run(
        [sys.executable, "-m", "lightning_llm.report", str(tmp_path / "nope")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == f"error: {tmp_path / 'nope'}: no such file or directory"


# --------------------------------------------------------------------------- a real multirun


@pytest.mark.slow
def test_a_real_two_job_multirun(tmp_path, capsys):
    sweep_dir = tmp_path / "sweep"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "lightning_llm",
            "-m",
            *TINY,
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"hydra.sweep.dir={sweep_dir}",
            "data.val_fraction=0.01",  # the final evaluation reads the whole val split: keep it small
            "optim.lr=1e-3,3e-3",
        ],
        capture_output=True,
        text=True,
        timeout=240,
        cwd=tmp_path,
        # one thread: a tiny model gains nothing from more, and the test machine's CPUs are shared
        env={**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1", "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]

    code, out, err = run_report(capsys, sweep_dir)
    assert code == 0, err
    summaries = {name: json.loads((sweep_dir / name / "summary.json").read_text()) for name in ("0", "1")}
    rows = build_table([load_run_record(sweep_dir / name) for name in ("0", "1")], "val_loss", False)
    assert [row["run"] for row in rows] == sorted(summaries, key=lambda name: summaries[name]["val_loss"])
    assert list(rows[0])[:4] == ["run", "status", "optim.lr", "val_loss"]  # the only differing override
    assert {row["run"]: row["optim.lr"] for row in rows} == {"0": "0.001", "1": "0.003"}
    assert {row["run"]: row["val_loss"] for row in rows} == {n: s["val_loss"] for n, s in summaries.items()}
    assert all(row["step"] == 8 and row["status"] == "finished" for row in rows)
    assert "debug=fast" in out and "optim.lr" not in out.split("common overrides:")[1].splitlines()[0]
    for name in ("0", "1"):
        record = load_run_record(sweep_dir / name)
        assert record["train_curve"] and record["val_curve"]
        assert max(step for step, _ in record["train_curve"]) <= 8
    with (sweep_dir / "report.csv").open(newline="") as handle:
        written = {row["run"]: float(row["val_loss"]) for row in csv.DictReader(handle)}
    assert written == {n: s["val_loss"] for n, s in summaries.items()}
    pytest.importorskip("matplotlib")  # the curves need it (a test dependency)
    assert (sweep_dir / "loss_curves.png").read_bytes()[:8] == PNG_SIGNATURE
    assert_colours_drawn(sweep_dir / "loss_curves.png", TAB10[:2])


# --------------------------------------------------------------------------- corrupt runs and odd values


def corrupt(run: Path, how: str) -> str:
    """Damage a copy of a good run the way ``how`` says; returns a fragment the warning must hold."""
    if how == "summary-not-json":
        (run / "summary.json").write_text('{"val_loss": 2.0, "step": ')
        return "summary.json: not readable as JSON (Expecting value: line 1 column 27"
    if how == "summary-not-an-object":
        (run / "summary.json").write_text("[1, 2]")
        return "summary.json: expected a JSON object, found list"
    if how == "metrics-cut-off":
        (run / "summary.json").unlink()
        metrics = run / "csv" / "version_0" / "metrics.csv"
        lines = metrics.read_text().splitlines(keepends=True)
        metrics.write_text("".join(lines[:-1]) + lines[-1][:5])  # mid-row, as a kill during a write leaves it
        return "csv/version_0/metrics.csv: line 6 has 3 fields, the header 6 (cut off or garbled)"
    if how == "metrics-binary":
        (run / "csv" / "version_0" / "metrics.csv").write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe" * 4)
        return "csv/version_0/metrics.csv: not readable as CSV ('utf-8' codec can't decode byte 0x89"
    if how == "metrics-not-the-logger's":
        (run / "csv" / "version_0" / "metrics.csv").write_text("a,b\n1,2\n")
        return "csv/version_0/metrics.csv: no 'step' column in its header"
    if how == "overrides-not-yaml":
        (run / ".hydra" / "overrides.yaml").write_text("- seed=1\n- [unclosed\n")
        return ".hydra/overrides.yaml: not readable as YAML (while parsing a flow sequence"
    if how == "overrides-alias-bomb":  # 600 bytes that expand to gigabytes once turned into text
        lines = ['- &a0 ["lolololol"]', *(f"- &a{i} [*a{i - 1}, *a{i - 1}]" for i in range(1, 30))]
        (run / ".hydra" / "overrides.yaml").write_text("\n".join(lines))
        return ".hydra/overrides.yaml: expected a list of key=value overrides, found a list of other things"
    if how == "metrics-a-fifo":  # reading it would wait forever
        (run / "csv" / "version_0" / "metrics.csv").unlink()
        os.mkfifo(run / "csv" / "version_0" / "metrics.csv")
        return "csv/version_0/metrics.csv: not a regular file"
    if how == "metrics-a-link-to-dev-zero":  # reading it would take all memory
        (run / "summary.json").unlink()
        (run / "csv" / "version_0" / "metrics.csv").unlink()
        (run / "csv" / "version_0" / "metrics.csv").symlink_to("/dev/zero")
        return "csv/version_0/metrics.csv: not a regular file"
    if how == "summary-huge":
        with (run / "summary.json").open("r+b") as file:
            file.truncate(2**30)  # sparse: no disk
        return "summary.json: 1,073,741,824 bytes, more than a run writes"
    assert how == "overrides-not-a-list", how
    (run / ".hydra" / "overrides.yaml").write_text("seed: 1\n")
    return ".hydra/overrides.yaml: expected a list of key=value overrides, found dict"


CORRUPTIONS = [
    "summary-not-json",
    "summary-not-an-object",
    "metrics-cut-off",
    "metrics-binary",
    "metrics-not-the-logger's",
    "overrides-not-yaml",
    "overrides-not-a-list",
    "overrides-alias-bomb",
    "metrics-a-fifo",
    "metrics-a-link-to-dev-zero",
    "summary-huge",
]


def test_a_folder_name_that_is_not_utf8_and_a_trial_end_nested_deep_are_reported(sweep, tmp_path, capsys):
    odd = write_run(
        sweep / os.fsdecode(b"r\xff"), ["seed=1"], None, [[train_row(4, 4.5), val_row(4, 4.4)]]
    )  # no summary.json: its status comes from trial_end.json, here nested 100,000 deep
    (odd / "trial_end.json").write_text("[" * 100_000 + "]" * 100_000)
    code, out, err = run_report(capsys, sweep, "--out", tmp_path / "report")
    assert code == 0, err
    assert "r\ufffd" in out and "r\ufffd" in (tmp_path / "report" / "report.csv").read_text()
    code, _, err = run_report(capsys, sweep, "--out", tmp_path / "other", "--metric", "run")
    assert code == 2 and "--metric run: a column of the table" in err, err


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupt_run_is_skipped_with_one_warning_and_the_rest_reported(sweep, tmp_path, capsys, how):
    bad = write_run(
        sweep / "3",
        ["seed=1", "tokenizer=char", "optim.lr=0.02"],
        summary(1.0, 2000.0, 1.0),  # the best val_loss: it would come first if it were read
        [[train_row(4, 4.5), train_row(9, 4.0), val_row(9, 3.9), train_row(19, 3.2), val_row(19, 3.1)]],
    )
    fragment = corrupt(bad, how)
    code, out, err = run_report(capsys, sweep, "--out", tmp_path / "report")
    assert code == 0, err
    assert [line.split()[0] for line in table_lines(out)[1:]] == ["1", "2", "0", "10"]
    assert err.count("\n") == 1
    assert err.startswith(f"warning: {bad}: {fragment}"), err
    assert err.endswith("; skipped this run\n")
    with pytest.raises(ReportError, match=re.escape(f"{bad}: {fragment}")):
        load_run_record(bad)


def test_no_run_left_is_an_error(tmp_path, capsys):
    for name, how in (("a", "summary-not-json"), ("b", "metrics-binary")):
        corrupt(
            write_run(tmp_path / "sweep" / name, ["seed=1"], summary(2.0, 1.0, 1.0), [[train_row(4, 4)]]), how
        )
    code, out, err = run_report(capsys, tmp_path / "sweep")
    assert (code, out) == (2, "")
    lines = err.splitlines()
    assert [line.split(": ")[0] for line in lines[:2]] == ["warning", "warning"]
    assert lines[2:] == ["error: no run left to report: all 2 found were skipped (see the warnings)"]


@pytest.fixture
def odd_values(tmp_path: Path) -> Path:
    """Finished runs whose summary.json holds NaN, Infinity and null (older runs wrote them), beside two
    ordinary ones; run 4 also has a step of NaN."""
    root = tmp_path / "odd"
    values = {"0": float("nan"), "1": 2.0, "2": None, "3": float("inf"), "4": 1.5, "5": float("-inf")}
    for name, val_loss in values.items():
        record = summary(val_loss, 1000.0, 1.0)
        if name == "4":
            record["step"] = float("nan")
        write_run(
            root / name, ["seed=1", f"optim.lr=0.{name}1"], None, [[train_row(4, 4.0), val_row(4, 3.0)]]
        )
        (root / name / "summary.json").write_text(json.dumps(record))  # NaN and Infinity, as json writes them
    return root


def test_non_finite_and_null_metrics_sort_last_in_folder_order(odd_values):
    assert "NaN" in (odd_values / "0" / "summary.json").read_text()
    records = [load_run_record(path) for path in find_runs([odd_values])]
    for descending in (False, True):
        rows = build_table(records, "val_loss", descending)
        numbers = ["4", "1"] if not descending else ["1", "4"]
        assert [row["run"] for row in rows] == numbers + ["0", "2", "3", "5"]


def test_the_command_prints_non_finite_and_null_metrics(odd_values, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    code, out, err = run_report(capsys, odd_values, "--out", tmp_path / "report")
    assert (code, err) == (0, "")
    cells = {line.split()[0]: line.split()[3:] for line in table_lines(out)[1:]}  # after run, status, lr
    assert cells["0"][:2] == ["nan", "nan"]
    assert cells["2"] == ["-", "-", "1000", "1.0", "20"]  # null
    assert cells["4"] == ["1.5000", "4.48", "1000", "1.0", "nan"]  # a NaN step: no final val point to draw
    assert cells["3"][:2] == ["inf", "inf"] and cells["5"][:2] == ["-inf", "0.00"]
    with (tmp_path / "report" / "report.csv").open(newline="") as handle:
        written = {row["run"]: row for row in csv.DictReader(handle)}
    assert (written["0"]["val_loss"], written["2"]["val_loss"], written["3"]["val_loss"]) == (
        "nan",
        "",
        "inf",
    )
    assert (tmp_path / "report" / "loss_curves.png").read_bytes()[:8] == PNG_SIGNATURE


def test_a_pruned_trial_is_reported_as_pruned(sweep):
    (sweep / "2" / "trial_end.json").write_text(
        '{"state": "pruned", "note": "pruned: val_loss=3 at step 10"}'
    )
    assert load_run_record(sweep / "2")["status"] == "pruned"
    (sweep / "2" / "trial_end.json").write_text("not json")
    assert load_run_record(sweep / "2")["status"] == "unfinished"


def test_a_cell_from_a_summary_handed_over_is_shown_not_sent_to_the_terminal():
    from lightning_llm.report import format_value

    assert format_value("step", "\x1b[31mred\x00\x9b") == "\\x1b[31mred\\x00\\x9b"  # ESC, NUL, CSI: escaped
    assert format_value("note", "plain words é") == "plain words é"
    assert format_value("val_loss", 1e308) == "1e+308"  # not 309 digits of fixed decimals
    assert format_value("val_loss", 1.234567) == "1.2346"


def test_summary_values_no_run_writes_are_left_out_with_a_warning(sweep, capsys):
    """A hand-edited summary's text, list or dict was shown (and sorted) as a metric; 1e308 broke the plot."""
    path = sweep / "1" / "summary.json"
    record = json.loads(path.read_text())
    edited = {"val_loss": "abc", "step": [1, 2], "tokens_per_second": {"a": 1}, "train_loss": 1e308}
    path.write_text(
        json.dumps({**record, **edited, "not_evaluated": {"test": "trainer.limit_test_batches=0"}})
    )
    metrics = load_run_record(sweep / "1")["metrics"]
    assert not set(edited) & set(metrics) and metrics["not_evaluated"] == {
        "test": "trainer.limit_test_batches=0"
    }
    assert {key: metrics[key] for key in record if key not in edited} == {
        key: value for key, value in record.items() if key not in edited
    }
    warned = capsys.readouterr().err.splitlines()
    assert len(warned) == 4 and all(line.startswith(f"warning: {path}: ") for line in warned), warned
    assert any(line.endswith("val_loss='abc' is not a number a run writes; left out") for line in warned)
