"""The errors a command reports as one line (exit status 2): what the user gave is wrong.

Each message names the flag, file or folder and what is wrong with it. They live here, apart from
the modules that raise them, so that a command can catch them without importing TensorFlow.
"""


class ConfigError(ValueError):
    """A flag has a wrong value; the message names the flag."""


class DataError(ValueError):
    """Bad or missing data; the message is one line that names the file or folder."""


class WeightsError(ValueError):
    """A weights file is missing, unreadable, or does not fit the network; the message says where."""
