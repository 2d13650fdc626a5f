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

Some lines come later, mid-run, and are as harmless; `hide_known_harmless_lines` drops exactly
those (`KNOWN_HARMLESS_LINES`, each with why it is harmless) for the rest of the process, and lets
every other byte through: TensorFlow's C++ writes them to fd 2, so fd 2 becomes a pipe, read by a
forked relay process that copies each line to the real stderr unless it is one of them. A
process, not a thread: a crash (an abort from a failed C++ check) kills every thread of the
process, and with them the lines just before it; the relay outlives it, reads the pipe to its end
and exits. At a normal exit the run waits for the relay, so the last line (an `error:`) is on the
terminal before the shell's prompt. (`ps` shows the relay as a second process of the same
command; it ignores SIGINT and SIGTERM, which are the run's, and ends with it.)
"""

import atexit
import contextlib
import logging
import os
import re
import select
import signal
import sys
import tempfile
import time
import types
from collections.abc import Iterator


def _cpp_log_prefix(level: bytes) -> bytes:
    """TensorFlow's C++ log prefix, `<level><mmdd> <time> <thread> ` (`E0000 00:00:17.. 24351 `)."""
    return level + rb"\d{4} [\d:.]+ +\d+ "


# TensorFlow's lines that say nothing a user can act on, seen on a healthy run, matched whole:
# level, file, message (the line number left free, as it moves between releases). Nothing else is
# ever dropped.
KNOWN_HARMLESS_LINES: tuple[re.Pattern[bytes], ...] = (
    # oneDNN's graph rewrite asks, for each op's dtype, whether oneDNN has a kernel for it on this
    # CPU; for bool (a Keras mask: Masking, Embedding(mask_zero=True), which an LSTM consumes) the
    # answer is always no, logged at ERROR level once per process, and the op runs on TensorFlow's
    # own Eigen kernel, as it would without oneDNN. The message blames AVX-512 even on CPUs that
    # have it (this one does). Nothing is wrong and nothing can be done.
    re.compile(
        _cpp_log_prefix(b"E")
        + rb"util\.cc:\d+\] oneDNN supports DT_BOOL only on platforms with AVX-512\. "
        rb"Falling back to the default Eigen-based implementation if present\."
    ),
    # Under --strategy=mirrored, each device's share of a batch comes from a MultiDeviceIterator
    # through a per-device GeneratorDataset (tensorflow/python/data/ops/
    # multi_device_iterator_ops.py), which tf.data cannot serialize, so it skips its graph
    # optimizations for that last hop only; the input pipeline itself, upstream of the iterator,
    # is optimized as under the default strategy.
    re.compile(
        _cpp_log_prefix(b"W")
        + rb"dataset\.cc:\d+\] Input of GeneratorDatasetOp::Dataset will not be "
        rb"optimized because the dataset does not implement the AsGraphDefInternal\(\) method "
        rb"needed to apply optimizations\."
    ),
)
# How long a line without its newline waits for the rest before the relay passes it on as it is
# (TensorFlow's log lines come whole, in one write; a prompt-like partial line must not wait).
_PARTIAL_LINE_SECONDS = 0.1
# How long an exiting run waits for the relay to copy what is left in the pipe.
_DRAIN_SECONDS = 5.0


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


def is_known_harmless(line: bytes) -> bool:
    """True if `line` (without its newline) is one of `KNOWN_HARMLESS_LINES`, whole."""
    return any(pattern.fullmatch(line) for pattern in KNOWN_HARMLESS_LINES)


def hide_known_harmless_lines() -> None:
    """Drops `KNOWN_HARMLESS_LINES` and the debugger's frozen-module warning for the whole process.

    Call it once, first thing in a command (before threads start: it forks), when the start-up
    lines are hidden; `--verbosity=0` shows everything. Every other line written to fd 2, from
    Python or C++, reaches stderr unchanged, in order.
    """
    # The debugger (--debugger) copies the source file of every Python frame that built an op
    # into its dump, and warns for each it cannot read: under `python -m`, one is
    # `<frozen runpy>`, a module compiled into the interpreter, which has no file. Debugger V2
    # shows no source for that frame, which is Python's, not the user's; a real file it cannot
    # read is still reported.
    logging.getLogger("tensorflow").addFilter(_not_a_frozen_module_source_warning)
    sys.stdout.flush()
    sys.stderr.flush()
    try:
        real_stderr = os.dup(2)
    except OSError:  # No fd 2 at all (a daemon): nothing to filter.
        return
    read_end, write_end = os.pipe()
    relay = os.fork()
    if relay == 0:  # The relay: it never returns.
        _run_relay(read_end, real_stderr)
    os.close(read_end)
    os.dup2(write_end, 2)
    os.close(write_end)
    atexit.register(_wait_for_relay, relay, real_stderr)


def _not_a_frozen_module_source_warning(record: logging.LogRecord) -> bool:
    if record.msg != "Failed to read source code from path: %s. Reason: %s" or not record.args:
        return True
    file_name = os.path.basename(str(record.args[0]))
    return not (file_name.startswith("<frozen ") and file_name.endswith(">"))


def _run_relay(source: int, destination: int) -> None:
    """The relay process: copies `source` to `destination` line by line, less the known-harmless
    lines, until every writer has closed the pipe (the run has exited, however it ended)."""
    try:
        # Signals are for the run, which shares the terminal's process group: Ctrl-C reaches both.
        # The relay ends at the pipe's end, once the run has, so nothing the run wrote is lost.
        for number in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
            signal.signal(number, signal.SIG_IGN)
        os.dup2(source, 0)
        os.dup2(destination, 2)
        # No other file of the run stays open here (a pipe its parent reads to the end, a lock).
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, 1)
        os.closerange(3, os.sysconf("SC_OPEN_MAX") if hasattr(os, "sysconf") else 1024)
        _copy_lines(0, 2)
    finally:
        os._exit(0)  # Not the parent's atexit handlers or buffers: they are the run's.


def _copy_lines(source: int, destination: int) -> None:
    pending = b""
    while True:
        if pending:
            ready, _, _ = select.select([source], [], [], _PARTIAL_LINE_SECONDS)
            if not ready:
                _write_all(destination, pending)
                pending = b""
                continue
        chunk = os.read(source, 65536)
        if not chunk:
            break
        *lines, pending = (pending + chunk).split(b"\n")
        kept = b"".join(line + b"\n" for line in lines if not is_known_harmless(line))
        _write_all(destination, kept)
    _write_all(destination, pending)


def _write_all(destination: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(destination, data) :]
    except OSError:  # The terminal is gone: keep reading, so the run never blocks on a full pipe.
        pass


def _wait_for_relay(relay: int, real_stderr: int) -> None:
    """At exit: closes the run's end of the pipe (fd 2 back on the real stderr) and waits until
    the relay has copied the rest, so the last lines come before the shell's prompt."""
    sys.stderr.flush()
    os.dup2(real_stderr, 2)
    deadline = time.monotonic() + _DRAIN_SECONDS
    # Bounded: a child process the run started may hold the pipe open as its stderr.
    while time.monotonic() < deadline:
        try:
            finished, _ = os.waitpid(relay, os.WNOHANG)
        except ChildProcessError:  # Reaped already.
            return
        if finished:
            return
        time.sleep(0.001)
