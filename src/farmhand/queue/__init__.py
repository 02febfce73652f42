"""The render queue: render managers and renderers, their pinned artifacts and their TLS."""
