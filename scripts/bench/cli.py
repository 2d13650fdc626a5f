"""The bench's command line: the sections run in turn, the JSON written, then the tables printed.

`python -m scripts.bench --help` lists the flags; the package's docstring says what each section
measures.
"""

import argparse
import datetime
import json
import pathlib

from absl import logging

import scripts.bench
from common import distribution
from scripts import fit_baseline
from scripts.bench import tables
from scripts.bench.end_to_end import bench_end_to_end
from scripts.bench.eval_summaries import SUMMARY_APPS, bench_eval_summaries
from scripts.bench.loop_rows import bench_workload
from scripts.bench.workloads import WORKLOADS
from scripts.measure_results import machine_name


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """The bench's flags (`argv`: the command line's, by default)."""
    parser = argparse.ArgumentParser(
        # As `python scripts/bench.py` named itself; under -m, argparse would say __main__.py.
        prog="python -m scripts.bench",
        description=scripts.bench.__doc__.splitlines()[0],
    )
    parser.add_argument("--steps", type=int, default=2000, help="timed steps per measurement")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved rounds")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--examples", type=int, default=60000, help="synthetic examples")
    parser.add_argument("--output", type=pathlib.Path, default=pathlib.Path("results/bench.json"))
    parser.add_argument(
        "--end_to_end_pairs", type=int, default=3, help="app/fit process pairs (0: skip)"
    )
    parser.add_argument(
        "--end_to_end_steps", type=int, default=None, help="steps per process (default: app's)"
    )
    parser.add_argument(
        "--end_to_end_apps", default=None, help="apps for the end-to-end section (default: all)"
    )
    parser.add_argument(
        "--eval_summaries_pairs",
        type=int,
        default=3,
        help="pairs of runs with and without the eval summaries, per app (0: skip)",
    )
    parser.add_argument("--eval_summaries_apps", default=",".join(SUMMARY_APPS))
    parser.add_argument(
        "--eval_summaries_steps", type=int, default=None, help="steps per run (default: app's)"
    )
    parser.add_argument(
        "--eval_summaries_length",
        type=int,
        default=1,
        help="runs this many times each app's default length, cadences unchanged",
    )
    return parser.parse_args(argv)


def measure(args: argparse.Namespace, compute_threads: int) -> dict:
    """Every section the flags ask for, in turn: the loop rows of each workload, end to end, the
    eval summaries. The results, as the JSON holds them."""
    results = {
        "machine": machine_name(),
        "compute_threads": compute_threads,
        "date": datetime.date.today().isoformat(),
        "steps": args.steps,
        "repeats": args.repeats,
        "workloads": {},
    }
    for name in filter(None, args.workloads.split(",")):  # --workloads= : end to end only.
        print(f"{name}:", flush=True)
        workload = WORKLOADS[name](args.examples)
        results["workloads"][name] = bench_workload(workload, args.steps, args.repeats)
    end_to_end_apps = (args.end_to_end_apps or ",".join(fit_baseline.APPS)).split(",")
    if args.end_to_end_pairs and end_to_end_apps:
        print("end to end:", flush=True)
        results["end_to_end"] = bench_end_to_end(
            end_to_end_apps, args.end_to_end_pairs, args.end_to_end_steps
        )
    summary_apps = list(filter(None, args.eval_summaries_apps.split(",")))
    if args.eval_summaries_pairs and summary_apps:
        print("eval summaries:", flush=True)
        results["eval_summaries"] = bench_eval_summaries(
            summary_apps,
            args.eval_summaries_pairs,
            args.eval_summaries_steps,
            args.eval_summaries_length,
        )
    return results


def print_tables(results: dict, args: argparse.Namespace) -> None:
    """The tables of every section measured."""
    tables.print_table(results)
    if "end_to_end" in results:
        tables.print_end_to_end(results["end_to_end"], args.end_to_end_pairs, args.end_to_end_steps)
    if "eval_summaries" in results:
        tables.print_eval_summaries(
            results["eval_summaries"], args.eval_summaries_pairs, args.eval_summaries_length
        )


def main(argv: list[str] | None = None) -> None:
    """Runs the bench: measures, writes `--output`'s JSON, prints the tables."""
    args = parse_args(argv)
    logging.set_verbosity(logging.ERROR)  # Keras/TF retracing and deprecation chatter.
    # Every method below runs on the threads the apps run on (fit's rows too): the table compares
    # loops, not thread settings. The end-to-end section runs fit both ways.
    compute_threads = distribution.set_compute_threads()
    results = measure(args, compute_threads)
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print_tables(results, args)
    print(f"\nwrote {args.output}")
