"""The package version, in a leaf module so any part (reports, the CLI) can name it without importing the root."""

__version__ = "0.1.0"
