"""End to end: clones of one deployed worker pick distinct certificates from the hub (issue 4).

ONE lab for the module (prefix ``fhcln``): a hub and worker0001, a pool of 6 worker
certificates and a lease TTL of 15 s (farm.toml ``lease_ttl``). worker0001 is deployed for real,
then powered off: its disk is the "snapshot" every clone boots from (a copy-on-write layer over
it, ``LabFarm.add_clones``), so every clone carries the same /etc/machine-id, the whole pool and
the claim key, exactly like clones made from a provider's panel. Each clone has its own network
card (MAC), as a cloud clone does.

The tests run in file order and build on each other: six clones at once (three with one
hostname, one named worker0001), then one is killed without a shutdown and a seventh clone waits
for the exhausted pool and says why, until the killed clone's lease ends. The last test
reissues the worker pool and rotates the claim key and the Samba password (issue 15): the
image made before is refused, the image redeployed makes clones that join. Then the farm
rolls to a new CA in three deployed steps.
"""

from __future__ import annotations

import functools
import json
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pytest

import support.lab
from farmhand.keystore import lifecycle, pki, rollover
from farmhand.keystore.plan import Role, new_plan
from farmhand.keystore.store import KeyStore
from farmhand.lab import LabFarm
from farmhand.lab import provision as prov
from farmhand.model.paths import NEBULA_CA, NEBULA_CERT, SMB_CREDENTIALS
from farmhand.onhost import leases
from support.cli import wait_until

PREFIX = "fhcln"
POOL = 6
TTL = 15
SOURCE = "worker0001"
CLONES = {
    "c1": "render",
    "c2": "render",
    "c3": "render",
    "c4": "worker0001",  # the source's name: free once it is powered off
    "c5": "gpu-a",
    "c6": "gpu-b",
}
HUB_OVERLAY = "10.87.0.1"

pytestmark = support.lab.MARKS


@dataclass
class Lab:
    farm: LabFarm
    names: dict[str, str]  # clone -> certificate it holds

    def sh(self, name: str, script: str) -> str:
        return support.lab.sh(self.farm, name, script)


def make_keys(farm: LabFarm) -> None:
    """keygen for the lab with a pool of POOL workers and a short lease."""
    plan = new_plan(name=prov.LAB_FARM_NAME, hub_address=str(farm.address("hub")))
    plan = plan.with_settings(**prov.LAB_PLAN_SETTINGS, lease_ttl=f"{TTL}s")
    pki.create_farm(prov.store_dir(farm), plan, POOL, [], prov.lab_passphrase(farm))


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Lab]:
    support.lab.require_lab()
    farm = LabFarm(tmp_path_factory.mktemp("clones-state"), prefix=PREFIX, progress=print)
    try:
        farm.up(workers=1, bosses=0)
        make_keys(farm)
        prov.deploy_role(farm, Role.HUB, ["hub"])
        prov.deploy_role(farm, Role.WORKER, [SOURCE])
        yield Lab(farm, {})
    finally:
        farm.down()


def holds(lab: Lab, name: str) -> str:
    return support.lab.holds(lab.farm, name)


def reaches_hub(lab: Lab, name: str) -> bool:
    return lab.farm.exec(name, ["ping", "-c", "1", "-W", "1", HUB_OVERLAY]).returncode == 0


def table(lab: Lab) -> dict[str, dict[str, object]]:
    """The hub's published lease table (what `farmhand status` reads), live leases by name."""
    data = json.loads(lab.sh("hub", f"cat {leases.PUBLISHED}"))
    assert set(data) == {"updated", "ttl", "leases"}
    assert data["ttl"] == TTL
    return {lease["name"]: lease for lease in data["leases"]}


def picker_log(lab: Lab, name: str) -> str:
    return lab.sh(name, "journalctl --no-pager -o cat -u farmhand-pick-cert")


