"""
Summarise the sample-efficiency runs (``sample_efficiency.py``) as the benchmark protocol asks.

Per run and as the median over seeds: **first** (the first evaluated step count whose mean return reaches the
threshold), **sustained** (the step from which every later evaluation stays at or above it), **curve average** (the
time-averaged mean evaluation return over the run, trapezoidal rule) and the **final** evaluation (mean ± std over
its 10 episodes; over seeds, mean ± std of the seeds' final means). A run that never reaches the threshold counts
as its budget and every figure built on it becomes a bound: "≥ 100000" steps, and the ratio A2C / ACKTR becomes
"≥ r" (A2C censored) or "≤ r" (ACKTR censored).

    python benchmarks/report.py                       # benchmarks/results/sample_efficiency -> docs/_static/
    python benchmarks/report.py --results DIR --out-dir DIR --no-plots
    python benchmarks/report.py --results DIR --splice docs/benchmark.md   # and the figures into the page
    python benchmarks/report.py --results DIR --out-dir DIR --splice docs/benchmark.md --block minatar   # or the report
    python benchmarks/report.py --results DIR --up-to 200000 --no-plots   # every run over its first 200k steps
"""

import argparse
import json
import os
import re
import statistics
import sys
from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from protocol import DOCS_STATIC, RESULTS_DIR, SANITY_CHECKS, THRESHOLDS, run_label
from tables import table_header

ALGO_NAMES = {
    "acktr": "ACKTR",
    "a2c": "A2C",
    "a2c_at_acktr": "A2C at ACKTR's settings",
    "ppo": "PPO",
    "ppo_lstm": "RecurrentPPO",
    "acktr_lstm": "RecurrentACKTR",
}
#: Rows in this order; variants (``acktr-reduce``) after their algorithm
ALGO_ORDER = ("a2c", "a2c_at_acktr", "ppo", "acktr", "ppo_lstm", "acktr_lstm")


def algo_name(label: str) -> str:
    """``"ACKTR"``, ``"PPO"``, ``"ACKTR (reduce)"`` for the label ``acktr-reduce``."""
    algo, _, variant = label.partition("-")
    return ALGO_NAMES[algo] + (f" ({variant})" if variant else "")


def ordered_labels(labels: Sequence[str]) -> list[str]:
    """The run labels of an env, A2C first (rl-zoo's, then at ACKTR's settings), then PPO, then ACKTR, each algorithm
    before its variants."""
    return sorted(labels, key=lambda label: (ALGO_ORDER.index(label.partition("-")[0]), label))


@dataclass(frozen=True)
class Steps:
    """
    A step count, or a lower bound on it when the run never got there (``censored``: the value is the budget).

    :param value: Steps
    :param censored: True if the true value is larger than ``value`` (threshold not reached within the run)
    """

    value: float
    censored: bool = False

    def __str__(self) -> str:
        return f"≥ {self.value:,.0f}" if self.censored else f"{self.value:,.0f}"


