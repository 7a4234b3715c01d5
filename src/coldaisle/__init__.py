"""coldaisle: keep GPU clusters from cooking themselves and jobs from failing silently."""

__version__ = "0.1.0"
