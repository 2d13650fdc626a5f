"""The console side of a run: one progress line per loop boundary."""


def format_metrics(metrics: dict[str, float]) -> str:
    """`{'train/loss': 0.1234}` -> `train/loss=0.1234`, in the order given."""
    return "  ".join(
        f"{name}={value:.4g}" if isinstance(value, float) else f"{name}={value}"
        for name, value in metrics.items()
    )


def print_progress(step: int, num_steps: int, metrics: dict[str, float]) -> None:
    """Prints `step   500/2000 ( 25%)  train/loss=...` and flushes, so logs stream under pipes."""
    width = len(str(num_steps))
    percent = 100 * step // max(num_steps, 1)
    print(
        f"step {step:>{width}}/{num_steps} ({percent:3d}%)  {format_metrics(metrics)}", flush=True
    )
