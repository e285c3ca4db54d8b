"""Processes: the supervisor, its workers, and the event loop they run on."""
