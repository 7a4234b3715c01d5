"""`coldaisle run`: supervise a distributed job (heartbeat API and reader, supervisor, stack dumps, bundles)."""
