"""The one exception type the data package raises for bad input.

Every problem with a dataset name, a path, a file or a setting is reported as a
`DataError`, so callers (the command line, the experiment runner) can catch one
type and show its message, which always says what is wrong and how to fix it.
"""

__all__ = ["DataError"]


class DataError(ValueError):
    """Raised for any bad input to the data package: names, paths, files, settings."""
