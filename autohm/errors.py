"""Errors caused by user input; the command line prints them as one line, without a traceback."""


class AutohmError(Exception):
    """A problem the user can fix (bad file, key, value or option); the message names it."""


class CheckpointError(AutohmError):
    """A checkpoint directory, file, config field or tensor that cannot be loaded."""
