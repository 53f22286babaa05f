"""Exception types raised at the project's boundaries.

Each message says what was expected, what came in and how to fix it. The entry scripts turn any
``PatchCoreError`` into one line on stderr and a non-zero exit status, without a traceback.
"""


class PatchCoreError(Exception):
    """Base class of every error the project raises on bad input or state."""


class ConfigError(PatchCoreError):
    """A configuration file, key or value is invalid."""


class DatasetError(PatchCoreError):
    """A dataset folder is missing, has the wrong layout, or holds an unreadable image."""


class WeightsError(PatchCoreError):
    """A backbone weights file cannot be read or does not match the network."""


class MemoryBankError(PatchCoreError):
    """A saved model (memory bank and metadata) is missing, corrupt or does not match the config."""
