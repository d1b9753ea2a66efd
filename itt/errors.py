"""User-facing errors: one clear line, no traceback (the CLI prints ``error: <message>``)."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in a config, a data file or a command line; the message names what and where."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


def first_line(e: BaseException, limit: int = 300, clean=None) -> str:
    """An exception's first line, at most ``limit`` characters, for one console line (its type's name
    where it has no message); ``clean`` (e.g. a password mask) applies to the whole message first."""
    text = str(e).strip()
    text = clean(text) if clean else text
    return (text.splitlines()[0] if text else type(e).__name__)[:limit]


def not_utf8(e: UnicodeDecodeError) -> str:
    """What is wrong with a file whose bytes are not UTF-8: the first bad byte and where it is."""
    return f"not UTF-8 text (byte {e.object[e.start:e.start + 1]!r} at offset {e.start})"


class RunFailed(Exception):
    """The command ran, but produced nothing to report (every trial of a search errored): one line too,
    with exit status 1 rather than a user mistake's 2."""