def test_redeploying_the_lease_service_and_the_picker_changes_nothing(lab: Lab) -> None:
    wait_until("worker0001 holds worker0001", lambda: holds(lab, SOURCE) == SOURCE, 60)
    for role, name in ((Role.HUB, "hub"), (Role.WORKER, SOURCE)):
        report = prov.deploy_role(lab.farm, role, [name])
        changed = report.hosts[name].changed_ops
        assert not changed, f"the {role.value} re-deploy changed {changed}"
    # The hub's sshd serves its own keys first and the farm's P-384 key on request only.
    dropin = lab.sh("hub", "cat /etc/ssh/sshd_config.d/40-farmhand-lease.conf")
    assert dropin.splitlines()[-1] == f"HostKey {leases.HUB_HOST_KEY}"
    effective = lab.sh("hub", "sshd -T | grep '^hostkey '").splitlines()
    assert effective[-1] == f"hostkey {leases.HUB_HOST_KEY}"
    assert len(effective) >= 2


def test_slurmd_stops_and_starts_with_nebula(lab: Lab) -> None:
    """A worker that loses its lease stops Nebula and starts it again with the next certificate
    (the picker's start over): its Slurm node must come back with it, not stay down."""
    active = "systemctl is-active farmhand-slurmd || true"
    wait_until("slurmd runs", lambda: lab.sh(SOURCE, active).strip() == "active", 60)
    lab.sh(SOURCE, "systemctl stop farmhand-nebula")
    assert lab.sh(SOURCE, active).strip() != "active"
    lab.sh(SOURCE, "systemctl start farmhand-nebula")
    wait_until("slurmd runs again", lambda: lab.sh(SOURCE, active).strip() == "active", 60)


def test_the_source_worker_takes_its_own_name_and_releases_it_at_poweroff(lab: Lab) -> None:
    wait_until("worker0001 holds worker0001", lambda: holds(lab, SOURCE) == SOURCE, 60)
    wait_until("worker0001 reaches the hub", lambda: reaches_hub(lab, SOURCE), 30)
    assert table(lab)[SOURCE]["hostname"] == SOURCE
    # The published table is world-readable, in a folder bosses read over SMB but cannot change.
    modes = lab.sh("hub", f"stat -c '%a %U' {leases.PUBLISHED_DIR} {leases.PUBLISHED}")
    # (2755: the share's setgid bit is inherited; the permissions are 0755.)
    assert modes.splitlines() == ["2755 farmhand-lease", "644 farmhand-lease"]
    lab.farm.poweroff(SOURCE)  # clean: the snapshot's source gives its certificate back
    assert SOURCE not in table(lab)
    journal = lab.farm.state_dir / "hosts" / SOURCE / "upper/var/log/journal"
    log = subprocess.run(
        ["journalctl", "--no-pager", "-o", "cat", "-D", str(journal), "-u", "farmhand-pick-cert"],
        capture_output=True,
        text=True,
    ).stdout
    assert f"farmhand: released {SOURCE}" in log


def test_six_clones_booted_at_once_get_distinct_certificates(lab: Lab) -> None:
    started = time.monotonic()
    lab.farm.add_clones(SOURCE, list(CLONES.items()))
    clones = list(CLONES)

    def settled() -> bool:
        """Every clone runs Nebula with a certificate, and no two with the same one."""
        with ThreadPoolExecutor(max_workers=len(clones)) as pool:
            lab.names.update(zip(clones, pool.map(lambda n: holds(lab, n), clones), strict=True))
        names = list(lab.names.values())
        return all(names) and len(set(names)) == len(names)

    # The five clones that ask for any certificate get the highest numbers (0006 down to 0002),
    # which leaves worker0001 to c4, named after it. A live holder is never moved off its
    # certificate for a host of that name (tests/test_leases*.py): c4 gets its name because
    # nobody else took it, whichever clone asks first.
    try:
        wait_until("all six clones hold distinct certificates", settled, 120, every=1)
    finally:
        print(f"clones hold {lab.names}")
        for name in clones:
            print(f"--- {name}\n{picker_log(lab, name)}")
    with ThreadPoolExecutor(max_workers=len(clones)) as pool:
        list(pool.map(lambda n: wait_until(n, lambda: reaches_hub(lab, n), 60), clones))
    print(f"clones hold {lab.names}; all reach the hub {time.monotonic() - started:.1f} s in")
    assert lab.names["c4"] == "worker0001"
    # One snapshot: the same machine-id everywhere, told apart by the MAC.
    ids = {lab.sh(n, "cat /etc/machine-id") for n in clones}
    identities = {lab.sh(n, f"python3 {leases.LIB} identity").split()[0] for n in clones}
    print(f"machine-ids: {ids}")
    assert len(ids) == 1, "the clones share the snapshot's /etc/machine-id"
    assert len(identities) == len(clones), "each clone's MAC makes its identity its own"
    live = table(lab)
    assert {name: str(lease["hostname"]) for name, lease in live.items()} == {
        lab.names[c]: h for c, h in CLONES.items()
    }
    assert {str(lease["machine"]) for lease in live.values()} == identities


