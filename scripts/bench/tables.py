"""The bench's printed tables: the loop rows with their noise floor and what bounds repo_loop, the
end-to-end rows with where an app's time goes, and the eval summaries' cost, each against the
issue's targets."""

import statistics

from scripts.bench.end_to_end import BOUNDARY_WORK
from scripts.bench.loop_rows import BASELINE

# The targets: the boundary work (BOUNDARY_WORK) under 5% of a default run's whole
# process, and the eval summaries under 2% of the loops' time.
BOUNDARY_WORK_TARGET = 0.05
EVAL_SUMMARIES_TARGET = 0.02
# The goal for repo_loop: this share of ceiling_one_batch's rate.
CEILING_TARGET = 0.8
# What single runs of one method move by on this shared 2-core machine (docs/speed.md): the noise
# floor assumed when one round gives no spread to measure.
SINGLE_ROUND_NOISE = 0.20


def noise_floor(workload: dict) -> float:
    """The median relative spread, (max - min) / median, of each method's rounds: differences in
    rate smaller than this are noise, not findings."""
    spreads = [
        (max(row["all_rounds"]) - min(row["all_rounds"])) / statistics.median(row["all_rounds"])
        for row in workload["methods"].values()
        if len(row["all_rounds"]) > 1
    ]
    return statistics.median(spreads) if spreads else SINGLE_ROUND_NOISE


def bounds_text(rates: dict[str, float], noise: float) -> str:
    """What bounds repo_loop against ceiling_one_batch: the cost of fresh batches (ceiling_fed)
    and of the app's step extras (app_step_one_batch), each a factor of the ceiling, and so
    whether the issue's CEILING_TARGET is within reach."""
    ceiling = rates["ceiling_one_batch"]
    of_ceiling = rates["repo_loop"] / ceiling
    fed = rates["ceiling_fed"] / ceiling
    app_step = rates["app_step_one_batch"] / ceiling
    # If the two costs are independent, a loop that pays both reaches about their product; what
    # repo_loop falls short of that is its own: boundaries, the distributed iterator.
    both = fed * app_step
    rest = (
        " (over 100%: the two costs overlap, or the noise)"
        if of_ceiling > both
        else ", the rest lost to its loop boundaries and its distributed iterator"
    )
    # A cost whose factor alone is under the target puts the target out of reach whatever the
    # loop does; two that are each above it can still be under it together.
    alone = [
        cost
        for cost, factor in (("fresh batches", fed), ("the step's extras", app_step))
        if factor < CEILING_TARGET
    ]
    if of_ceiling >= CEILING_TARGET:
        verdict = f"repo_loop reaches the target ({CEILING_TARGET:.0%} of the ceiling)"
    elif alone:
        verdict = (
            f"{CEILING_TARGET:.0%} of the ceiling is out of reach for this step and pipeline: "
            f"{' and '.join(alone)} {'each ' if len(alone) > 1 else ''}alone bring the step "
            "below it"
        )
    elif both < CEILING_TARGET:
        verdict = (
            f"{CEILING_TARGET:.0%} of the ceiling is out of reach for this step and pipeline: "
            "each cost alone leaves room, both together do not"
        )
    else:
        verdict = (
            f"{CEILING_TARGET:.0%} of the ceiling is within the bounds: the gap is in the loop "
            "itself"
        )
    return (
        f"bounds: repo_loop reaches {of_ceiling:.0%} of ceiling_one_batch (the issue's target: "
        f"{CEILING_TARGET:.0%}). Fresh batches: the bare step fed by the apps' pipeline "
        f"(ceiling_fed) runs at {fed:.0%} of the ceiling; the step's extras: the app's own step "
        f"(metrics, NaN check, global step, strategy.run) on one batch (app_step_one_batch) at "
        f"{app_step:.0%}. Both together allow about {both:.0%} ({fed:.2f} x {app_step:.2f}); "
        f"repo_loop reaches {of_ceiling / both:.0%} of that{rest}. So {verdict}. (Each factor "
        f"is a ratio of two rates: within {noise:.0%} of 1, or of each other, it is noise.)"
    )


