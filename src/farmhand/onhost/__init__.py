"""Code that farmhand ships to hosts and runs there: the standard library only, Python 3.6+."""
