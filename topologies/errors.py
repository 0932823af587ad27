"""Errors every layer raises. They live at the bottom layer so that imports run one way.

``PlanSearchError`` is the base; the CLI turns any of them into one line and an exit code
(``exit_code``), never a traceback. A bug is anything else.
"""
from __future__ import annotations


def printable(text: str) -> str:
    """``text`` with every non-printable character (control characters, terminal escapes,
    line and paragraph separators) written as its Python escape (``\\x1b``, ``\\n``).

    Messages echo what users typed or what files say; escaping here means no input can
    colour, move the cursor of, or add a line to the one-line error a terminal shows.
    """
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


class PlanSearchError(Exception):
    """Base of every expected failure."""

    exit_code = 2


class InputError(PlanSearchError):
    """The user's input is wrong: a file, a field, a flag. Exit code 2.

    The message names where (``source``: a file or flag), what (``field``) and the fix.
    """

    def __init__(self, message: str, *, source: str | None = None, field: str | None = None):
        self.source = source
        self.field = field
        where = ": ".join(p for p in (source, field) if p)
        super().__init__(printable(f"{where}: {message}" if where else message))


class TopologyError(InputError):
    """A topology file that parses but does not describe a usable cluster."""


class InfeasibleError(PlanSearchError):
    """No plan meets the request. Exit code 3; the message names the binding constraint."""

    exit_code = 3


class SolveTimeout(PlanSearchError):
    """The time limit ran out before the solver found any plan (none proven impossible). Exit code 3."""

    exit_code = 3