def plural(count: int, noun: str) -> str:
    """``"1 seed"``, ``"3 seeds"``."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def first_step(timesteps: Sequence[float], means: Sequence[float], threshold: float) -> Steps:
    """
    (a) The first evaluated step count whose mean return is at or above ``threshold``.

    :param timesteps: Step counts of the evaluations, increasing
    :param means: Mean evaluation return at each
    :param threshold: The threshold
    :return: That step count, or the last step count censored if none reaches it
    """
    for step, mean in zip(timesteps, means, strict=True):
        if mean >= threshold:
            return Steps(float(step))
    return Steps(float(timesteps[-1]), censored=True)


def sustained_step(timesteps: Sequence[float], means: Sequence[float], threshold: float) -> Steps:
    """
    (b) The step count from which every evaluation, up to the last, is at or above ``threshold``.

    :param timesteps: Step counts of the evaluations, increasing
    :param means: Mean evaluation return at each
    :param threshold: The threshold
    :return: That step count, or the last step count censored if the last evaluation is below the threshold
    """
    start: float | None = None
    for step, mean in zip(timesteps, means, strict=True):
        if mean >= threshold:
            start = float(step) if start is None else start
        else:
            start = None
    return Steps(float(timesteps[-1]), censored=True) if start is None else Steps(start)


def curve_average(timesteps: Sequence[float], means: Sequence[float]) -> float:
    """
    (c) The time-averaged mean evaluation return: area under the piecewise-linear curve over its step span.

    :param timesteps: Step counts of the evaluations, increasing
    :param means: Mean evaluation return at each
    :return: The average (the single value if there is one evaluation)
    """
    steps, values = np.asarray(timesteps, dtype=float), np.asarray(means, dtype=float)
    if len(steps) == 1 or steps[-1] == steps[0]:
        return float(values.mean())
    area = float(np.sum((values[1:] + values[:-1]) / 2 * np.diff(steps)))
    return area / float(steps[-1] - steps[0])


def median_steps(values: Sequence[Steps]) -> Steps:
    """
    The median over seeds; censored values sort above every observed one (their true value exceeds the budget),
    and the median is censored when it depends on a censored value.

    :param values: One per seed
    :return: The median, possibly censored
    """
    ordered = sorted(values, key=lambda s: (s.censored, s.value))
    n = len(ordered)
    middle = ordered[(n - 1) // 2 : n // 2 + 1]
    return Steps(float(np.mean([s.value for s in middle])), censored=any(s.censored for s in middle))


def steps_ratio(a2c: Steps, acktr: Steps) -> str:
    """
    A2C steps / ACKTR steps (> 1: ACKTR needs fewer steps), with its bound when a side is censored.

    :param a2c: A2C's (median) step count
    :param acktr: ACKTR's (median) step count
    :return: ``"2.30"``, ``"≥ 2.30"``, ``"≤ 0.50"`` or ``"n/a"`` (both censored, or a zero)
    """
    if (a2c.censored and acktr.censored) or a2c.value <= 0 or acktr.value <= 0:
        return "n/a"
    ratio = a2c.value / acktr.value
    if a2c.censored:
        return f"≥ {ratio:.2f}"
    if acktr.censored:
        return f"≤ {ratio:.2f}"
    return f"{ratio:.2f}"


def median_ratio(summaries: list[dict[str, Any]]) -> str:
    """
    The median over the counted tasks (sanity checks excluded, both algorithms run) of the sustained ratio
    A2C / ACKTR, each task's ratio listed beside it. A censored side makes that task's ratio a bound: it enters the
    median at its bound value, and the median is then flagged as involving bounds.

    :param summaries: The per-env summaries of :func:`env_table`
    :return: A sentence, or ``"no counted task yet"``
    """
    counted = [s for s in summaries if s["env_id"] not in SANITY_CHECKS and "a2c" in s and "acktr" in s]
    ratios, labels, bounded = [], [], False
    for s in counted:
        a2c, acktr = s["a2c"]["sustained"], s["acktr"]["sustained"]
        label = steps_ratio(a2c, acktr)
        labels.append(f"{s['env_id']} {label}")
        if label != "n/a":
            ratios.append(a2c.value / acktr.value)
            bounded = bounded or a2c.censored or acktr.censored
    if not ratios:
        return "no counted task yet"
    note = " (some ratios are bounds: see each task)" if bounded else ""
    return f"{float(np.median(ratios)):.2f} over {plural(len(ratios), 'task')}{note}: " + ", ".join(labels)


def run_metrics(run: dict[str, Any]) -> dict[str, Any]:
    """
    The protocol's figures for one run (a results file of ``sample_efficiency.py``).

    :param run: The loaded results
    :return: first, sustained, curve average, final mean and std, steps reached, whether complete
    """
    timesteps = run["timesteps"]
    returns = [np.asarray(r, dtype=float) for r in run["returns"]]
    means = [float(r.mean()) for r in returns]
    threshold = run.get("threshold")
    if threshold is None:
        threshold = THRESHOLDS[run["env_id"]]
    return {
        "first": first_step(timesteps, means, threshold),
        "sustained": sustained_step(timesteps, means, threshold),
        "curve_average": curve_average(timesteps, means),
        "final_mean": means[-1],
        "final_std": float(returns[-1].std()),
        "steps": timesteps[-1],
        "done": bool(run.get("done")),
    }


def cut_at(run: dict[str, Any], up_to: int) -> dict[str, Any] | None:
    """
    A run as if it had been stopped with ``sample_efficiency.py --stop-at up_to``: its evaluations up to and including
    the first at or past ``up_to`` (evaluations fall at update boundaries, which differ by algorithm).

    :param run: The loaded results, finished or not
    :param up_to: Environment steps
    :return: The cut run (its budget ``up_to``, complete over it), or None if the run has not got there yet
    """
    end = next((i + 1 for i, step in enumerate(run["timesteps"]) if step >= up_to), None)
    if end is None:
        return None
    return {**run, "timesteps": run["timesteps"][:end], "returns": run["returns"][:end], "budget": up_to, "done": True}


def load_runs(directories: Sequence[Path], up_to: int | None = None) -> dict[str, dict[str, list[dict[str, Any]]]]:
    """
    Every finished ``*.json`` results file under ``directories`` (checkpoints excluded), by env and algorithm. A run
    still going (or interrupted, to be resumed) is left out, with a line on stderr: its curve would stop early.
    With ``up_to``, every run is compared over its first ``up_to`` steps instead (:func:`cut_at`), finished or not,
    and only a run short of them is left out.

    :param directories: Where the runs wrote (``--out-dir`` of ``sample_efficiency.py``)
    :param up_to: Compare the runs over their first ``up_to`` steps (None: over their whole budget)
    :return: ``{env_id: {algo: [run, ...]}}``, seeds in order
    """
    runs: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for directory in directories:
        for path in sorted(directory.glob("*.json")):
            run = json.loads(path.read_text())
            if not {"env_id", "algo", "timesteps", "returns"} <= run.keys() or not run["timesteps"]:
                continue
            if up_to is not None:
                cut = cut_at(run, up_to)
                if cut is None:
                    print(f"left out {path.name}: at {run['timesteps'][-1]:,} steps, short of {up_to:,}", file=sys.stderr)
                    continue
                run = cut
            elif not run.get("done", True):
                print(
                    f"left out {path.name}: unfinished at {run['timesteps'][-1]:,} of {run['budget']:,} steps", file=sys.stderr
                )
                continue
            runs[run["env_id"]][run_label(run["algo"], run.get("variant"))].append(run)
    for by_algo in runs.values():
        for algo_runs in by_algo.values():
            algo_runs.sort(key=lambda run: run["seed"])
    return runs


def env_table(env_id: str, by_algo: dict[str, list[dict[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """
    Markdown table of one env, every seed and the medians, and the summary row for the overview table.

    :param env_id: Environment id
    :param by_algo: Its runs per algorithm
    :return: ``(markdown, summary)``
    """
    threshold = THRESHOLDS.get(env_id, by_algo[next(iter(by_algo))][0].get("threshold"))
    lines = [
        f"### {env_id} (threshold {threshold:g})",
        "",
        *table_header(
            [
                "algorithm",
                "seed",
                "first ≥ threshold",
                "sustained from",
                "curve average",
                "final (mean ± std, 10 episodes)",
                "steps",
            ]
        ),
    ]
    summary: dict[str, Any] = {"env_id": env_id, "threshold": threshold}
    for algo in ordered_labels(list(by_algo)):
        name = algo_name(algo)
        metrics = [run_metrics(run) for run in by_algo[algo]]
        for run, m in zip(by_algo[algo], metrics, strict=True):
            partial = "" if m["done"] else " (running)"
            lines.append(
                f"| {name} | {run['seed']} | {m['first']} | {m['sustained']} | {m['curve_average']:.1f} | "
                f"{m['final_mean']:.1f} ± {m['final_std']:.1f} | {m['steps']:,}{partial} |"
            )
        finals = [m["final_mean"] for m in metrics]
        spread = statistics.stdev(finals) if len(finals) > 1 else 0.0
        median = {
            "first": median_steps([m["first"] for m in metrics]),
            "sustained": median_steps([m["sustained"] for m in metrics]),
            "curve_average": float(np.median([m["curve_average"] for m in metrics])),
            "final": f"{np.mean(finals):.1f} ± {spread:.1f}",
            "seeds": len(metrics),
            "budget": max(run["budget"] for run in by_algo[algo]),
            "hyperparams": by_algo[algo][0].get("hyperparams_source", ""),
        }
        summary[algo] = median
        lines.append(
            f"| **{name} median** | {plural(len(metrics), 'seed')} | **{median['first']}** | **{median['sustained']}** | "
            f"**{median['curve_average']:.1f}** | {median['final']} (over seeds) | |"
        )
    sources = "; ".join(
        f"{algo_name(a)}: {summary[a]['hyperparams']}{params_note(by_algo[a][0])}" for a in ordered_labels(list(by_algo))
    )
    commits = "; ".join(f"{algo_name(a)} {commits_note(by_algo[a])}" for a in ordered_labels(list(by_algo)))
    lines += ["", f"Hyperparameters: {sources}. Commits the runs were made at: {commits}."]
    return "\n".join(lines), summary


def commits_note(runs: list[dict[str, Any]]) -> str:
    """The commits a set of runs recorded (``git_commit``), with how many runs each; files from before it was
    recorded count as "not recorded"."""
    counts = Counter(f"`{run['git_commit']}`" if run.get("git_commit") else "not recorded" for run in runs)
    return ", ".join(f"{commit} ({plural(count, 'run')})" for commit, count in sorted(counts.items()))


def params_note(run: dict[str, Any]) -> str:
    """`` with kfac_weight_sharing='reduce'`` for a variant run, else empty."""
    params = run.get("params") or {}
    return " with " + ", ".join(f"{key}={value}" for key, value in params.items()) if params else ""


def overview_table(summaries: list[dict[str, Any]]) -> str:
    """The ratios A2C / ACKTR per env (sustained first, then first), curve averages and finals beside them."""
    lines = table_header(
        [
            "env",
            "threshold",
            "budget",
            "seeds (A2C/ACKTR)",
            "sustained: A2C",
            "ACKTR",
            "**A2C / ACKTR**",
            "first: A2C",
            "ACKTR",
            "A2C / ACKTR",
            "curve average: A2C",
            "ACKTR",
            "final: A2C",
            "ACKTR",
        ]
    )
    for s in summaries:
        if "a2c" not in s or "acktr" not in s:
            continue
        a2c, acktr = s["a2c"], s["acktr"]
        name = f"{s['env_id']} (sanity check)" if s["env_id"] in SANITY_CHECKS else s["env_id"]
        lines.append(
            f"| {name} | {s['threshold']:g} | {max(a2c['budget'], acktr['budget']):,} | "
            f"{a2c['seeds']}/{acktr['seeds']} | {a2c['sustained']} | {acktr['sustained']} | "
            f"**{steps_ratio(a2c['sustained'], acktr['sustained'])}** | {a2c['first']} | {acktr['first']} | "
            f"{steps_ratio(a2c['first'], acktr['first'])} | {a2c['curve_average']:.1f} | {acktr['curve_average']:.1f} | "
            f"{a2c['final']} | {acktr['final']} |"
        )
    return "\n".join(lines)


def draw_curves(axis: Any, env_id: str, by_algo: dict[str, list[dict[str, Any]]]) -> None:
    """
    Learning curves on ``axis``: mean ± std over seeds of the mean evaluation return, x = environment steps.

    Seeds are interpolated onto a common grid (evaluations fall at update boundaries, which differ by algorithm).
    """
    colors = {
        "a2c": "tab:blue",
        "a2c_at_acktr": "tab:cyan",
        "ppo": "tab:green",
        "acktr": "tab:red",
        "ppo_lstm": "tab:olive",
        "acktr_lstm": "tab:purple",
    }
    extra_colors = iter(("tab:purple", "tab:orange", "tab:brown", "tab:pink"))
    for algo in ordered_labels(list(by_algo)):
        color = colors.get(algo) or next(extra_colors)
        runs = by_algo[algo]
        end = min(run["timesteps"][-1] for run in runs)
        freq = runs[0]["eval_freq"]
        grid = np.unique(np.append(np.arange(0, end, freq), end))
        curves = np.array([np.interp(grid, run["timesteps"], [np.mean(r) for r in run["returns"]]) for run in runs])
        mean, std = curves.mean(axis=0), curves.std(axis=0)
        axis.plot(grid, mean, color=color, label=f"{algo_name(algo)} ({plural(len(runs), 'seed')})")
        axis.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2)
    threshold = THRESHOLDS.get(env_id)
    if threshold is not None:
        axis.axhline(threshold, color="gray", linestyle="--", linewidth=1, label=f"threshold {threshold:g}")
    axis.set(title=env_id)
    axis.grid(alpha=0.3)


def save_figure(figure: Any, path: Path) -> None:
    """Write ``figure`` to ``path`` (creating its folder) and close it."""
    import matplotlib.pyplot as plt

    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=100)
    plt.close(figure)


def plot_env(env_id: str, by_algo: dict[str, list[dict[str, Any]]], path: Path) -> None:
    """The learning curves of one env (:func:`draw_curves`), to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.4, 4.0))
    draw_curves(axis, env_id, by_algo)
    axis.set(xlabel="environment steps", ylabel="mean evaluation return (10 episodes)")
    axis.legend(loc="best")
    save_figure(figure, path)


