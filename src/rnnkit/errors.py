"""Errors that are the user's to fix: the command line prints them as one line, no traceback."""


class UserError(ValueError):
    """Bad input from the user (a file, an option, a checkpoint): the message names the file,
    line or argument and says what was expected."""
