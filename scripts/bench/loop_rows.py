"""The loop rows of one workload: every method of `methods` timed in interleaved rounds, their
medians against fit_spe32's, the graph trace's one-time cost and the machine's matmul ceiling."""

import statistics
import tempfile
import time
from collections.abc import Callable

import tensorflow as tf

from common.summaries import graphs
from scripts.bench.methods import (
    batches,
    bench_app_step_one_batch,
    bench_ceiling,
    bench_ceiling_fed,
    bench_eager,
    bench_fit,
    bench_repo_loop,
    bench_step_function,
    fresh_state,
    step_body,
)
from scripts.bench.workloads import Workload

# The method every ratio is to.
BASELINE = "fit_spe32"


def bench_trace_cost(workload: Workload) -> dict[str, float]:
    """Wall time of a train step's first call (tracing included), with and without the graph
    trace around it, each on a fresh model; the difference is the trace's one-time cost."""
    results = {}
    for with_trace in (False, True, False, True):
        model, optimizer = fresh_state(workload)
        step = tf.function(step_body(workload, model, optimizer))
        batch = next(iter(batches(workload)))
        start = time.perf_counter()
        if with_trace:
            writer = tf.summary.create_file_writer(tempfile.mkdtemp())
            float(graphs.trace_step_graph(step, batch, writer))
            writer.close()
        else:
            float(step(*batch))
        results.setdefault(with_trace, []).append(time.perf_counter() - start)
        assert step.experimental_get_tracing_count() == 1
    first_call = min(results[False])
    traced_first_call = min(results[True])
    return {
        "first_call_seconds": first_call,
        "first_call_with_graph_trace_seconds": traced_first_call,
        "graph_trace_extra_seconds": traced_first_call - first_call,
        # How much two first calls of the same kind differ: the trace's cost is measurable only
        # above this.
        "first_call_spread_seconds": max(
            max(results[False]) - first_call, max(results[True]) - traced_first_call
        ),
    }


def matmul_gflops(size: int = 2048, repeats: int = 10) -> float:
    """Float32 matmul throughput on this machine: the ceiling the MLP's arithmetic is held to."""
    a = tf.random.normal((size, size))
    b = tf.random.normal((size, size))

    @tf.function
    def multiply(count):
        total = tf.zeros((size, size))
        for _ in tf.range(count):
            total += tf.matmul(a, b)
        return total

    multiply(tf.constant(1)).numpy()
    best = float("inf")
    for _ in range(3):
        start = time.perf_counter()
        multiply(tf.constant(repeats)).numpy()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 * repeats / best / 1e9


def bench_workload(workload: Workload, steps: int, repeats: int) -> dict:
    """Every method on `workload`, interleaved round-robin over `repeats` rounds: their rates
    (medians, every round kept, each against fit_spe32's), the loop boundary's share, the graph
    trace's one-time cost and the machine's matmul ceiling, as the JSON holds them."""
    steps = max(1, round(steps * workload.steps_scale))
    methods: dict[str, Callable[[], tuple]] = {
        "eager": lambda: bench_eager(workload, steps),
        "step_function": lambda: bench_step_function(workload, steps),
        "step_function_record_if": lambda: bench_step_function(workload, steps, record_if=True),
        "repo_loop": lambda: bench_repo_loop(workload, steps),
        "repo_loop_no_summaries": lambda: bench_repo_loop(workload, steps, summaries=False),
        "repo_loop_1000": lambda: bench_repo_loop(workload, steps, steps_per_loop=1000),
        "repo_loop_jit": lambda: bench_repo_loop(workload, steps, jit_compile=True),
        "repo_loop_textbook_pipeline": lambda: bench_repo_loop(workload, steps, textbook=True),
        "fit": lambda: bench_fit(workload, steps),
        "fit_spe32": lambda: bench_fit(workload, steps, steps_per_execution=32),
        "fit_spe32_jit": lambda: bench_fit(workload, steps, steps_per_execution=32, jit=True),
        "fit_spe32_textbook_pipeline": lambda: bench_fit(
            workload, steps, steps_per_execution=32, textbook=True
        ),
        "ceiling_one_batch": lambda: bench_ceiling(workload, steps),
        "ceiling_fed": lambda: bench_ceiling_fed(workload, steps),
        "app_step_one_batch": lambda: bench_app_step_one_batch(workload, steps),
    }
    rates: dict[str, list[float]] = {name: [] for name in methods}
    traces: dict[str, int] = {}
    summary_shares: list[float] = []
    for round_number in range(repeats):
        for name, method in methods.items():
            seconds, measured_steps, *extra = method()
            rates[name].append(measured_steps * workload.batch_size / seconds)
            if extra:
                traces[name] = extra[0]
            if name == "repo_loop":
                summary_shares.append(extra[1])
            print(
                f"  round {round_number + 1}/{repeats} {name:<24} "
                f"{rates[name][-1]:>12,.0f} examples/s",
                flush=True,
            )
    median = {name: statistics.median(values) for name, values in rates.items()}
    ceiling = matmul_gflops()
    return {
        "batch_size": workload.batch_size,
        "timed_steps": steps,
        "flops_per_example": workload.flops_per_example,
        "methods": {
            name: {
                "examples_per_second": median[name],
                "all_rounds": rates[name],
                "ratio_to_fit_spe32": median[name] / median[BASELINE],
            }
            for name in methods
        },
        # Two estimates: the share of repo_loop's time spent at loop boundaries reading metrics
        # and writing summaries (direct), and the throughput difference to
        # repo_loop_no_summaries (two separate timings: noisier).
        "boundary_time_share": statistics.median(summary_shares),
        "summaries_cost_fraction": 1 - median["repo_loop"] / median["repo_loop_no_summaries"],
        "train_step_traces": traces,
        "trace": bench_trace_cost(workload),
        "matmul_gflops": ceiling,
        "repo_loop_gflops": median["repo_loop"] * workload.flops_per_example / 1e9,
        "repo_loop_fraction_of_matmul": median["repo_loop"]
        * workload.flops_per_example
        / 1e9
        / ceiling,
    }
