"""The run's time split: phases add up, unknown phases are refused, the line reads as promised."""

import time

import pytest

from common.loop import phase_times


def test_phases_sum_what_ran_inside_them_and_the_line_adds_up():
    times = phase_times.PhaseTimes()
    for _ in range(2):
        with times.phase("loops"):
            time.sleep(0.02)
    times.add("checkpoints", 0.5)
    assert times.seconds["loops"] == pytest.approx(0.04, abs=0.02)
    metrics = times.as_metrics()
    assert set(metrics) == {f"time/{name.replace(' ', '_')}" for name in phase_times.PHASES}
    assert metrics["time/first_step"] == 0.0 and metrics["time/checkpoints"] == 0.5
    line = times.line()
    assert line.startswith("time: ") and " loops 0.0" in line and "checkpoints 0.50" in line
    assert "evals" not in line  # Phases not met are left out.
    total, seconds, _ = phase_times.parse_line(line)
    # `other` is the total minus the phases: here negative, as 0.5 s were added, not spent.
    assert sum(seconds.values()) == pytest.approx(total, abs=0.02)


def test_an_unknown_phase_is_refused():
    times = phase_times.PhaseTimes()
    with pytest.raises(ValueError, match="unknown phase 'eval'"), times.phase("eval"):
        pass
    with pytest.raises(ValueError, match="unknown phase"):
        times.add("loop", 1.0)


def test_repeated_phases_give_their_count_and_first_time():
    """The first eval traces its functions: the line tells it apart from the later ones."""
    times = phase_times.PhaseTimes()
    for seconds in (0.3, 0.1, 0.1):
        times.add("evals", seconds)
    times.add("loops", 1.0)  # Entered once: no count.
    times.add("checkpoints", 0.1)
    times.add("checkpoints", 0.1)  # Not a phase whose first time traces: no count.
    line = times.line()
    assert "evals 0.50 (3x, first 0.30)" in line
    assert "loops 1.00 +" in line and "checkpoints 0.20 +" in line


def test_the_time_line_parser_reads_what_phase_times_prints():
    times = phase_times.PhaseTimes()
    for name in phase_times.PHASES:
        times.add(name, 0.5)
    times.add("evals", 0.25)
    total, phases, repeats = phase_times.parse_line(times.line())
    assert set(phases) == {*phase_times.PHASES, "other"} and total >= 0
    assert all(phases[name] == 0.5 for name in phase_times.PHASES if name != "evals")
    assert phases["evals"] == 0.75 and repeats == {"evals": (2, 0.5)}


def test_a_missing_time_line_is_an_error_not_a_silent_zero():
    with pytest.raises(ValueError, match="no `time:"):
        phase_times.parse_line("final: loss=0.5\n")


def test_a_phase_inside_another_counts_to_the_inner_one_alone():
    """A wait for the summaries' thread inside another phase is the summaries' time."""
    times = phase_times.PhaseTimes()
    times.add("eval summaries", 0.01)
    with times.phase("checkpoints"):
        time.sleep(0.05)
        with times.phase("eval summaries", count=False):
            time.sleep(0.1)
    assert times.seconds["checkpoints"] == pytest.approx(0.05, abs=0.03)
    assert times.seconds["eval summaries"] == pytest.approx(0.11, abs=0.03)
    assert times.counts["eval summaries"] == 1  # More time for its entry, not another entry.
    assert times.first_seconds["eval summaries"] == 0.01


def test_the_background_seconds_are_printed_apart_and_read_back():
    times = phase_times.PhaseTimes()
    times.add("loops", 1.0)
    assert "background" not in times.line()  # A run without the thread says nothing of it.
    times.background_seconds = 0.004
    line = times.line()
    assert line.endswith("; in the background: eval summaries 0.004")
    total, phases, _ = phase_times.parse_line(line)
    assert phases["background"] == 0.004 and phases["loops"] == 1.0
    assert total == pytest.approx(phases["loops"] + phases["other"], abs=0.01)  # Not in the total.


def test_the_printed_figures_add_up_to_the_printed_total():
    """Each phase is printed to 0.01 s: `other` takes up their rounding, or eight phases of
    0.004 s would print as 0.00 each and leave 0.03 s nowhere."""
    times = phase_times.PhaseTimes()
    for name in phase_times.PHASES:
        times.add(name, 0.004)
    total, seconds, _ = phase_times.parse_line(times.line())
    assert sum(seconds.values()) == pytest.approx(total, abs=1e-9)
