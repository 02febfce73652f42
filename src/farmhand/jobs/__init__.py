"""Render jobs from the boss: frames, the hub's job service client, SMB upload and collect.

The hub side is one stdlib file (farmhand/onhost/jobs.py), reached over SSH with the boss's
own job key; this package is the laptop's half and imports no Typer."""
