"""Log triage: many nodes' logs -> classified events on one clock -> groups -> ranked root cause -> reports.

Reusable pieces: `catalog.load_catalog().matcher()` classifies single lines (the agent's /dev/kmsg follower
can share it); `analyze.triage(paths)` runs the whole pipeline.
"""
