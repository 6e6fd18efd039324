"""One error root for the whole daemon, with a subclass per stage.

An intentional skip (a hidden file, an excluded name) is not an error and never raises.
The process exit codes live here too, once, for the commands and the daemon alike.
"""

__all__ = [
    "EXIT_CONFIG",
    "EXIT_FAILED",
    "EXIT_NOT_RUNNING",
    "EXIT_OK",
    "EXIT_TEMPFAIL",
    "EXIT_UNAVAILABLE",
    "EXIT_USAGE",
    "ConfigError",
    "ExrFormatError",
    "ExrwatchdError",
    "StartupError",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2  # argparse's own convention
EXIT_NOT_RUNNING = 3  # LSB `status`: the program is not running
EXIT_UNAVAILABLE = 69  # EX_UNAVAILABLE: a service needed (the sink) cannot be reached
EXIT_TEMPFAIL = 75  # EX_TEMPFAIL: try again later (a full disk); systemd restarts on it
EXIT_CONFIG = 78  # EX_CONFIG


class ExrwatchdError(Exception):
    """Root of every error exrwatchd raises on purpose."""


class ConfigError(ExrwatchdError):
    """The configuration file is missing, unreadable or invalid.

    The message always names the file and, where there is one, the key path.
    """


class ExrFormatError(ExrwatchdError):
    """The bytes are not a well-formed OpenEXR header.

    `kind` is a stable machine-readable class of the problem (``not_exr``,
    ``truncated_header``, ``bad_attribute``...), the message says what exactly.
    """

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message


class StartupError(ExrwatchdError):
    """The daemon cannot start (state_dir on a network file system, journal unusable...).

    `transient` when waiting may fix it (a full disk, an I/O error): the process then exits
    with EX_TEMPFAIL so systemd restarts it, not EX_CONFIG, which it does not.
    """

    def __init__(self, message: str, *, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient
