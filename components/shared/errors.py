"""The one error type that crosses the user boundary.

A `UserError` carries one line that names the problem and the fix. The CLI prints it without a
traceback and exits non-zero; anything else is a bug and keeps its traceback.
"""


class UserError(Exception):
    """Bad input from the user: a missing path, an unknown key, an empty corpus, ..."""
