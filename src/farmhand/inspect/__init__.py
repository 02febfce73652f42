"""Looking at a running farm: ``farmhand status`` from a boss, ``farmhand verify`` on a host."""
