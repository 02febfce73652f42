"""`farmhand deploy` failures a user meets before any host changes: each one line, exit 1."""

from __future__ import annotations

import socket

from support.cli import WITH_PASSPHRASE, assert_cli_error, run_cli
from support.session import Farm


def _closed_loopback_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_an_unreachable_host_is_named_with_the_reason(farm: Farm) -> None:
    port = _closed_loopback_port()
    result = run_cli(
        "deploy", "hub", f"127.0.0.1:{port}",
        "--bundle", farm.root / "hub.keybundle.age",
        "--known-hosts", "/dev/null",
        env=WITH_PASSPHRASE,
    )  # fmt: skip
    line = assert_cli_error(result, f"127.0.0.1:{port}: could not connect", code=1)
    assert f"port {port}" in line, "pyinfra's reason is part of the message"
    assert "unreachable" in result.stdout, "the progress table shows the host's state"
    assert "not reached, nothing changed" in result.stdout
