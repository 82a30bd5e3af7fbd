"""The end-to-end tests' server launcher is the package's own (benchmarks use it too)."""

from taggram.service.launcher import Server, free_port, running_server

__all__ = ["Server", "free_port", "running_server"]
