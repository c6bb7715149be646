"""One exception type for user mistakes, so entry points can print a one-line message."""


class ConfigError(ValueError):
    """A configuration value is invalid. The message names the key and how to fix it."""
