"""The `edurank` command line (entry-point layer): one subcommand per job, its flags generated from the job's
config dataclass; `python -m edurank.cli` runs it too."""
