# ruff: noqa: B018, F821
"""Names vulture (tests/test_dead_code.py) would call unused that something else calls by name.
Only such names belong here: anything else it finds is dead code, to be removed."""

# pyinfra calls its state callbacks (deploy/engine.py) with these keyword arguments.
retry_count
max_retries

# Python calls __exit__ (keystore/fs.py) and signal handlers (onhost/leases.py) with these.
tb
frame
