"""`make bench` runs end to end on a tiny size and reports what it promises. No timing asserts."""

import json
import math
import subprocess
import sys

import numpy as np

from tests.app_cli import REPO_ROOT

METHODS = {
    "eager",
    "step_function",
    "step_function_record_if",
    "repo_loop",
    "repo_loop_no_summaries",
    "repo_loop_1000",
    "repo_loop_jit",
    "repo_loop_textbook_pipeline",
    "fit",
    "fit_spe32",
    "fit_spe32_jit",
    "fit_spe32_textbook_pipeline",
    "ceiling_one_batch",
    "ceiling_fed",
    "app_step_one_batch",
}


def test_bench_runs_on_a_tiny_size_and_writes_its_json(tmp_path):
    output = tmp_path / "bench.json"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "scripts.bench",
            "--steps=20",
            "--repeats=1",
            "--examples=512",
            "--workloads=regression_tape",
            f"--output={output}",
            "--end_to_end_pairs=1",
            "--end_to_end_steps=20",
            "--end_to_end_apps=regression_tape",
            "--eval_summaries_pairs=1",
            "--eval_summaries_apps=regression_tape",
            "--eval_summaries_steps=40",
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "| repo_loop |" in result.stdout and "vs fit, steps_per_execution=32" in result.stdout
    assert "ceiling: the bare step with no input pipeline runs at" in result.stdout
    # What bounds repo_loop: its share of the ceiling, and the two factors that explain it.
    assert "bounds: repo_loop reaches" in result.stdout
    assert "(ceiling_fed) runs at" in result.stdout and "(app_step_one_batch) at" in result.stdout
    # One round measures no spread: the output says its noise floor is assumed, not measured.
    assert "noise floor: ±10% (assumed (1 round))" in result.stdout
    report = json.loads(output.read_text())
    assert report["machine"]
    for name in ("regression_tape",):
        workload = report["workloads"][name]
        assert set(workload["methods"]) == METHODS
        for row in workload["methods"].values():
            assert row["examples_per_second"] > 0 and math.isfinite(row["ratio_to_fit_spe32"])
        assert workload["methods"]["fit_spe32"]["ratio_to_fit_spe32"] == 1.0
        # The repo's loops trace their step once, however many loops they run.
        assert set(workload["train_step_traces"].values()) == {1}
        assert workload["trace"]["first_call_seconds"] > 0
        assert 0 < workload["boundary_time_share"] < 1
        assert workload["matmul_gflops"] > 0 and workload["flops_per_example"] > 0

    # End to end: the app's own command against model.fit doing the same work, whole processes.
    assert "### End to end: each app's command against model.fit" in result.stdout
    end_to_end = report["end_to_end"]["regression_tape"]
    assert end_to_end["app_steps"] == 20 and end_to_end["fit_steps"] >= 20
    assert end_to_end["app_seconds"] > end_to_end["start_up_seconds"] > 0
    assert math.isfinite(end_to_end["app_speed_vs_fit"])
    # fit twice: on TensorFlow's threads, and on the threads the apps set.
    assert end_to_end["fit_app_threads_seconds"] > 0
    assert math.isfinite(end_to_end["app_speed_vs_fit_app_threads"])
    assert len(end_to_end["all_pairs"]["fit_app_threads"]) == len(end_to_end["all_pairs"]["fit"])
    # Where the app's time goes, parsed from its `time:` line: every phase a default run meets.
    phases = end_to_end["phase_seconds"]
    assert {"setup", "first step", "loops", "evals", "checkpoints", "other"} <= set(phases)
    assert phases["loops"] > 0 and end_to_end["run_seconds"] > 0
    assert 0 < end_to_end["boundary_work_share"] < 1
    assert end_to_end["eval_summaries_share_of_loops"] >= 0
    # The bound: the app with only its start-up and loops can only be faster than it is.
    assert end_to_end["best_case_speed_vs_fit"] > end_to_end["app_speed_vs_fit"]
    assert 0 < end_to_end["fit_start_up_seconds"] < end_to_end["fit_seconds"]
    assert "the bound on this ratio at this run length" in result.stdout
    assert "#### regression_tape: where the app's" in result.stdout
    assert "| start-up (Python, TensorFlow's import, flags, model build) |" in result.stdout
    assert "boundary work (evals + eval summaries + boundaries + checkpoints + close)" in (
        result.stdout
    )

    # The eval summaries' cost: the app with them against the same command without them.
    assert "### Eval summaries, at each app's defaults" in result.stdout
    costs = report["eval_summaries"]["regression_tape"]
    with_them, without_them = costs["all_pairs"]["with"], costs["all_pairs"]["without"]
    assert with_them[0]["phases"]["background"] > 0  # Their thread worked...
    assert without_them[0]["phases"]["background"] == 0  # ...and, dropped, did nothing.
    assert costs["loops_seconds"] > 0 and costs["evals"] == 1  # 40 steps: one eval, at the end.
    assert costs["loop_thread_seconds"] >= 0 and math.isfinite(costs["cost_seconds"])


