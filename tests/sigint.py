"""What SIGINT a test's child process starts with, whatever the test runner's own is.

A process started with SIGINT ignored passes that on to every child (a handler does not survive
`exec`; SIG_IGN does), and Python then installs no KeyboardInterrupt handler: so when the suite
itself runs with SIGINT ignored (a background job of a script: `make test &`), a child
that is sent SIGINT ignores it, unless the test says which disposition it starts with.
"""

import contextlib
import signal
from collections.abc import Iterator


@contextlib.contextmanager
def children_start_with_sigint(disposition: signal.Handlers) -> Iterator[None]:
    """Processes started in the block start with SIGINT at `disposition`.

    Args:
        disposition: `signal.SIG_DFL`, what a terminal's foreground command gets (Python turns
            it into KeyboardInterrupt, an app into a save and exit 130), or `signal.SIG_IGN`,
            what a background job of a shell without job control gets.
    """
    # The runner's own disposition for the block, which exec turns into the child's: a handler
    # (Python's own) becomes SIG_DFL there, and a Ctrl-C meanwhile still stops the runner.
    if disposition == signal.SIG_DFL:
        previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    else:
        previous = signal.signal(signal.SIGINT, disposition)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
