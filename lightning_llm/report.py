"""Compare runs without W&B: ``python -m lightning_llm.report <multirun folder or run folders...>``.

Reads only what a run folder holds (``summary.json``, ``.hydra/overrides.yaml``, ``csv/version_<n>/
metrics.csv``), prints one table sorted by a metric whose columns are the overrides that differ between runs,
and writes ``report.csv``, ``report.md`` and ``loss_curves.png`` into the folder given, links not resolved
(``default_out``; ``--out`` names another). A run with no ``summary.json`` yet (still training, or stopped) is
listed as "unfinished" with its last logged values.
A run folder that cannot be read (summary.json that is not JSON, a garbled or cut-off metrics.csv, an
overrides.yaml that does not parse) is skipped with one warning line on stderr naming it and the problem.
A metric that is null, NaN or infinite prints as it is ("-", "nan", "inf") and sorts after every number.
Bad input (no such path, no runs in it, no run left to report, a metric no run has, several paths none of
which holds the others and no ``--out``) prints one line on stderr and exits with 2.

Nothing here imports torch or lightning: the command starts in a fraction of a second on any machine that
can read the files (matplotlib is imported only to draw the curves).

Why not pandas: most of this module finds run folders, words its one-line errors and draws; the table part
keeps exact formats (missing "-" apart from "nan", ints not widened, aligned text, unpadded Markdown), and
a cut-off metrics.csv must be found, where pandas pads a short row silently. A pandas version written to
the same tests (issue 14) came out longer (647 lines against 612), a report 0.25 s slower (pandas' import),
and added a dependency, so the table stays on the csv module.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import json
import math
import os
import re
import sys
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import yaml

from lightning_llm.atomic import atomic_write, fsync_dir, temporary_name, write_text
from lightning_llm.errors import EXIT_BAD_INPUT, ArgumentParser, ctrl_c_exits, path_argument

__all__ = [
    "ReportError",
    "build_table",
    "default_out",
    "find_runs",
    "load_run_record",
    "main",
    "plot_curves",
    "split_overrides",
]

SUMMARY_FILE = "summary.json"
TRIAL_END_FILE = "trial_end.json"  # how a search trial without summary.json ended (lightning_llm.search)
OVERRIDES_FILE = Path(".hydra") / "overrides.yaml"
METRICS_GLOB = "csv/version_*/metrics.csv"
MISSING = "-"  # how a value a run lacks is shown in the text and Markdown tables
PROBLEM_CHARS = 160  # a problem quoted from a parser, cut to keep its warning line short
# The most a run's file may hold: far above what a run writes, far below what would exhaust memory
MAX_SMALL_FILE, MAX_METRICS_FILE = 2**20, 2**28

# (summary.json key, column header, format) of the columns every table shows after the overrides.
METRIC_COLUMNS = (
    ("val_loss", "val_loss", ".4f"),
    ("val_perplexity", "val_perplexity", ".2f"),
    ("tokens_per_second", "tokens/s", ".0f"),
    ("wall_seconds", "wall time (s)", ".1f"),
    ("step", "step", "d"),
)
# metrics.csv column -> summary.json key: what an unfinished run reports, from its last logged row.
CSV_METRICS = {
    "val/loss": "val_loss",
    "val/perplexity": "val_perplexity",
    "train/loss": "train_loss",
    "perf/tokens_per_sec": "tokens_per_second",
    "perf/samples_per_sec": "samples_per_second",
}


class ReportError(ValueError):
    """Input the report cannot use: a missing path, a folder without runs, an unknown metric, a run folder
    whose files cannot be read."""


# --------------------------------------------------------------------------- finding and reading runs


def find_runs(paths: Iterable[str | Path]) -> list[Path]:
    """The run folders in ``paths``: each path itself if it is a run, else its sub-folders one or two levels
    down that are (a multirun folder, or a folder of multiruns). In the order given, then by name (2 before
    10); each run once (two paths to one folder count once), as an absolute path under the path given, links
    not resolved: a run linked into a multirun folder is named as a job of that folder."""
    found: dict[Path, Path] = {}  # the run's real folder -> the path it was found at
    for given in paths:
        path = _absolute(given)
        if not path.exists():
            raise ReportError(f"{given}: no such file or directory")
        if not path.is_dir():
            raise ReportError(f"{given}: not a folder; give a run folder or a multirun folder")
        try:
            runs = _runs_under(path)
            for run in runs:
                found.setdefault(run.resolve(), run)
        except (OSError, RuntimeError) as error:  # RuntimeError: a loop of links (resolve)
            problem = getattr(error, "strerror", None) or error
            raise ReportError(f"{given}: cannot read it ({problem})") from None
        if not runs:
            raise ReportError(
                f"{given}: no runs in it (a run folder holds {SUMMARY_FILE} or csv/version_<n>/metrics.csv, "
                "itself or one or two folders down)"
            )
    return list(found.values())


def _absolute(path: str | Path) -> Path:
    """``path`` as given, made absolute without resolving links: the folder the user named, not where a
    link in it leads."""
    return Path(path).expanduser().absolute()


def _runs_under(path: Path) -> list[Path]:
    if _is_run(path):
        return [path]
    runs = []
    for child in _subfolders(path):
        if _is_run(child):
            runs.append(child)
        else:  # a folder of runs inside the folder given: multirun/train/ holds one folder per sweep
            runs += [grandchild for grandchild in _subfolders(child) if _is_run(grandchild)]
    return runs


def _is_run(path: Path) -> bool:
    return (path / SUMMARY_FILE).is_file() or any(path.glob(METRICS_GLOB))


def _subfolders(path: Path) -> list[Path]:
    """Visible sub-folders by natural name order (Hydra's job folders 0, 1, ..., 10)."""
    folders = [p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return sorted(folders, key=lambda p: _natural_key(p.name))


def _natural_key(name: str) -> list[int | str]:
    # re.split with a group alternates text and digits, so the same positions always hold the same type
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def load_run_record(path: str | Path) -> dict[str, Any]:
    """What the report knows about one run folder.

    Returns ``{"path", "status" ("finished", "unfinished", or for a search's trial "pruned" or "failed"),
    "overrides" ({key: value} from .hydra/overrides.yaml), "metrics" (summary.json, or for an unfinished run
    the last value logged of each metric and the last optimizer step), "train_curve", "val_curve" ([(optimizer
    step, loss)] from every csv version, a later launch replacing the steps it logged again)}``. Raises
    ``ReportError`` naming the folder and the problem when one of its files cannot be read.
    """
    path = _absolute(path)
    try:
        return _read_record(path)
    except CorruptRun as error:
        raise ReportError(f"{path}: {error}") from None


class CorruptRun(ReportError):
    """A file of a run folder that cannot be read; the message names the file relative to the folder."""


def _read_record(path: Path) -> dict[str, Any]:
    rows = _metric_rows(path)
    summary_path = path / SUMMARY_FILE
    if summary_path.is_file():
        status, metrics = "finished", _read_summary(summary_path)
    elif rows:
        status, metrics = _ended_as(path), _last_logged(rows)
    else:
        raise CorruptRun(f"not a run folder (no {SUMMARY_FILE}, and no logged rows in {METRICS_GLOB})")
    return {
        "path": path,
        "status": status,
        "overrides": _read_overrides(path),
        "metrics": metrics,
        "train_curve": _curve(rows, "train/loss"),
        "val_curve": _curve(rows, "val/loss"),
    }


def _problem(error: BaseException) -> str:
    """A parser's message on one line, cut short (YAML's span several lines and quote the input)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= PROBLEM_CHARS else text[: PROBLEM_CHARS - 3] + "..."


def _checked(path: Path, name: str, limit: int) -> Path:
    """``path`` if it is a regular file of at most ``limit`` bytes: a FIFO would block the read, a link to
    /dev/zero or a huge file would take all memory (a run folder is anyone's to hand over)."""
    if not path.is_file():
        raise CorruptRun(f"{name}: not a regular file")
    if (size := path.stat().st_size) > limit:
        raise CorruptRun(f"{name}: {size:,} bytes, more than a run writes ({limit:,})")
    return path


def _read_summary(path: Path) -> dict[str, Any]:
    """summary.json as written: NaN, Infinity and null values are kept (the table shows and sorts them)."""
    path = _checked(path, SUMMARY_FILE, MAX_SMALL_FILE)
    try:
        summary = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as error:  # UnicodeDecodeError is a ValueError
        raise CorruptRun(f"{SUMMARY_FILE}: not readable as JSON ({_problem(error)})") from None
    if not isinstance(summary, dict):
        raise CorruptRun(f"{SUMMARY_FILE}: expected a JSON object, found {type(summary).__name__}")
    return {key: value for key, value in summary.items() if _is_metric(path.parent, key, value)}


SUMMARY_RECORDS = ("eval_batches", "not_evaluated")  # the summary's entries that are not numbers
MAX_METRIC = 1e300  # beyond: no run measured it (matplotlib and the table's sums overflow on it)


def _is_metric(run: Path, key: str, value: Any) -> bool:
    """Whether ``key`` of ``run``'s summary is a number (or null, or one of its records): a hand-edited
    summary's text or list would be shown and sorted as a metric. A warning names each one left out."""
    if key in SUMMARY_RECORDS or value is None:
        return True
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if number and (not math.isfinite(value) or abs(value) <= MAX_METRIC):  # NaN and inf: shown as such
        return True
    print(
        f"warning: {run / SUMMARY_FILE}: {key}={value!r:.60} is not a number a run writes; left out",
        file=sys.stderr,
    )
    return False


def _read_overrides(run: Path) -> dict[str, str]:
    """``key=value`` overrides as {key: value}; ``+key``/``++key`` count as ``key``, ``~key`` (a deletion)
    as ``key: "~"``. A run launched without Hydra has none."""
    path = run / OVERRIDES_FILE
    if not path.is_file():
        return {}
    name = OVERRIDES_FILE.as_posix()
    path = _checked(path, name, MAX_SMALL_FILE)
    try:
        items = yaml.safe_load(path.read_text(encoding="utf-8")) or []
    except (OSError, ValueError, yaml.YAMLError, RecursionError) as error:
        raise CorruptRun(f"{name}: not readable as YAML ({_problem(error)})") from None
    # strings only: a list of YAML aliases to lists would expand to gigabytes once turned into text
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        found = type(items).__name__ if not isinstance(items, list) else "a list of other things"
        raise CorruptRun(f"{name}: expected a list of key=value overrides, found {found}")
    overrides = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        if sep:
            overrides[key.lstrip("+")] = value
        else:
            overrides[key.lstrip("~")] = "~"
    return overrides


def _metric_rows(run: Path) -> list[dict[str, str]]:
    """Every logged row of every launch, merged into one curve: a resumed launch starts at its checkpoint's
    step, so the rows an earlier launch logged from that step on (work lost after the checkpoint) give way
    to the later launch's."""
    versions = []
    for file in run.glob(METRICS_GLOB):
        number = file.parent.name.removeprefix("version_")
        if number.isdigit():
            versions.append((int(number), file))
    rows: list[dict[str, str]] = []
    for _, file in sorted(versions):
        launch = [row for row in _read_csv(file, file.relative_to(run).as_posix()) if _step(row) is not None]
        if launch:
            first = min(_step(row) for row in launch)
            rows = [row for row in rows if _step(row) < first] + launch
    return rows


def _read_csv(file: Path, name: str) -> list[dict[str, str]]:
    """The rows of one metrics.csv as {column: value}. The CSV logger writes every column of every row, so a
    row with another number of fields is a file cut off mid-write, or not the logger's data at all."""
    file = _checked(file, name, MAX_METRICS_FILE)
    try:
        with file.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            lines = [(reader.line_num, fields) for fields in reader if fields]  # blank lines aside
    except (OSError, ValueError, csv.Error) as error:  # UnicodeDecodeError is a ValueError
        raise CorruptRun(f"{name}: not readable as CSV ({_problem(error)})") from None
    if not lines:
        return []
    (_, header), body = lines[0], lines[1:]
    if "step" not in header:
        raise CorruptRun(f"{name}: no 'step' column in its header, so not a metrics.csv the logger wrote")
    for line, fields in body:
        if len(fields) != len(header):
            raise CorruptRun(
                f"{name}: line {line} has {len(fields)} fields, the header {len(header)} (cut off or garbled)"
            )
    return [dict(zip(header, fields, strict=True)) for _, fields in body]


def _step(row: dict[str, str]) -> int | None:
    try:
        return int(float(row.get("step") or ""))
    except (ValueError, OverflowError):  # not a number, or nan / inf
        return None


def _number(text: str | None) -> float | None:
    try:
        value = float(text or "")
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _curve(rows: list[dict[str, str]], column: str) -> list[tuple[int, float]]:
    """(optimizer step, value) of ``column``. Lightning's CSV logs what happens during fit under the count
    of steps before it (0 for the first optimizer step) and a final evaluation under the count after all of
    them; rows up to the last training row are moved on by one, so the curves read in optimizer steps (the
    step summary.json and the checkpoints name)."""
    fit_end = max((_step(row) for row in rows if _number(row.get("train/loss")) is not None), default=-1)
    points = [(_step(row), _number(row.get(column))) for row in rows]
    return [(step + (step <= fit_end), value) for step, value in points if value is not None]


def _ended_as(path: Path) -> str:
    """A run without summary.json: "pruned" or "failed" where a search's trial_end.json says so, else
    "unfinished" (still training, or stopped)."""
    try:
        text = _checked(path / TRIAL_END_FILE, TRIAL_END_FILE, MAX_SMALL_FILE).read_text(encoding="utf-8")
        state = json.loads(text).get("state")
    except (OSError, ValueError, AttributeError, RecursionError, CorruptRun):
        return "unfinished"
    return state if state in ("pruned", "failed") else "unfinished"


def _last_logged(rows: list[dict[str, str]]) -> dict[str, Any]:
    """An unfinished run's metrics: the last logged value of each, and the last step logged."""
    metrics: dict[str, Any] = {key: None for key in CSV_METRICS.values()}
    for column, key in CSV_METRICS.items():
        curve = _curve(rows, column)
        if curve:
            metrics[key] = curve[-1][1]
    if metrics["val_perplexity"] is None and metrics["val_loss"] is not None:
        metrics["val_perplexity"] = math.exp(min(metrics["val_loss"], 700.0))
    metrics["step"] = (
        max(step for step, _ in _curve(rows, "train/loss")) if _curve(rows, "train/loss") else None
    )
    metrics["wall_seconds"] = None  # only a finished run times its fit
    return metrics


# --------------------------------------------------------------------------- the table


def run_root(records: Sequence[dict[str, Any]]) -> Path:
    """The folder the runs are named relative to: their common folder (the multirun folder for a sweep),
    or the parent of a single run."""
    paths = [record["path"] for record in records]
    root = Path(os.path.commonpath(paths))
    return root.parent if root in paths else root


def run_name(record: dict[str, Any], root: Path) -> str:
    """The run's folder relative to ``root``, printable: bytes of a name that are not UTF-8 (which Python
    holds as surrogates, and fonts and encoders refuse) show as U+FFFD."""
    name = record["path"].relative_to(root).as_posix()
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def split_overrides(records: Sequence[dict[str, Any]]) -> tuple[list[str], list[str]]:
    """(``key=value`` overrides every run shares, keys whose values differ between runs), each in the order
    the keys first appear. A run that lacks a key another run sets counts as differing."""
    keys = list(dict.fromkeys(key for record in records for key in record["overrides"]))
    common, differing = [], []
    for key in keys:
        values = {record["overrides"].get(key) for record in records}
        if len(values) == 1:
            common.append(f"{key}={values.pop()}")
        else:
            differing.append(key)
    return common, differing


def build_table(
    records: Sequence[dict[str, Any]], metric: str = "val_loss", descending: bool = False
) -> list[dict]:
    """One row per run, best first by ``metric`` (a summary.json key; ascending unless ``descending``; runs
    without a number for it last). Columns: run, status, the differing overrides, ``metric`` when it is not
    one of the standard columns, then val_loss, val_perplexity, tokens/s, wall time (s) and step. Values are
    raw (float, int, str or None); formatting is left to the writers."""
    root = run_root(records)
    _, differing = split_overrides(records)
    columns = [(metric, metric)] if metric not in {key for key, _, _ in METRIC_COLUMNS} else []
    columns += [(key, header) for key, header, _ in METRIC_COLUMNS]
    rows = []
    for record in records:
        row: dict[str, Any] = {"run": run_name(record, root), "status": record["status"]}
        row.update({key: record["overrides"].get(key) for key in differing})
        row.update({header: record["metrics"].get(key) for key, header in columns})
        rows.append(row)
    sort_by = dict(columns)[metric]
    present = [row for row in rows if _sortable(row[sort_by])]  # null, NaN and inf go last, in folder order
    absent = [row for row in rows if not _sortable(row[sort_by])]
    return sorted(present, key=lambda row: row[sort_by], reverse=descending) + absent


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _sortable(value: Any) -> bool:
    return _is_number(value) and (isinstance(value, int) or math.isfinite(value))  # an int of any size


def format_value(header: str, value: Any) -> str:
    """A cell as people read it: fixed decimals for the standard columns, 4 significant digits otherwise."""
    if value is None:
        return MISSING
    if not _is_number(value):  # a string from a summary.json handed over: control characters shown, not sent
        return str(value).translate(_CONTROL_ESCAPES)
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # nan, inf
    formats = {header: fmt for _, header, fmt in METRIC_COLUMNS}
    fmt = formats.get(header, "d" if isinstance(value, int) else ".4g")
    if fmt.endswith("f") and abs(value) >= 1e15:  # fixed decimals of 1e308 are 309 digits
        fmt = ".4g"
    try:
        return format(int(value) if fmt == "d" else value, fmt)
    except OverflowError:  # an integer too large for a float's format
        return str(value)


# C0 and C1 control characters (a terminal acts on ESC, BEL, ...) as their \x escapes
_CONTROL_ESCAPES = {code: f"\\x{code:02x}" for code in (*range(0x20), *range(0x7F, 0xA0))}


def _numeric_columns(rows: list[dict]) -> set[str]:
    """Columns holding only numbers (right-aligned)."""
    return {
        header
        for header in rows[0]
        if all(row[header] is None or _is_number(row[header]) for row in rows)
        and any(row[header] is not None for row in rows)
    }


def render_text(rows: list[dict], common: list[str], metric: str, descending: bool) -> str:
    """The table as plain aligned text, with the shared overrides on one line above it."""
    order = "descending" if descending else "ascending"
    lines = [f"{len(rows)} runs, sorted by {metric} ({order})"]
    lines.append("common overrides: " + (" ".join(common) if common else "(none)"))
    lines.append("")
    cells = [list(rows[0])] + [[format_value(header, row[header]) for header in row] for row in rows]
    widths = [max(len(line[i]) for line in cells) for i in range(len(cells[0]))]
    numeric = _numeric_columns(rows)
    for line in cells:
        parts = [
            cell.rjust(width) if header in numeric else cell.ljust(width)
            for cell, width, header in zip(line, widths, rows[0], strict=True)
        ]
        lines.append("  ".join(parts).rstrip())
    return "\n".join(lines)


def render_markdown(rows: list[dict], common: list[str], metric: str, descending: bool, root: Path) -> str:
    order = "descending" if descending else "ascending"
    shared = ", ".join(f"`{item}`" for item in common) if common else "(none)"
    numeric = _numeric_columns(rows)
    headers = list(rows[0])

    def line(cells: Iterable[str]) -> str:
        return "| " + " | ".join(cell.replace("|", "\\|") for cell in cells) + " |"

    lines = [
        f"# Runs in `{root}`",
        "",
        f"Sorted by `{metric}` ({order}). Common overrides: {shared}.",
        "",
        line(headers),
        "| " + " | ".join("---:" if header in numeric else "---" for header in headers) + " |",
    ]
    lines += [line(format_value(header, row[header]) for header in headers) for row in rows]
    return "\n".join(lines) + "\n"


def write_csv(rows: list[dict], path: Path) -> None:
    """Full-precision values for scripts; a missing value is an empty cell. Written atomically."""
    with atomic_write(path) as handle:
        handle.write(csv_bytes(rows))


def csv_bytes(rows: list[dict]) -> bytes:
    """``rows`` as CSV (UTF-8)."""
    text = io.StringIO(newline="")
    writer = csv.DictWriter(text, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows({key: "" if value is None else value for key, value in row.items()} for row in rows)
    # a folder name that is not UTF-8 (bytes Python holds as surrogates) is written back as those bytes
    return text.getvalue().encode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- the loss curves


def curve_labels(records: Sequence[dict[str, Any]]) -> list[str]:
    """Each run's legend label: its differing overrides (its folder name when none differ, or prefixed by
    it when two runs would read the same), "(unfinished)" for a run still without summary.json."""
    root = run_root(records)
    _, differing = split_overrides(records)
    labels = [
        ", ".join(f"{key}={record['overrides'][key]}" for key in differing if key in record["overrides"])
        for record in records
    ]
    names = [run_name(record, root) for record in records]
    if len(set(labels)) < len(labels) or not all(labels):
        labels = [f"{name}: {label}" if label else name for name, label in zip(names, labels, strict=True)]
    return [
        label + ("" if record["status"] == "finished" else f" ({record['status']})")
        for label, record in zip(labels, records, strict=True)
    ]


def plot_curves(records: Sequence[dict[str, Any]], path: Path, title: str = "") -> bool:
    """Train loss (thin line) and val loss (markers) against the optimizer step, one colour per run, written
    atomically as a PNG. Returns False (and writes nothing) when no run has a logged loss."""
    png = curves_png(records, title)
    if png is None:
        return False
    with atomic_write(path) as handle:
        handle.write(png)
    return True


def curves_png(records: Sequence[dict[str, Any]], title: str = "") -> bytes | None:
    """``plot_curves``'s PNG, or None when no run has a logged loss. Uses the Agg canvas directly, so it
    works with no display and leaves pyplot's global backend alone."""
    from matplotlib import colormaps
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.lines import Line2D

    labelled = zip(records, curve_labels(records), strict=True)
    plotted = [(record, label) for record, label in labelled if record["train_curve"] or record["val_curve"]]
    if not plotted:
        return None
    palette = colormaps["tab10" if len(plotted) <= 10 else "tab20"]
    fig = Figure(figsize=(10, 6), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    run_handles = []
    for i, (record, label) in enumerate(plotted):
        color = palette(i % palette.N)
        if record["train_curve"]:
            steps, losses = zip(*record["train_curve"], strict=True)
            lone = len(steps) == 1  # a line needs two points: show a lone one as a dot
            ax.plot(steps, losses, color=color, linewidth=1.2, marker="." if lone else None)
        final = _final_val(record)
        val_curve = [point for point in record["val_curve"] if point != final]  # logged again at the end
        if val_curve:
            steps, losses = zip(*val_curve, strict=True)
            ax.plot(steps, losses, color=color, linestyle=":", linewidth=1.0, marker="o", markersize=6)
        if final:
            ax.plot(*final, color=color, marker="*", markersize=14, markeredgecolor="black", linewidth=0)
        run_handles.append(Line2D([], [], color=color, linewidth=2.5, label=label))
    style_handles = [
        Line2D([], [], color="0.35", linewidth=1.2, label="train loss"),
        Line2D([], [], color="0.35", linestyle=":", marker="o", markersize=6, label="val loss"),
        Line2D(
            [],
            [],
            color="0.35",
            marker="*",
            markersize=12,
            linewidth=0,
            label="final val loss (summary.json)",
        ),
    ]
    outside = len(plotted) > 6  # a long legend goes beside the axes instead of over the curves
    runs_legend = ax.legend(
        handles=run_handles,
        title="runs",
        loc="upper left" if outside else "upper right",
        bbox_to_anchor=(1.01, 1.0) if outside else None,
        fontsize="small",
    )
    ax.add_artist(runs_legend)
    ax.legend(handles=style_handles, loc="lower left", fontsize="small")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.set_title(title or "loss curves")
    ax.grid(True, alpha=0.3)
    png = io.BytesIO()
    fig.savefig(png, format="png")
    return png.getvalue()


def _final_val(record: dict[str, Any]) -> tuple[int, float] | None:
    """A finished run's summary val_loss at its last step: measured on the whole val split with the final
    weights, so it can differ from the periodic val losses (often over limit_val_batches batches)."""
    step, loss = record["metrics"].get("step"), record["metrics"].get("val_loss")
    if record["status"] != "finished" or not _sortable(step) or not _sortable(loss):
        return None
    return int(step), float(loss)


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_llm.report",
        description="Compare runs from their folders: a table sorted by a metric, report.csv, report.md and "
        "loss_curves.png.",
        epilog="examples:\n"
        "  python -m lightning_llm.report multirun/train/2024-01-01_12-00-00\n"
        "  python -m lightning_llm.report outputs/train/run_a outputs/train/run_b --metric tokens_per_second "
        "--descending",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="+",
        type=path_argument,
        metavar="PATH",
        help="a multirun folder, run folders, or folders of either",
    )
    parser.add_argument(
        "--metric", default="val_loss", help="summary.json key to sort by (default: val_loss)"
    )
    parser.add_argument("--descending", action="store_true", help="largest first (e.g. for accuracy)")
    parser.add_argument(
        "--out",
        type=path_argument,
        metavar="DIR",
        help="where to write the files (default: the folder given; of several, the one holding the others)",
    )
    return parser


@ctrl_c_exits
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        runs = find_runs(args.paths)
        out = Path(args.out).expanduser() if args.out else default_out(args.paths)
        records = _readable_records(runs)
        _check_metric(records, args.metric)
        rows = build_table(records, args.metric, args.descending)
        common, _ = split_overrides(records)
        root = run_root(records)
        written = _write(rows, records, common, args, root, out)
    except ReportError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(render_text(rows, common, args.metric, args.descending))
    print(f"\nwrote {', '.join(str(out / name) for name in written)}")
    return 0


def default_out(paths: Sequence[str | Path]) -> Path:
    """Where a report without ``--out`` goes: always a folder the user named, links not resolved (a link to
    a run elsewhere must not move the report beside its target). One path: that folder (a run's own folder,
    a multirun folder). Several: their common folder when it is one of them (``report sweep sweep/3``), and
    not the filesystem root or the home folder; otherwise a ``ReportError`` asking for ``--out``."""
    given = [_absolute(path) for path in paths]
    if len(set(given)) == 1:
        return given[0]
    common = Path(os.path.commonpath(given))
    ask = "; name the folder to write the report into with --out DIR"
    if common not in given:
        raise ReportError(f"{len(given)} paths given and their common folder {common} is none of them{ask}")
    for where, folder in (("the filesystem root", Path(common.anchor)), ("your home folder", _home())):
        if folder is not None and (common == folder or _same_folder(common, folder)):
            raise ReportError(f"{len(given)} paths given and their common folder {common} is {where}{ask}")
    return common


def _home() -> Path | None:
    try:
        return Path.home()
    except (RuntimeError, KeyError):  # no HOME and no password entry
        return None


def _same_folder(a: Path, b: Path) -> bool:
    try:
        return a.samefile(b)
    except OSError:  # one of them is not there
        return False


def _readable_records(runs: list[Path]) -> list[dict[str, Any]]:
    """The records of the runs that can be read; each other run is skipped with one warning line."""
    records = []
    for run in runs:
        try:
            records.append(load_run_record(run))
        except ReportError as error:
            print(f"warning: {error}; skipped this run", file=sys.stderr)
    if not records:
        raise ReportError(f"no run left to report: all {len(runs)} found were skipped (see the warnings)")
    return records


def _check_metric(records: list[dict[str, Any]], metric: str) -> None:
    if metric in ("run", "status"):  # the table's own columns
        raise ReportError(f"--metric {metric}: a column of the table, not a summary value to rank by")
    if not any(metric in record["metrics"] for record in records):
        keys = sorted({key for record in records for key in record["metrics"]})
        raise ReportError(f"--metric {metric}: no run has it; summary keys: {', '.join(keys)}")


def _write(
    rows: list[dict], records: list[dict], common: list[str], args: argparse.Namespace, root: Path, out: Path
) -> list[str]:
    """Writes the files into ``out``; returns the names written. A file of those names that an earlier
    report did not write as it is now (``MANIFEST``) is the user's: refused, never replaced. Each file is
    written beside its name and renamed onto it, after the manifest has recorded both its old and its new
    content as the report's: a report killed partway leaves files the next one replaces."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        _check_replaceable(out)
        markdown = render_markdown(rows, common, args.metric, args.descending, root)
        contents = {"report.csv": csv_bytes(rows), "report.md": markdown.encode("utf-8", "surrogateescape")}
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            print("matplotlib is not installed (pip install matplotlib): no loss_curves.png", file=sys.stderr)
        else:
            by_name = {run_name(record, root): record for record in records}
            ranked = [by_name[row["run"]] for row in rows]  # the legend lists the runs in the table's order
            if (png := curves_png(ranked, title=f"loss curves: {root.name}")) is not None:
                contents["loss_curves.png"] = png
        _publish(out, contents)
    except OSError as error:
        raise ReportError(f"--out {out}: cannot write there ({error.strerror or error})") from None
    return list(contents)


def _publish(out: Path, contents: dict[str, bytes]) -> None:
    """Put ``contents`` (name -> bytes) into ``out`` under those names, recording them (``MANIFEST``)."""
    staged: dict[str, Path] = {}
    try:
        for name, data in contents.items():
            staged[name] = temporary_name(out / name)
            with open(staged[name], "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
        recorded = _manifest(out)
        either = {  # old or new: either is the report's while the files are swapped in
            name: sorted({*_digests(recorded.get(name)), _sha256(data)}) for name, data in contents.items()
        }
        write_text(out / MANIFEST, json.dumps({**recorded, **either}, indent=2) + "\n")
        for name, temporary in staged.items():
            os.replace(temporary, out / name)
        fsync_dir(out)
        _record_written(out, list(contents))
    finally:
        for temporary in staged.values():
            temporary.unlink(missing_ok=True)


MANIFEST = ".report.json"  # the files a report wrote into its folder, by content hash
OUTPUT_FILES = ("report.csv", "report.md", "loss_curves.png")


def _digest(path: Path) -> str:
    return _sha256(path.read_bytes())


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _digests(recorded: object) -> list[str]:
    """A manifest entry's digests: one, or (while a report swaps its files in) the old and the new."""
    if isinstance(recorded, str):
        return [recorded]
    return [digest for digest in recorded if isinstance(digest, str)] if isinstance(recorded, list) else []


def _manifest(out: Path) -> dict[str, str]:
    try:
        text = _checked(out / MANIFEST, MANIFEST, MAX_SMALL_FILE).read_text(encoding="utf-8")
        recorded = json.loads(text)
    except (OSError, ValueError, RecursionError, CorruptRun):  # unreadable: no file counts as the report's
        return {}
    return recorded if isinstance(recorded, dict) else {}


def _check_replaceable(out: Path) -> None:
    recorded = _manifest(out)
    for name in OUTPUT_FILES:
        path = out / name
        if path.is_symlink() or (
            path.exists() and (not path.is_file() or _digest(path) not in _digests(recorded.get(name)))
        ):
            raise ReportError(
                f"--out {out}: {name} is there and no earlier report wrote it as it is now; choose another "
                "--out (a report replaces only its own files)"
            )


def _record_written(out: Path, written: list[str]) -> None:
    """Record the files this report wrote into ``out`` as they are now (and an earlier report's it left), for
    the next one."""
    kept = {name: digest for name, digest in _manifest(out).items() if name in OUTPUT_FILES}
    recorded = {**kept, **{name: _digest(out / name) for name in written}}
    write_text(out / MANIFEST, json.dumps(recorded, indent=2) + "\n")


if __name__ == "__main__":
    sys.exit(main())
