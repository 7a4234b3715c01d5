"""Actions: what a Decision does (notify, power cap, signal, drain), audited, rate-limited, with dry-run.

interface.py holds the contract; runner.ActionRunner drives the executors (signal.ProcessSignaller,
powercap.PowerCapper, drain.SlurmDrain, k8s.KubernetesDrain, notify.LogNotifier/WebhookNotifier, and
sim.SimSignaller/SimDrain on the twin) behind safety.py's limits, writing audit.AuditLog.
"""
