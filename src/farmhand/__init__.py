"""farmhand: a secure personal render farm over a Nebula overlay."""

__version__ = "0.1.0"
