"""The end-to-end rows: each app's own command, as a user runs it, against
`scripts/fit_baseline.py` doing the same work with `model.fit`, whole processes alternated; and
where the app's time goes, from the `time:` line it prints (common.loop.phase_times)."""

import statistics
import sys
import tempfile

from common.loop import phase_times
from scripts import fit_baseline
from scripts.bench.processes import final_values, run_process

# The work a run does around its loops: what the target for it (under 5% of a default
# run's whole process) weighs.
BOUNDARY_WORK = ("evals", "eval summaries", "boundaries", "checkpoints", "close")


def bench_end_to_end(apps: list[str], pairs: int, num_steps: int | None = None) -> dict:
    """Each app's own command, as a user runs it, against `scripts/fit_baseline.py` doing the
    same work with `model.fit`: whole processes (TensorFlow's import included), alternated, who
    goes first switching every pair; medians of `pairs` pairs. Also where the app's time goes."""
    steps_flag = [f"--num_steps={num_steps}"] if num_steps else []
    results = {}
    for app in apps:
        runs: dict[str, list[dict]] = {"app": [], "fit": [], "fit_app_threads": []}
        for pair in range(pairs):
            with tempfile.TemporaryDirectory() as temporary:
                commands = _commands(app, temporary, steps_flag)
                order = ["app", "fit", "fit_app_threads"]
                for name in order[pair % 3 :] + order[: pair % 3]:  # Each goes first in turn.
                    seconds, stdout = run_process(commands[name])
                    if name.startswith("fit"):
                        runs[name].append({"seconds": seconds, **final_values(stdout, "fit:")})
                    else:
                        runs[name].append(_app_run(seconds, stdout))
            print(
                f"  pair {pair + 1}/{pairs} {app}: app {runs['app'][-1]['seconds']:.1f} s, "
                f"fit {runs['fit'][-1]['seconds']:.1f} s, fit with the app's threads "
                f"{runs['fit_app_threads'][-1]['seconds']:.1f} s",
                flush=True,
            )
        results[app] = _row(runs["app"], runs["fit"], runs["fit_app_threads"])
    return results


def _commands(app: str, temporary: str, steps_flag: list[str]) -> dict[str, list[str]]:
    """The three commands of a pair: the app's, fit's, and fit's on the app's threads."""
    return {
        "app": [
            sys.executable,
            "-m",
            f"apps.{app}",
            *fit_baseline.APP_FLAGS[app],
            f"--logdir={temporary}/app",
            *steps_flag,
        ],
        "fit": [
            sys.executable,
            "scripts/fit_baseline.py",
            f"--app={app}",
            f"--logdir={temporary}/fit",
            *steps_flag,
        ],
        # fit with the threads the app sets itself (common.distribution.
        # set_compute_threads): the same machine settings, only the loops differ.
        "fit_app_threads": [
            sys.executable,
            "scripts/fit_baseline.py",
            f"--app={app}",
            f"--logdir={temporary}/fit_app_threads",
            "--app_threads",
            *steps_flag,
        ],
    }


def _app_run(seconds: float, stdout: str) -> dict:
    """One run of the app: its wall time, its `final:` values and its `time:` line's phases."""
    total, phases, repeats = phase_times.parse_line(stdout)
    return {
        "seconds": seconds,
        **final_values(stdout, "final:"),
        # Before the run's clock starts: Python, TensorFlow's import, the flags, the model build.
        "start_up_seconds": seconds - total,
        "run_seconds": total,
        "phase_seconds": phases,
        "phase_repeats": repeats,
    }


def _row(app_runs: list[dict], fit_runs: list[dict], fit_threads_runs: list[dict]) -> dict:
    """An app's end-to-end row: medians over the pairs, the speed ratios and where its time
    goes."""
    app_seconds = statistics.median(run["seconds"] for run in app_runs)
    fit_seconds = statistics.median(run["seconds"] for run in fit_runs)
    fit_threads_seconds = statistics.median(run["seconds"] for run in fit_threads_runs)
    app_steps, fit_steps = app_runs[0]["steps"], fit_runs[0]["steps"]
    # Where the app's time goes, from its own `time:` line: medians over the pairs, of the
    # phases and of the shares (a median of shares, not a share of medians, which come from
    # different runs).
    phase_names = [*phase_times.PHASES, "other"]
    phases = {
        name: statistics.median(run["phase_seconds"].get(name, 0.0) for run in app_runs)
        for name in phase_names
        if any(name in run["phase_seconds"] for run in app_runs)
    }
    start_up_seconds = statistics.median(run["start_up_seconds"] for run in app_runs)
    return {
        "app_seconds": app_seconds,
        "fit_seconds": fit_seconds,
        "app_steps": app_steps,
        "fit_steps": fit_steps,
        # Speed at equal work: fit's time per step over the app's.
        "app_speed_vs_fit": (fit_seconds / fit_steps) / (app_seconds / app_steps),
        "fit_app_threads_seconds": fit_threads_seconds,
        "app_speed_vs_fit_app_threads": (fit_threads_seconds / fit_steps)
        / (app_seconds / app_steps),
        "start_up_seconds": start_up_seconds,
        "run_seconds": statistics.median(run["run_seconds"] for run in app_runs),
        "phase_seconds": phases,
        "boundary_work_share": statistics.median(
            sum(run["phase_seconds"].get(name, 0.0) for name in BOUNDARY_WORK) / run["seconds"]
            for run in app_runs
        ),
        "eval_summaries_share_of_loops": statistics.median(
            run["phase_seconds"].get("eval summaries", 0.0) / run["phase_seconds"]["loops"]
            for run in app_runs
        ),
        # fit's process outside model.fit: the same imports, its model and data.
        "fit_start_up_seconds": statistics.median(
            run["seconds"] - run["wall_time_seconds"] for run in fit_runs
        ),
        # What bounds the ratio: the app with nothing but its start-up and its loops, every
        # one-time trace, eval, summary and checkpoint free, against fit as measured.
        "best_case_speed_vs_fit": (fit_seconds / fit_steps)
        / ((start_up_seconds + phases["loops"]) / app_steps),
        "all_pairs": {"app": app_runs, "fit": fit_runs, "fit_app_threads": fit_threads_runs},
    }
