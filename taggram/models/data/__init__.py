"""Training data recipe: real music from Debian packages, decoded to mono 16 kHz (not committed)."""
