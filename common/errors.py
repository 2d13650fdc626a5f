"""The error type for bad user input: reported as one line, never as a traceback."""


class UserError(Exception):
    """Bad input from the user (a path, a data file, a setting) that the user can fix.

    Apps catch it at the top level (see `common.cli.exit_on_user_error`) and print
    `error: <message>` with no traceback, so the message must name the culprit on its own.
    """


class Interrupted(Exception):  # noqa: N818 (it is not an error: the user asked for it)
    """SIGINT or SIGTERM stopped the run after a checkpoint was saved.

    Apps exit with the conventional code, 128 + the signal's number (130 for Ctrl-C, 143 for
    SIGTERM), after printing the message.
    """

    def __init__(self, signal_number: int, message: str) -> None:
        super().__init__(message)
        self.signal_number = signal_number
        self.exit_code = 128 + signal_number


class NonFiniteLossError(UserError):
    """The loss became NaN or infinite: training stopped before saving anything of it."""
