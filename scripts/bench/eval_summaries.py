"""The eval summaries' rows: each app's command with its eval summaries and without them
(`scripts/without_eval_summaries.py`), alternated, for what they cost the run."""

import importlib
import statistics
import sys
import tempfile

from common.loop import phase_times
from scripts.bench.processes import run_process

# Every app's command at its defaults, for the eval summaries' cost (mnist_mlp on synthetic digits,
# as in the end-to-end section: the same work whatever the network).
SUMMARY_APPS = {
    "mnist_mlp": ("--dataset=synthetic",),
    "regression_tape": (),
    "vae_timeseries": (),
    "conditional_dropout": (),
}


def bench_eval_summaries(
    apps: list[str], pairs: int, num_steps: int | None = None, length: int = 1
) -> dict:
    """Each app's command at its defaults with its eval summaries and without them (the same
    command through `scripts/without_eval_summaries.py`, which drops the jobs the loop hands to
    their thread), alternated, who goes first switching every pair.

    Three measures, per app, medians over the pairs: the summaries' time on the loop's own thread
    (the `eval summaries` phase: the weights snapshot, handing the jobs over, waiting for them),
    their CPU time on their own thread, and what they cost the run: its `time:` total (the run from
    setup to close, TensorFlow's import left out) with them less without them, which also holds
    whatever their thread took from the loops' cores. Each as a share of the loops' time without
    them. The runs' spread says how far the last one can be trusted on a shared machine.
    `num_steps` replaces the apps' default length (the tests' tiny runs); `length` multiplies it
    instead, every cadence left at its default: a run `length` times as long makes `length` times
    the evals, so their one-time costs (the first eager calls, the first pictures, the
    Projector's sprite) weigh less, as in a user's long run.
    """
    results = {}
    for app in apps:
        if num_steps:
            steps_flag = [f"--num_steps={num_steps}"]
        elif length != 1:
            default_steps = importlib.import_module(f"apps.{app}.config").Config().num_steps
            steps_flag = [f"--num_steps={default_steps * length}"]
        else:
            steps_flag = []
        with_them, without_them = [], []
        for pair in range(pairs):
            with tempfile.TemporaryDirectory() as temporary:
                commands = {
                    "with": [sys.executable, "-m", f"apps.{app}"],
                    "without": [sys.executable, "scripts/without_eval_summaries.py", f"apps.{app}"],
                }
                for name in ("with", "without") if pair % 2 == 0 else ("without", "with"):
                    logdir = f"--logdir={temporary}/{name}"
                    flags = [*SUMMARY_APPS[app], *steps_flag, logdir]
                    _, stdout = run_process([*commands[name], *flags])
                    total, phases, repeats = phase_times.parse_line(stdout)
                    runs = with_them if name == "with" else without_them
                    runs.append({"total": total, "phases": phases, "repeats": repeats})
            print(
                f"  pair {pair + 1}/{pairs} {app}: with {with_them[-1]['total']:.2f} s, without "
                f"{without_them[-1]['total']:.2f} s",
                flush=True,
            )
        loops = statistics.median(run["phases"]["loops"] for run in without_them)
        totals_without = [run["total"] for run in without_them]
        results[app] = {
            "evals": with_them[0]["repeats"].get("evals", (1, 0.0))[0],
            "loops_seconds": loops,
            "loops_seconds_with": statistics.median(run["phases"]["loops"] for run in with_them),
            "loop_thread_seconds": statistics.median(
                run["phases"].get("eval summaries", 0.0) for run in with_them
            ),
            "background_seconds": statistics.median(
                run["phases"].get("background", 0.0) for run in with_them
            ),
            "cost_seconds": statistics.median(
                with_run["total"] - without_run["total"]
                for with_run, without_run in zip(with_them, without_them, strict=True)
            ),
            "spread_seconds": max(totals_without) - min(totals_without),
            "all_pairs": {"with": with_them, "without": without_them},
        }
    return results
