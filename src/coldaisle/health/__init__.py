"""Node health for schedulers: `coldaisle health` (Slurm HealthCheckProgram, Nagios codes), Slurm prolog and epilog."""
