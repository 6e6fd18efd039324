"""One error root for the whole daemon, with a subclass per stage.

An intentional skip (a hidden file, an excluded name) is not an error and never raises.
"""


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
