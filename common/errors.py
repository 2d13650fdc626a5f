"""The error type for bad user input: reported as one line, never as a traceback."""


class UserError(Exception):
    """Bad input from the user (a path, a data file, a setting) that the user can fix.

    Apps catch it at the top level (see `common.cli.exit_on_user_error`) and print
    `error: <message>` with no traceback, so the message must name the culprit on its own.
    """
