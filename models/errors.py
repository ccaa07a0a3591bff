"""Errors a user can fix; the CLI prints them as one paragraph, without a traceback."""


class LavaflowError(Exception):
    """Base class: a problem with the user's input, files or environment, not a bug in lavaflow."""


class DataError(LavaflowError):
    """A data set is unknown, missing or malformed; the message says where to get the files."""


class ConfigError(LavaflowError):
    """A configuration key or value is invalid; the message names the key and the valid choices."""


class NetSpecError(LavaflowError, ValueError):
    """A network description is inconsistent (shapes, unknown nodes, non-finite values)."""


class BackendError(LavaflowError):
    """A simulation backend cannot run here (e.g. Loihi 2 hardware without lava-loihi)."""
