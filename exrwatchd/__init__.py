"""exrwatchd: know every OpenEXR frame that lands on your mounts."""

__version__ = "0.1.0"
