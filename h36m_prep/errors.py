"""The one base class of the toolkit's own errors: bad data, a bad store, a bad option. Each
message names the file or option and the fix; the command lines print it and exit with status 2."""


class ToolkitError(Exception):
    """A domain error of multiview-sync (never a bug): the message says what and how to fix it."""


class ConfigError(ToolkitError, ValueError):
    """An option or config field with a value it cannot take."""
