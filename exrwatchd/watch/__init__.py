"""Finding files: name filters, tree walks, observers (inotify/poll) and the settle rule."""
