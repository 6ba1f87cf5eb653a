"""User-facing errors.

`DDError` carries one line that tells the user what is wrong and how to fix it. The CLI prints it
without a traceback; library callers may catch it like any exception.
"""


class DDError(Exception):
    """A bad input or environment problem explained in one line (no traceback shown)."""
