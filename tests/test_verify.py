"""`farmhand verify`'s listener rules against recorded ``ss -Hlntup`` outputs.

The checks themselves run against real hosts in tests/test_verify_lab.py; here the one piece of
judgement, which sockets count as open on the underlay, is checked on listings as the supported
systems print them (Debian with dhclient, AlmaLinux with NetworkManager and chronyd, Ubuntu 24.04
with sshd socket-activated by systemd), and so is what EL's firewalld lets in (recorded
``firewall-cmd --list-all-zones``). sshd's effective settings: tests/test_sshd_effective.py.
"""

from __future__ import annotations

from ipaddress import IPv4Network
from pathlib import Path

import pytest

from farmhand.inspect import verify
from farmhand.inspect.verify import Listener, parse_ss, underlay_offenders
from farmhand.model.firewalld import Allowed
from support.cli import assert_cli_error, run_cli
from support.pyinfra_harness import firewalld_listing

OVERLAY = IPv4Network("10.87.0.0/16")
FIXTURES = Path(__file__).parent / "fixtures" / "verify"

HUB_ALMALINUX = (FIXTURES / "ss-hub-almalinux-9.txt").read_text()

WORKER_DEBIAN = (FIXTURES / "ss-worker-debian-12.txt").read_text()

WORKER_UBUNTU_2404 = (FIXTURES / "ss-worker-ubuntu-24.04.txt").read_text()


def test_parse_ss() -> None:
    listeners = parse_ss(HUB_ALMALINUX)
    assert listeners[2] == Listener("udp", "10.0.2.15", 68, ("NetworkManager",))
    assert listeners[3] == Listener("udp", "::1", 323, ("chronyd",))
    assert listeners[5] == Listener("tcp", "10.87.0.1", 445, ("smbd",))
    assert str(listeners[6]) == "tcp [::]:22 (sshd)"
    ubuntu = parse_ss(WORKER_UBUNTU_2404)
    assert ubuntu[2] == Listener("tcp", "*", 22, ("sshd", "systemd"))
    assert parse_ss("garbage\n\nNetid State\n") == []
    # IPv4-mapped addresses (dual-stack sockets) are judged as the IPv4 address they stand for.
    mapped = parse_ss(
        'udp UNCONN 0 0 [::ffff:0.0.0.0]:42042 *:* users:(("nebula",pid=9,fd=7))\n'
        'tcp LISTEN 0 5 [::ffff:10.87.0.1]:445 *:* users:(("smbd",pid=9,fd=3))\n'
        'tcp LISTEN 0 5 [::ffff:127.0.0.1]:631 *:* users:(("cupsd",pid=9,fd=3))\n'
        'tcp LISTEN 0 5 [::ffff:198.18.87.10]:445 *:* users:(("smbd",pid=9,fd=4))\n'
    )
    assert [str(s) for s in underlay_offenders(mapped, OVERLAY, [22])] == [
        "tcp [::ffff:198.18.87.10]:445 (smbd)"
    ]


def test_a_hub_with_only_ssh_nebula_and_dhcp_on_the_underlay_passes() -> None:
    assert underlay_offenders(parse_ss(HUB_ALMALINUX), OVERLAY, [22]) == []


@pytest.mark.parametrize(
    ("listing", "offending"),
    [
        (WORKER_DEBIAN, ["tcp 0.0.0.0:111 (rpcbind,systemd)"]),
        (
            WORKER_UBUNTU_2404,
            ["tcp 0.0.0.0:8080 (python3)", "udp 0.0.0.0:5353 (avahi-daemon)"],
        ),
    ],
)
def test_anything_else_on_the_underlay_is_named(listing: str, offending: list[str]) -> None:
    found = underlay_offenders(parse_ss(listing), OVERLAY, [22])
    assert [str(s) for s in found] == offending


def test_sshd_on_another_port_and_sockets_nobody_owns() -> None:
    sshd_2222 = parse_ss(
        'tcp LISTEN 0 128 0.0.0.0:2222 0.0.0.0:* users:(("sshd",pid=1,fd=3))\n'
        "tcp LISTEN 0 128 0.0.0.0:22 0.0.0.0:*\n"
    )
    # sshd is allowed on the ports sshd -T reports; a socket with no process is never trusted.
    assert [str(s) for s in underlay_offenders(sshd_2222, OVERLAY, [2222])] == [
        "tcp 0.0.0.0:22 (?)"
    ]
    assert len(underlay_offenders(sshd_2222, OVERLAY, [22])) == 2
    # Without a known overlay (no farm.json), an overlay-bound socket counts as underlay.
    assert [s.port for s in underlay_offenders(parse_ss(WORKER_DEBIAN), None, [22])] == [
        111,
        8081,
    ]


def test_verify_needs_a_valid_target() -> None:
    assert_cli_error(run_cli("verify", "hub", "root@bad host"), "invalid target", code=2)
    assert_cli_error(run_cli("verify", "queen", "root@h"), "queen", code=2)


def test_firewalld_underlay_zones_pass_only_when_closed() -> None:
    """The running firewall of tests/fixtures/firewalld/: every zone that sees the underlay,
    never farmhand-overlay (target ACCEPT on nebula1) or a zone nothing is bound to."""
    hub = Allowed.of([22], 42042)
    messy = verify.firewalld_underlay_check("public", firewalld_listing("el9-messy.runtime"), hub)
    assert messy.name == verify.FIREWALLD_CHECK
    assert not messy.passed
    assert messy.detail.split("; ") == [
        "home: service cockpit",
        "home: service mdns",
        "home: service samba-client",
        "public: port 8080/tcp",
        "public: service cockpit",
        "public: source-port 5353/udp",
        "public: protocol igmp",
        "public: forward-port port=2222:proto=tcp:toport=22:toaddr=",
        'public: rich-rule rule family="ipv4" source address="192.0.2.0/24" service name="http" '
        "accept",
        'public: rich-rule rule family="ipv4" port port="9090" protocol="tcp" accept',
        "trusted: target ACCEPT",
    ]
    converged = firewalld_listing("el9-converged-hub.runtime")
    assert verify.firewalld_underlay_check("public", converged, hub).passed
    worker = verify.firewalld_underlay_check("public", converged, Allowed.of([22]))
    assert not worker.passed, "a worker has no Nebula port to open"
    assert "public: port 42042/udp" in worker.detail
    fresh = verify.firewalld_underlay_check("public", firewalld_listing("el9-fresh.runtime"), hub)
    assert fresh.detail == "public: service cockpit"


def test_slurms_daemons_on_every_address_pass_but_not_another_program_on_their_ports() -> None:
    """slurmctld and slurmd cannot bind one address; the host firewall closes their ports on
    the underlay, so they pass; anything else on 6817/6818, or Slurm on another port, does not."""
    listeners = [
        Listener("tcp", "0.0.0.0", 6817, ("slurmctld",)),  # noqa: S104
        Listener("tcp", "0.0.0.0", 6818, ("slurmd",)),  # noqa: S104
        Listener("tcp", "0.0.0.0", 6818, ("python3",)),  # noqa: S104
        Listener("tcp", "0.0.0.0", 7000, ("slurmctld",)),  # noqa: S104
    ]
    offenders = underlay_offenders(listeners, OVERLAY, [22])
    assert [str(s) for s in offenders] == [
        "tcp 0.0.0.0:6818 (python3)",
        "tcp 0.0.0.0:7000 (slurmctld)",
    ]
