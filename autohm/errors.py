"""Errors caused by user input; the command line prints them as one line, without a traceback."""


class AutohmError(Exception):
    """A problem the user can fix (bad file, key, value or option); the message names it."""


class TrialFailed(AutohmError):
    """A trial that cannot finish as configured (a non-finite loss, too little memory, an
    invalid combination): the search records it as failed with this message and goes on;
    `autohm train` prints it as one error line."""


class CheckpointError(AutohmError):
    """A checkpoint directory, file, config field or tensor that cannot be loaded."""
