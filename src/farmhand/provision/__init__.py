"""Turning a fresh machine into a farm host unattended: bootstrap, cloud-init and bundle sources."""
