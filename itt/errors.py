"""User-facing errors: one clear line, no traceback (the CLI prints ``error: <message>``)."""

from __future__ import annotations


class UserError(Exception):
    """A mistake in a config, a data file or a command line; the message names what and where."""


class ConfigError(UserError):
    pass


class DataError(UserError):
    pass


class RunFailed(Exception):
    """The command ran, but produced nothing to report (every trial of a search errored): one line too,
    with exit status 1 rather than a user mistake's 2."""
