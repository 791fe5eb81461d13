"""respira: find, count and classify respiratory and vocal sounds in audio."""

__version__ = "0.1.0"