def print_table(results: dict) -> None:
    """The loop rows of every workload, then their noise floor, the loop boundary's and the
    graph trace's costs, the ceiling and what bounds repo_loop."""
    threads = results.get("compute_threads") or "TensorFlow's default"
    print(f"\nmachine: {results['machine']}; {results['date']}; intra-op threads: {threads}")
    for name, workload in results["workloads"].items():
        noise = noise_floor(workload)
        print(f"\n### {name} (batch {workload['batch_size']})\n")
        print("| method | examples/s | vs fit, steps_per_execution=32 | rounds' spread |")
        print("|---|---|---|---|")
        for method, row in workload["methods"].items():
            rounds = row["all_rounds"]
            spread = (max(rounds) - min(rounds)) / statistics.median(rounds)
            print(
                f"| {method} | {row['examples_per_second']:,.0f} | "
                f"{row['ratio_to_fit_spe32']:.2f}x | "
                f"{f'±{spread / 2:.0%}' if len(rounds) > 1 else '1 round'} |"
            )
        measured = "measured" if noise != SINGLE_ROUND_NOISE else "assumed (1 round)"
        print(
            f"\nnoise floor: ±{noise / 2:.0%} ({measured}); rates closer than {noise:.0%} to "
            "each other are not findings (more --repeats narrow it)."
        )
        trace = workload["trace"]
        extra = trace["graph_trace_extra_seconds"]
        trace_noise = trace["first_call_spread_seconds"]
        trace_text = (
            f"the graph trace adds {extra:.3f} s once"
            if extra > trace_noise
            else f"the graph trace's one-time cost is below the noise (first calls vary by "
            f"{trace_noise:.3f} s)"
        )
        print(
            f"loop boundaries (the NaN check, reading and resetting the app's train metrics, "
            f"writing its train scalars) take {workload['boundary_time_share']:.1%} of "
            f"repo_loop's time (measured in the loop; the throughput difference to "
            f"repo_loop_no_summaries, {workload['summaries_cost_fraction']:+.1%}, is within "
            f"the noise floor unless larger than it); {trace_text} (first call "
            f"{trace['first_call_seconds']:.3f} s); train step traced "
            f"{workload['train_step_traces']['repo_loop']} time(s); repo_loop runs at "
            f"{workload['repo_loop_gflops']:.1f} GFLOP/s, "
            f"{workload['repo_loop_fraction_of_matmul']:.0%} of a {workload['matmul_gflops']:.1f} "
            "GFLOP/s float32 matmul."
        )
        rates = {name: row["examples_per_second"] for name, row in workload["methods"].items()}
        of_ceiling = rates["repo_loop"] / rates["ceiling_one_batch"]
        print(
            f"ceiling: the bare step with no input pipeline runs at "
            f"{rates['ceiling_one_batch'] / rates[BASELINE]:.2f}x fit_spe32, an upper bound for "
            f"any loop of this model here; repo_loop reaches {of_ceiling:.0%} of it"
            f"{' (over 100%: equal within the noise floor)' if of_ceiling > 1 else ''}, and runs "
            f"at {rates['repo_loop'] / rates['fit']:.2f}x plain fit."
        )
        print(bounds_text(rates, noise))


def print_end_to_end(results: dict, pairs: int, num_steps: int | None = None) -> None:
    """The end-to-end table, then, per app, where its process's time goes (from its `time:`
    line) and the boundary work against the issue's targets."""
    print(
        f"\n### End to end: each app's command against model.fit doing the same work (whole "
        f"processes, alternated, median of {pairs} pair(s))\n"
    )
    print(
        "| app | app (s) | fit (s) | app speed vs fit, per step | fit, app's threads (s) | app "
        "speed vs it | steps app / fit | start-up | loops | rest of the run (setup, trace, "
        "evals, summaries, checkpoints) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for app, row in results.items():
        loops = row["phase_seconds"]["loops"]
        print(
            f"| {app} | {row['app_seconds']:.1f} | {row['fit_seconds']:.1f} | "
            f"{row['app_speed_vs_fit']:.2f}x | {row['fit_app_threads_seconds']:.1f} | "
            f"{row['app_speed_vs_fit_app_threads']:.2f}x | "
            f"{row['app_steps']:.0f} / {row['fit_steps']:.0f} | "
            f"{row['start_up_seconds']:.1f} s | {loops:.1f} s | "
            f"{row['run_seconds'] - loops:.1f} s |"
        )
    # The 5% is of a default run: a shorter one weighs its one-time phases more.
    length = f"--end_to_end_steps {num_steps}, not the default" if num_steps else "a default run"
    for app, row in results.items():
        whole = row["app_seconds"]
        print(
            f"\n#### {app}: where the app's {whole:.1f} s go (medians over {pairs} pair(s); "
            f"{length})\n"
        )
        print("| part | seconds | share of the process |")
        print("|---|---|---|")
        parts = {
            "start-up (Python, TensorFlow's import, flags, model build)": row["start_up_seconds"],
            **row["phase_seconds"],
        }
        for name, seconds in parts.items():
            print(f"| {name} | {seconds:.2f} | {seconds / whole:.0%} |")
        print(
            f"\nstart-up: app {row['start_up_seconds']:.1f} s, fit "
            f"{row['fit_start_up_seconds']:.1f} s (TensorFlow's import is most of both). With "
            f"nothing but its start-up and its loops (every trace, eval, summary and checkpoint "
            f"free) the app would run at {row['best_case_speed_vs_fit']:.2f}x fit per step: the "
            "bound on this ratio at this run length."
        )
        print(
            f"boundary work ({' + '.join(BOUNDARY_WORK)}): {row['boundary_work_share']:.1%} of "
            f"the process (the issue's target: under {BOUNDARY_WORK_TARGET:.0%} of a default "
            f"run); eval summaries on the loop's thread: "
            f"{row['eval_summaries_share_of_loops']:.1%} of the loops' time (their whole cost, "
            "their thread's included: the eval summaries section)."
        )


def print_eval_summaries(results: dict, pairs: int, length: int = 1) -> None:
    """The eval summaries' cost per app, against the issue's 2% of the loops' time."""
    runs = "at each app's defaults" if length == 1 else f"{length}x each app's default length"
    print(
        f"\n### Eval summaries, {runs}: their cost against the loops' time (median "
        f"of {pairs} pair(s) of runs with and without them; target: under "
        f"{EVAL_SUMMARIES_TARGET:.0%})\n"
    )
    print(
        "| app | evals | loops (s) | on the loop's thread | their own thread's CPU | run with them "
        "less without | runs' spread without them |"
    )
    print("|---|---|---|---|---|---|---|")
    for app, row in results.items():
        loops = row["loops_seconds"]

        def share(seconds: float, loops: float = loops) -> str:
            return f"{seconds:.2f} s ({seconds / loops:.1%})"

        print(
            f"| {app} | {row['evals']} | {loops:.2f} | {share(row['loop_thread_seconds'])} | "
            f"{share(row['background_seconds'])} | {share(row['cost_seconds'])} | "
            f"{share(row['spread_seconds'])} |"
        )
