"""The wording the loaders share: the first line of an error, and how to opt in to full unpickling.

Example:
    >>> first_line(ValueError("bad header\\nat byte 12"))
    'bad header'
"""

from __future__ import annotations

TRUST_HINT = "If you trust the file, pass trust=True (this runs code stored in it)"


def first_line(err: BaseException) -> str:
    """The first line of ``err``'s message (its type's name when the message is empty)."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__