def test_the_time_line_parses_into_its_total_and_phases():
    """The line common.loop.phase_times prints above `final:`: phase names with spaces, a negative
    `other`, the phases not met left out."""
    from common.loop import phase_times

    stdout = (
        "step 100 loss=0.5\n"
        "time: 4.15 s = setup 0.89 + first step 0.38 + loops 1.60 + eval summaries 0.68 (4x, "
        "first 0.38) + other -0.01\n"
        "final: loss=0.5 steps=100\n"
    )
    total, phases, repeats = phase_times.parse_line(stdout)
    assert total == 4.15
    assert repeats == {"eval summaries": (4, 0.38)}
    assert phases == {
        "setup": 0.89,
        "first step": 0.38,
        "loops": 1.60,
        "eval summaries": 0.68,
        "other": -0.01,
    }


def test_the_vaes_fit_baseline_learns_with_its_kl_term_as_an_added_loss():
    """The VAE's fit baseline is a different model from the app's (its KL term an add_loss): it
    must build and fit. (In-process and tiny: the whole bench on the VAE takes a minute.)"""
    from scripts.bench import fit_models

    model, loss = fit_models.vae_fit_model(window_length=8, num_channels=2, latent_dim=2)
    model.compile(optimizer="adam", loss=loss, steps_per_execution=2)
    windows = np.random.default_rng(0).normal(size=(16, 8, 2)).astype("float32")
    history = model.fit(windows, windows, batch_size=8, epochs=1, verbose=0)
    assert any(isinstance(layer, fit_models.KLDivergenceLoss) for layer in model.layers)
    assert math.isfinite(history.history["loss"][-1])
    model(windows)  # A forward pass collects the added losses: the KL term is among them.
    assert len(model.losses) == 1 and math.isfinite(float(model.losses[0]))


def test_eval_summaries_at_a_multiple_of_each_apps_default_length(monkeypatch):
    """--eval_summaries_length=10 runs each app ten times its own default steps, both halves of
    each pair alike; --eval_summaries_steps, when given, wins."""
    from apps.conditional_dropout.config import Config as DropoutConfig
    from apps.regression_tape.config import Config as RegressionConfig
    from scripts.bench import eval_summaries

    commands = []

    def fake_process(command):
        commands.append(command)
        return 1.0, "time: 1.00 s = setup 0.10 + loops 0.80 + other 0.10\n"

    monkeypatch.setattr(eval_summaries, "run_process", fake_process)
    eval_summaries.bench_eval_summaries(
        ["conditional_dropout", "regression_tape"], pairs=1, length=10
    )
    steps = [flag for command in commands for flag in command if flag.startswith("--num_steps")]
    dropout_steps, regression_steps = (
        10 * DropoutConfig().num_steps,
        10 * RegressionConfig().num_steps,
    )
    assert steps == 2 * [f"--num_steps={dropout_steps}"] + 2 * [f"--num_steps={regression_steps}"]
    commands.clear()
    eval_summaries.bench_eval_summaries(["conditional_dropout"], pairs=1, num_steps=40, length=10)
    assert all("--num_steps=40" in command for command in commands) and len(commands) == 2
