"""User-facing errors.

`DDError` carries one line that tells the user what is wrong and how to fix it. The CLI prints it
without a traceback; library callers may catch it like any exception.
"""


class DDError(Exception):
    """A bad input or environment problem explained in one line (no traceback shown)."""


def error_line(error: BaseException) -> str:
    """What a failure says in one line: a `DDError`'s own words; anything else (a bug, a dead library)
    with its type."""
    return str(error) if isinstance(error, DDError) else f"{type(error).__name__}: {error}"