def plot_overview(runs: dict[str, dict[str, list[dict[str, Any]]]], path: Path, columns: int = 4) -> None:
    """Every env's learning curves in one grid (:func:`draw_curves`), one legend, to a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = -(-len(runs) // columns)
    figure, axes = plt.subplots(rows, columns, figsize=(4.0 * columns, 3.0 * rows), squeeze=False)
    for axis, env_id in zip(axes.flat, sorted(runs), strict=False):
        draw_curves(axis, env_id, runs[env_id])
        axis.tick_params(labelsize=8)
        axis.xaxis.get_offset_text().set_fontsize(8)
    for axis in list(axes.flat)[len(runs) :]:
        axis.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    figure.legend(
        [h for h, label in zip(handles, labels, strict=True) if not label.startswith("threshold")],
        [label.split(" (")[0] for label in labels if not label.startswith("threshold")],
        loc="lower right",
        fontsize=12,
    )
    figure.supxlabel("environment steps")
    figure.supylabel("mean evaluation return (10 episodes; dashed: threshold)")
    save_figure(figure, path)


#: Where an env's section of a page ends: a markdown heading, or the next env's bold heading
SECTION_HEADING = re.compile(r"^(#+ |\*\*[^*]+\*\* \(threshold )")


def table_cells(line: str) -> list[str]:
    """The cells of a markdown table row (none for a line that is not one)."""
    return [cell.strip() for cell in line.strip().strip("|").split("|")] if line.startswith("|") else []


def splice(generated: str, document: str) -> tuple[str, list[str]]:
    """
    Put this report's figures into a page that also holds prose: every row of the page whose first cell and width are
    those of a summary row (in whichever table the page keeps it), the median-ratio line, and in each env's section
    (the same ``### `` heading, or the env's name in bold) its first table and its ``Hyperparameters:`` line if it has
    one. Everything else stays as it is.

    :param generated: This report's markdown (``sample_efficiency.md``)
    :param document: The page
    :return: The page with the figures replaced, and what of the report the page has no place for
    """
    sections = re.split(r"^(?=### )", generated, flags=re.MULTILINE)
    summary, env_sections = sections[0], sections[1:]
    lines = document.split("\n")
    missing = []
    rows = {(cells[0], len(cells)): line for line in summary.split("\n") if len(cells := table_cells(line)) > 1}
    rows = {key: line for key, line in rows.items() if not set(key[0]) <= set("-:")}  # not the header's rule
    # A report with no task that both A2C and ACKTR ran has no ratio line
    ratio = next((line for line in summary.split("\n") if line.startswith("Median sustained ratio")), None)
    found: set[tuple[str, int]] = set()
    ratio_found = False
    for index, line in enumerate(lines):
        cells = table_cells(line)
        key = (cells[0], len(cells)) if cells else None
        if key in rows:
            lines[index] = rows[key]
            found.add(key)
        elif ratio is not None and line.startswith(ratio.split(":")[0] + ":"):
            lines[index] = ratio
            ratio_found = True
    missing += [f"summary row {name}" for name, width in rows if (name, width) not in found and name != "env"]
    if ratio is not None and not ratio_found:
        missing.append("the median-ratio line")
    for section in env_sections:
        heading, body = section.split("\n", 1)
        table = [line for line in body.split("\n") if line.startswith("|")]
        hyperparameters = next(line for line in body.split("\n") if line.startswith("Hyperparameters:"))
        # The page's heading of the section: the same, or in bold as a sub-section ("**CartPole-v1** (threshold 475)")
        name, threshold = heading.removeprefix("### ").split(" (", 1)
        headings = [line for line in (heading, f"**{name}** ({threshold}") if line in lines]
        if not headings:
            missing.append(f"section {heading!r}")
            continue
        start = lines.index(headings[0]) + 1
        end = next((i for i in range(start, len(lines)) if SECTION_HEADING.match(lines[i])), len(lines))
        first = next((i for i in range(start, end) if lines[i].startswith("|")), None)
        if first is None:
            missing.append(f"the table of {heading!r}")
            continue
        last = next((i for i in range(first, end) if not lines[i].startswith("|")), end)
        lines[first:last] = table
        end += len(table) - (last - first)
        # A page may leave the line out (its sanity checks do)
        where = next((i for i in range(start, end) if lines[i].startswith("Hyperparameters:")), None)
        if where is not None:
            lines[where] = hyperparameters
    return "\n".join(lines), missing


def splice_block(generated: str, document: str, block: str, plots: str) -> str:
    """
    Put this whole report into a page as a block of it, between the lines ``<!-- BLOCK-start ... -->`` and
    ``<!-- BLOCK-end -->`` (for a set of runs kept apart from the counted tasks, such as MinAtar's): the report's title
    left out, its headings one level deeper, its plots linked from the page. The rest of the page stays as it is.

    :param generated: This report's markdown (``sample_efficiency.md``)
    :param document: The page
    :param block: The block's name in its markers (``minatar``)
    :param plots: The folder of the plots, relative to the page (``_static/minatar``)
    :return: The page with the block replaced
    :raises ValueError: If the page has no such block
    """
    lines = document.split("\n")
    starts = [i for i, line in enumerate(lines) if line.startswith(f"<!-- {block}-start")]
    ends = [i for i, line in enumerate(lines) if line.strip() == f"<!-- {block}-end -->"]
    if len(starts) != 1 or len(ends) != 1 or ends[0] < starts[0]:
        raise ValueError(
            f"the page needs one line starting '<!-- {block}-start' and, after it, one line '<!-- {block}-end -->' "
            f"around the block to replace; it has {len(starts)} and {len(ends)}"
        )
    body = generated.strip("\n").split("\n")[1:]  # without the report's "## " title
    body = ["#" + line if line.startswith("#") else line for line in body]
    body = [re.sub(r"\]\((sample_efficiency_[^)/]+\.png)\)", rf"]({plots}/\1)", line) for line in body]
    return "\n".join(lines[: starts[0] + 1] + body + [""] + lines[ends[0] :])


def main(argv: list[str] | None = None) -> None:
    """
    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, nargs="+", default=[RESULTS_DIR], help="Folders of results files")
    parser.add_argument("--out-dir", type=Path, default=DOCS_STATIC, help="Tables (markdown) and plots (PNG) go here")
    parser.add_argument("--no-plots", action="store_true", help="Tables only")
    parser.add_argument(
        "--splice",
        type=Path,
        metavar="PAGE",
        help="Also put the tables' figures into PAGE (e.g. docs/benchmark.md), leaving its prose as it is",
    )
    parser.add_argument(
        "--block",
        metavar="NAME",
        help="With --splice: put the whole report into PAGE's block between <!-- NAME-start ... --> and <!-- NAME-end -->",
    )
    parser.add_argument(
        "--up-to",
        type=int,
        metavar="STEPS",
        help="Compare every run over its first STEPS steps, finished or not (each cut after its first evaluation at or "
        "past STEPS, as sample_efficiency.py --stop-at): runs that take days here, compared before they end",
    )
    args = parser.parse_args(argv)
    if args.block is not None and args.splice is None:
        parser.error("--block names a block of the page given by --splice PAGE: add --splice")
    if args.up_to is not None and args.up_to <= 0:
        parser.error(f"--up-to is a number of environment steps, > 0; got {args.up_to}")

    runs = load_runs(args.results, args.up_to)
    if not runs:
        sys.exit(f"error: no results files in {', '.join(map(str, args.results))}: run sample_efficiency.py first.")
    sections, summaries = [], []
    for env_id in sorted(runs):
        table, summary = env_table(env_id, runs[env_id])
        sections.append(table)
        summaries.append(summary)
        if not args.no_plots:
            plot = args.out_dir / f"sample_efficiency_{env_id.replace('/', '-')}.png"
            plot_env(env_id, runs[env_id], plot)
            sections.append(
                f"\n![{env_id}: {' vs '.join(algo_name(a) for a in ordered_labels(list(runs[env_id])))}]({plot.name})"
            )
    compared = any("a2c" in s and "acktr" in s for s in summaries)
    title = "A2C / ACKTR (median over seeds; > 1 means ACKTR needs fewer steps)" if compared else "median over seeds"
    head = [f"## Sample efficiency: {title}"]
    if args.up_to is not None:
        head.append(
            f"Every run over its first {args.up_to:,} steps, finished or not: cut after its first evaluation at or past "
            f"{args.up_to:,} (as `sample_efficiency.py --stop-at {args.up_to}`; the schedules still span each run's budget)."
        )
    if compared:
        head += [
            overview_table(summaries),
            f"Median sustained ratio A2C / ACKTR over the counted tasks (sanity checks excluded): {median_ratio(summaries)}.",
        ]
    markdown = "\n\n".join([*head, *sections])
    args.out_dir.mkdir(parents=True, exist_ok=True)
    if not args.no_plots and len(runs) > 1:
        plot_overview(runs, args.out_dir / "sample_efficiency_overview.png")
    (args.out_dir / "sample_efficiency.md").write_text(markdown + "\n")
    print(markdown)
    print(f"\nwrote {args.out_dir / 'sample_efficiency.md'}" + ("" if args.no_plots else " and the plots"), file=sys.stderr)
    if args.block is not None:
        plots = Path(os.path.relpath(args.out_dir, args.splice.parent)).as_posix()
        args.splice.write_text(splice_block(markdown, args.splice.read_text(), args.block, plots))
        print(f"spliced the report into {args.splice}'s block {args.block!r}", file=sys.stderr)
    elif args.splice is not None:
        page, missing = splice(markdown, args.splice.read_text())
        args.splice.write_text(page)
        print(f"spliced the figures into {args.splice}", file=sys.stderr)
        for what in missing:
            print(f"warning: {args.splice} has no place for {what}: add it by hand", file=sys.stderr)


if __name__ == "__main__":
    main()
