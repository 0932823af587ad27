"""Quoting by construction: how every emitter writes shell text.

Every value from a plan or the command line reaches a shell script through :func:`sh_word`
(``shlex.quote``) and a comment through :func:`sh_comment` (no line break, no control or
format character). Shell syntax the emitter means (an expansion such as ``"$POD_IP"``) is an
:class:`Sh`; emitters build it only from their own constants and variable names
(:func:`sh_var`, :func:`sh_assign`).
"""
from __future__ import annotations

import re
import shlex


class Sh(str):
    """Shell text written by an emitter itself (an expansion it means), passed through as is."""


_SHELL_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def safe_text(text) -> str:
    """``text`` with every non-printable character (line breaks, terminal escapes, Unicode format
    characters such as a right-to-left override or a zero-width space) written as a Python escape,
    so it stays on one line and shows what it is."""
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in str(text))


def sh_word(value) -> str:
    """One shell word for ``value``: ``Sh`` text as is, anything else through ``shlex.quote``.

    A ``$`` or backtick is written outside the single quotes, backslash-escaped (``'a'\\$'(b)'``):
    the same literal word, which shellcheck does not mistake for an expansion meant to run (SC2016)."""
    if isinstance(value, Sh):
        return value
    text = str(value)
    quoted = shlex.quote(text)
    if quoted == text or not re.search(r"[$`]", text):
        return quoted
    return "".join("\\" + part if part in ("$", "`") else shlex.quote(part)
                   for part in re.split(r"([$`])", text) if part)


def sh_cmd(argv) -> str:
    """A command line from its words (see ``sh_word``)."""
    return " ".join(sh_word(w) for w in argv)


def sh_assign(name: str, value) -> Sh:
    """``NAME=value`` (an environment prefix or a variable), the value quoted."""
    if not _SHELL_NAME.fullmatch(name):
        raise ValueError(f"not a shell variable name: {name!r}")
    return Sh(f"{name}={sh_word(value)}")


def sh_var(name: str, default_var: str | None = None, suffix: str = "") -> Sh:
    """``"$NAME"`` or ``"${NAME:-$DEFAULT}suffix"`` as one double-quoted word: the default is another
    variable (assigned with ``sh_assign``), never pasted text; ``suffix`` is the emitter's own text."""
    for n in (name, default_var):
        if n is not None and not _SHELL_NAME.fullmatch(n):
            raise ValueError(f"not a shell variable name: {n!r}")
    if re.search(r'["$`\\]', suffix):
        raise ValueError(f"suffix {suffix!r} is not plain text")
    if default_var:
        return Sh(f'"${{{name}:-${default_var}}}{suffix}"')
    return Sh(f'"${{{name}}}{suffix}"' if suffix else f'"${name}"')


def sh_comment(text) -> str:
    """A ``# ...`` comment line for ``text``, whatever it holds (see ``safe_text``)."""
    return "# " + safe_text(text)


def continued(cmd: list[tuple], indent: str = "  ", background: bool = False) -> list[str]:
    """A command as lines: its first part (environment and program), then one flag (with its value)
    per continuation line; each part is a tuple of words (see ``sh_word``)."""
    head, *rest = [sh_cmd(part) for part in cmd]
    tail = " &" if background else ""
    out = [indent + head + (" \\" if rest else tail)]
    for i, part in enumerate(rest):
        out.append(indent + "    " + part + (" \\" if i < len(rest) - 1 else tail))
    return out


def argv_of(cmd: list[tuple]) -> list[str]:
    """The words of a command built for ``continued``, as an argv list (no shell in between)."""
    words = [w for part in cmd for w in part]
    if any(isinstance(w, Sh) for w in words):
        raise ValueError("a command with shell expansions needs a shell")
    return [str(w) for w in words]


def node_case(nodes: list[str], bodies: dict[str, list[str]]) -> list[str]:
    """A ``case "$NODE"`` over the nodes: run the script on each node with its name. Each pattern is
    a quoted word, so a node name only ever matches itself."""
    names = safe_text(" ".join(nodes))
    lines = ['NODE="${1:-}"', 'case "$NODE" in']
    for n in nodes:
        lines.append(f"{sh_word(n)})")
        lines.extend(bodies[n])
        lines.append("  ;;")
    usage = f"printf 'usage: %s NODE, one of: %s (got: %s)\\n' \"$0\" {sh_word(names)} \"$NODE\" >&2"
    lines.append(f"*) {usage}; exit 2 ;;")
    lines.append("esac")
    return lines
