"""OpenEXR header reading, completeness, inspection, reports and structural embeddings: pure
functions of a file's bytes (pixels.py, opt-in, reads pixels with OpenImageIO)."""

from exrwatchd.exr.inspect import inspect_path, inspect_source
from exrwatchd.exr.model import InspectError, Inspection, Part

__all__ = [
    "InspectError",
    "Inspection",
    "Part",
    "inspect_path",
    "inspect_source",
]
