"""The render queue: render managers and renderers, their pinned artifacts and their TLS."""

from farmhand.queue import tls as tls  # declares the queue's farm-wide secret (queue-tls)
