"""Errors raised when a data set cannot be used: missing (not prepared) or corrupt.

Both are `ConfigError`s, so the entry points print them as one line (with the fix) and exit with status 2
instead of a traceback. pannjax never substitutes random data for data it cannot load.
"""

from pannjax.errors import ConfigError


class DataNotFoundError(ConfigError):
    """The requested data set is not present in the data directory (or not in a readable format)."""


class CorruptDataError(ConfigError):
    """A data file or source archive exists but cannot be read or fails a consistency check."""
