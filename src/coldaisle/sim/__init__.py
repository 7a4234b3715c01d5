"""The digital twin: a vectorised GPU cluster on a simulated clock that replays incidents."""
