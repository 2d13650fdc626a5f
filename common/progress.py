"""The console side of a run: one progress line per loop boundary."""


def format_number(value: float) -> str:
    """4 significant digits for small numbers, whole numbers from 1000 up (no `9.07e+04`)."""
    if isinstance(value, int) or abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.4g}"


def format_metrics(metrics: dict[str, float]) -> str:
    """`{'train/loss': 0.1234, 'steps': 2000}` -> `train/loss=0.1234  steps=2000`, in order."""
    return "  ".join(f"{name}={format_number(value)}" for name, value in metrics.items())


def print_progress(step: int, num_steps: int, metrics: dict[str, float]) -> None:
    """Prints `step   500/2000 ( 25%)  train/loss=...` and flushes, so logs stream under pipes."""
    width = len(str(num_steps))
    percent = 100 * step // max(num_steps, 1)
    print(
        f"step {step:>{width}}/{num_steps} ({percent:3d}%)  {format_metrics(metrics)}", flush=True
    )
