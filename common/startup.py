"""Importing TensorFlow without its start-up block on the console.

On a CPU-only machine, TensorFlow 2.21 writes to file descriptor 2, from C++, before any Python code
of it could filter anything:

    while `import tensorflow` runs (the first three lines come twice):
        WARNING: All log messages before absl::InitializeLog() is called are written to STDERR
        I0000 ... port.cc:153] oneDNN custom operations are on. ...
        I0000 ... cudart_stub.cc:31] Could not find cuda drivers on your machine, GPU will not ...
        I0000 ... cpu_feature_guard.cc:227] This TensorFlow binary is optimized to use ...
        To enable the following instructions: AVX2 AVX512F ..., in other operations, rebuild ...
    at the first `tf.config.list_physical_devices()` (or whatever first needs the device list):
        E0000 ... cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error: ...

`TF_CPP_MIN_LOG_LEVEL` does not help: 1 and 2 drop only the `cpu_feature_guard` lines, 3 the
`E0000` line too, and the lines logged before absl's log is initialised show at any level. So
`import_tensorflow` runs the import and the device listing with fd 2 pointed at a temporary file,
and puts fd 2 back after. Nothing is hidden when it matters: if either raises, the captured text
goes to the real stderr before the exception does.
"""

import contextlib
import os
import sys
import tempfile
import types
from collections.abc import Iterator


def import_tensorflow(show_startup_logs: bool) -> types.ModuleType:
    """Imports TensorFlow and lists its physical devices, with their start-up logs captured.

    The physical devices only: logical devices are not initialised, so the CPU can still be split
    afterwards (`common.distribution.split_cpu`). Call it before anything else imports TensorFlow
    (Keras included): later imports are then silent, as TensorFlow is loaded already.

    Args:
        show_startup_logs: let TensorFlow's start-up lines through to stderr, and its C++ INFO logs
            for the rest of the run (no default `TF_CPP_MIN_LOG_LEVEL`). When false, the start-up
            lines are discarded and `TF_CPP_MIN_LOG_LEVEL` defaults to 1 (no C++ INFO lines, such
            as tf.data's "Memory patch applied", while the run goes on).

    Returns:
        The `tensorflow` module.

    Raises:
        Whatever the import or the device listing raises (an ImportError for a broken install),
        after the captured start-up text is written to stderr.
    """
    if not show_startup_logs:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")
    with contextlib.nullcontext() if show_startup_logs else _stderr_hidden_unless_raising():
        import tensorflow as tf

        tf.config.list_physical_devices()
    return tf


@contextlib.contextmanager
def _stderr_hidden_unless_raising() -> Iterator[None]:
    """Points fd 2 at a temporary file inside the block; if the block raises, replays the file."""
    sys.stderr.flush()  # Python's buffered stderr text belongs on the real stderr, before.
    try:
        real_stderr = os.dup(2)
    except OSError:  # No fd 2 at all (a daemon): nothing to hide.
        yield
        return
    try:
        with tempfile.TemporaryFile() as captured:
            os.dup2(captured.fileno(), 2)
            try:
                yield
            except BaseException:
                _point_stderr_at(real_stderr)
                captured.seek(0)
                sys.stderr.write(captured.read().decode(errors="replace"))
                sys.stderr.flush()
                raise
            finally:
                _point_stderr_at(real_stderr)
    finally:
        os.close(real_stderr)


def _point_stderr_at(file_descriptor: int) -> None:
    # Flushed first: Python warnings written inside the block belong with the captured text.
    sys.stderr.flush()
    os.dup2(file_descriptor, 2)
