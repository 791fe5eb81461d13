"""The error hierarchy: every failure a user can cause is one of these, with a clear message."""


class RespiraError(Exception):
    """Base class; the CLI prints it as one line and exits non-zero."""


class AudioError(RespiraError):
    """Audio that cannot be read: missing, empty, corrupt, not audio, absurd duration."""


class ConfigError(RespiraError):
    """A configuration value or key that is wrong; the message names the key."""


class DataError(RespiraError):
    """A manifest or data set layout that is wrong; the message names the row or file."""


class ModelError(RespiraError):
    """A model bundle or checkpoint that cannot be used."""