def test_an_exhausted_pool_waits_and_a_dead_clones_certificate_is_reused_after_its_lease(
    lab: Lab,
) -> None:
    victim = "c5"
    freed = lab.names[victim]
    lab.farm.kill(victim)  # a terminated spot instance: no shutdown, no release
    killed = time.monotonic()
    assert freed in table(lab), "the lease outlives the machine until its TTL"
    lab.farm.add_clones(SOURCE, [("c7", "render")])
    wait_until(
        "c7 says that it waits for an exhausted pool",
        lambda: "the pool is exhausted" in picker_log(lab, "c7"),
        30,
    )
    log = picker_log(lab, "c7")
    print(log)
    assert f"all {POOL} worker certificates are held by live machines" in log
    assert "trying again" in log
    assert holds(lab, "c7") == ""
    assert lab.farm.exec("c7", ["systemctl", "is-active", "-q", "farmhand-nebula"]).returncode
    wait_until("c7 gets the dead clone's certificate", lambda: holds(lab, "c7") == freed, TTL + 45)
    took = time.monotonic() - killed
    print(f"{freed} reused {took:.1f} s after its holder died (lease {TTL} s)")
    # The lease ends one TTL after its last renewal (at most TTL/3 before the power-off).
    assert took >= TTL - TTL // 3 - 1, "the certificate was handed out before the lease ended"
    wait_until("c7 reaches the hub", lambda: reaches_hub(lab, "c7"), 30)
    assert str(table(lab)[freed]["hostname"]) == "render"


def test_the_others_keep_their_certificates_through_renewals(lab: Lab) -> None:
    for name in ("c1", "c2", "c3", "c4", "c6"):
        assert holds(lab, name) == lab.names[name]
    renewed = [float(str(x["renewed"])) for x in table(lab).values()]
    assert max(renewed) - min(renewed) <= TTL, "every live lease was renewed within a TTL"


def test_after_a_reissue_and_new_secrets_an_old_image_cannot_join_and_new_clones_can(
    lab: Lab,
) -> None:
    """Issue 15: ``keys reissue-workers`` and ``keys rotate lease-claim-key smb-password``,
    then the hub is redeployed. A clone of the image made before (old claim key, old
    certificates) is refused; the image redeployed with the new bundle makes clones that
    claim distinct new certificates and reach the hub and the share. The old Samba password
    is refused by the hub's smbd, the new one accepted."""
    farm = lab.farm
    for name in [*CLONES, "c7"]:
        if name != "c5":  # c5 was killed
            farm.poweroff(name)
    store = KeyStore.open(prov.store_dir(farm))
    old_fingerprints = {e.fingerprint for e in store.register.by_role(Role.WORKER)}
    prov.ensure_smbclient(farm, "hub")
    old_auth = prov.smb_auth_file(farm, "hub")
    lab.sh("hub", f"mv {old_auth} /root/old-smb-auth")
    lifecycle.reissue_workers(store, prov.lab_passphrase(farm))
    lifecycle.rotate(
        KeyStore.open(store.root), ["lease-claim-key", "smb-password"], prov.lab_passphrase(farm)
    )
    prov.deploy_role(farm, Role.HUB, ["hub"])

    def smb_on_hub(auth: str) -> subprocess.CompletedProcess[str]:
        return farm.exec(
            "hub", ["smbclient", f"//{HUB_OVERLAY}/farm", "-A", auth, "-m", "SMB3", "-c", "ls"]
        )

    refused = smb_on_hub("/root/old-smb-auth")
    assert refused.returncode != 0
    assert "NT_STATUS_LOGON_FAILURE" in refused.stdout + refused.stderr
    accepted = smb_on_hub(prov.smb_auth_file(farm, "hub"))
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr

    # The old image: its claim key is refused, and its certificates are on the blocklist.
    farm.add_clones(SOURCE, [("old1", "render")])
    time.sleep(30)
    log = picker_log(lab, "old1")
    print(f"--- old1\n{log}")
    assert holds(lab, "old1") == ""
    assert not reaches_hub(lab, "old1")
    assert not {str(lease["hostname"]) for lease in table(lab).values()} & {"render"}
    farm.kill("old1")

    # The image, redeployed with the new workers bundle, makes clones that join.
    farm.start(SOURCE)
    prov.deploy_role(farm, Role.WORKER, [SOURCE])
    farm.poweroff(SOURCE)
    farm.add_clones(SOURCE, [("new1", "render"), ("new2", "render")])
    held: dict[str, str] = {}

    def claimed() -> bool:
        held.update({n: holds(lab, n) for n in ("new1", "new2")})
        return all(held.values()) and len(set(held.values())) == 2

    wait_until("both new clones hold distinct certificates", claimed, 120, every=1)
    for name in ("new1", "new2"):
        wait_until(f"{name} reaches the hub", functools.partial(reaches_hub, lab, name), 60)
        fingerprint = lab.sh(name, f"nebula-cert print -json -path {NEBULA_CERT}")
        assert json.loads(fingerprint)["fingerprint"] not in old_fingerprints
    prov.ensure_smbclient(farm, "new1")
    listed = farm.exec(
        "new1",
        ["smbclient", f"//{HUB_OVERLAY}/farm", "-A", SMB_CREDENTIALS, "-m", "SMB3", "-c", "ls"],
    )
    assert listed.returncode == 0, listed.stdout + listed.stderr


