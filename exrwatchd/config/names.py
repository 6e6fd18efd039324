"""Which file names are watched when a watch says nothing (its own module: the name filter
needs only these, not the validating model)."""

#: OpenEXR frames, whatever the case of the suffix (the filter folds case).
DEFAULT_INCLUDE = ("*.exr",)
#: Names that are hidden, or that writers use while a file is still being written.
DEFAULT_EXCLUDE = (".*", "*.tmp", "*.temp", "*.part", "*.partial", "*~", "*.swp")
