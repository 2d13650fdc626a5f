"""Runs an app as a multi-worker cluster on loopback: one process per worker, TF_CONFIG each."""

import json
import os
import pathlib
import socket
import subprocess
import sys

from tests.app_cli import REPO_ROOT


def free_ports(count: int) -> list[int]:
    """Ports the kernel says are free now (held open together, so they are distinct)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("localhost", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def tf_config(ports: list[int], index: int) -> str:
    return json.dumps(
        {
            "cluster": {"worker": [f"localhost:{port}" for port in ports]},
            "task": {"type": "worker", "index": index},
        }
    )


def start_workers(
    app: str, flags: list[str], temp_dir: pathlib.Path, num_workers: int = 2
) -> list[subprocess.Popen]:
    """Starts `python -m apps.<app> --strategy=multi_worker <flags>` once per worker.

    Each worker's TMPDIR is `temp_dir/worker-<i>`, so a test can check that the non-chief
    workers' temporary directories are gone afterwards.
    """
    ports = free_ports(num_workers)
    workers = []
    for index in range(num_workers):
        worker_temp = temp_dir / f"worker-{index}"
        worker_temp.mkdir(parents=True, exist_ok=True)
        environment = {
            **os.environ,
            "TF_CONFIG": tf_config(ports, index),
            "TMPDIR": str(worker_temp),
        }
        workers.append(
            subprocess.Popen(
                [sys.executable, "-m", f"apps.{app}", "--strategy=multi_worker", *flags],
                cwd=REPO_ROOT,
                env=environment,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
        )
    return workers


def finish(workers: list[subprocess.Popen], timeout: float = 240) -> list[tuple[int, str, str]]:
    """Waits for every worker (killing all if one overruns): [(exit code, stdout, stderr)]."""
    results = []
    try:
        for worker in workers:
            stdout, stderr = worker.communicate(timeout=timeout)
            results.append((worker.returncode, stdout, stderr))
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
                worker.communicate()
    return results


def final_metrics(stdout: str) -> dict[str, str]:
    """The `final:` line's metrics, as printed, but speed and time, which differ by worker."""
    line = [line for line in stdout.splitlines() if line.startswith("final: ")][-1]
    pairs = dict(item.split("=", 1) for item in line.removeprefix("final: ").split())
    return {
        name: value
        for name, value in pairs.items()
        if name not in ("examples_per_second", "wall_time_seconds")
    }
