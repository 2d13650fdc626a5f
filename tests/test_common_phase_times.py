"""The run's time split: phases add up, unknown phases are refused, the line reads as promised."""

import time

import pytest

from common import phase_times


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
    total, parts = line.removeprefix("time: ").split(" s = ")
    # `other` is the total minus the phases: here negative, as 0.5 s were added, not spent.
    values = [float(part.rsplit(" ", 1)[1]) for part in parts.split(" + ")]
    assert sum(values) == pytest.approx(float(total), abs=0.02)


def test_an_unknown_phase_is_refused():
    times = phase_times.PhaseTimes()
    with pytest.raises(ValueError, match="unknown phase 'eval'"), times.phase("eval"):
        pass
    with pytest.raises(ValueError, match="unknown phase"):
        times.add("loop", 1.0)
