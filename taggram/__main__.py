"""``python -m taggram`` is the same as the ``taggram`` command."""

from taggram.cli import main

main()