def test_a_ca_rollover_through_the_deploys_keeps_old_and_new_certificates_talking(
    lab: Lab,
) -> None:
    """Issue 15: ``keys ca-rollover`` in its three steps, each deployed for real. After the
    middle step only the hub and new1 are redeployed: new1 runs a certificate of the new CA,
    new2 still one of the old, and they reach each other and the hub."""
    farm = lab.farm
    root = prov.store_dir(farm)
    secret = prov.lab_passphrase(farm)

    def issuer(name: str) -> str:
        shown = lab.sh(name, f"nebula-cert print -json -path {NEBULA_CERT}")
        return str(json.loads(shown)["details"]["issuer"])

    def pings(source: str, address: str) -> bool:
        return farm.exec(source, ["ping", "-c", "1", "-W", "1", address]).returncode == 0

    def overlay(name: str) -> str:
        return f"10.87.99.{int(holds(lab, name)[-4:])}"

    def all_talk(step: str) -> None:
        for source, target in (("new1", "new2"), ("new2", "new1")):
            address = overlay(target)
            wait_until(
                f"{step}: {source} reaches {target} ({address})",
                functools.partial(pings, source, address),
                60,
            )
        for name in ("new1", "new2"):
            wait_until(
                f"{step}: {name} reaches the hub", functools.partial(reaches_hub, lab, name), 60
            )

    def deploy(hub: bool, workers: list[str]) -> None:
        with ThreadPoolExecutor(max_workers=2) as pool:
            jobs = [pool.submit(prov.deploy_role, farm, Role.WORKER, workers)] if workers else []
            if hub:
                jobs.append(pool.submit(prov.deploy_role, farm, Role.HUB, ["hub"]))
            for job in jobs:
                job.result()

    old_ca = KeyStore.open(root).ca.fingerprint
    rollover.begin(KeyStore.open(root), secret)
    new_ca = KeyStore.open(root).ca.fingerprint
    deploy(True, ["new1", "new2"])
    assert lab.sh("new2", f"grep -c 'BEGIN NEBULA CERTIFICATE' {NEBULA_CA}").strip() == "2"
    all_talk("begin")

    rollover.reissue(KeyStore.open(root), secret)
    deploy(True, ["new1"])
    wait_until("new1 runs a certificate of the new CA", lambda: issuer("new1") == new_ca, 60)
    assert issuer("new2") == old_ca
    all_talk("reissue, new2 not yet redeployed")

    deploy(False, ["new2"])
    wait_until("new2 runs a certificate of the new CA", lambda: issuer("new2") == new_ca, 60)
    rollover.finish(KeyStore.open(root), secret)
    deploy(True, ["new1", "new2"])
    assert lab.sh("new2", f"grep -c 'BEGIN NEBULA CERTIFICATE' {NEBULA_CA}").strip() == "1"
    all_talk("finish")
    assert issuer("new1") == issuer("new2") == new_ca
