"""What a farm host is: its distribution, its host model, and every path farmhand uses on it."""
