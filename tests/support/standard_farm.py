"""The standard lab farm: ONE booted, provisioned farm that lab modules share.

Booting and deploying a farm costs a minute or two of a CI run, so the modules that only look
at an ordinary farm (and put back whatever they change) share this one, through the
session-scoped ``standard_farm`` fixture (tests/conftest.py): a hub, worker0001, worker0002
and boss1 under the prefix ``fhstd``, deployed as root by the real keygen and deploys
(``farmhand.lab.provision``), booted by the first module that asks and torn down at the end of
the session. A module that breaks hosts for good (kills, reboots, redeploys with other keys)
boots its own farm instead.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from farmhand.lab import LabFarm
from farmhand.lab import provision as prov

PREFIX = "fhstd"
HUB, W1, W2, BOSS = "hub", "worker0001", "worker0002", "boss1"
NAMES = (HUB, W1, W2, BOSS)


@dataclass(frozen=True)
class StandardFarm:
    """The shared farm and what its users ask first: each host's overlay address."""

    farm: LabFarm
    overlay: dict[str, str]


def boot(state_dir: Path) -> StandardFarm:
    """Boot and provision the standard farm; on any failure it is torn down again."""
    farm = LabFarm(state_dir, prefix=PREFIX, progress=print)
    try:
        farm.up(workers=2, bosses=1)
        reports = prov.provision(farm, print)
        failures = {k: r.failure_message() for k, r in reports.items() if not r.ok}
        assert not failures, failures
        overlay = {name: prov.overlay_ip(farm, name) for name in NAMES}
        # Every worker chose its certificate and nebula is up everywhere before tests judge.
        for name in (W1, W2, BOSS):
            assert prov.ping(farm, name, overlay[HUB]), f"{name} does not reach the hub"
    except BaseException:
        farm.down()
        raise
    return StandardFarm(farm, overlay)
