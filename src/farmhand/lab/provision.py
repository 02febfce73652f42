"""Turning lab containers into a farm with the real tools, then proving it works.

``farmhand lab up`` = containers (farm.py) + keygen + the same pyinfra deploys users run over
SSH + checks of what a farm must do. Everything here goes through public entry points: the key
store, the deploy runner and ssh into the hosts.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from farmhand.deploy.runner import DeployError, DeployReport, run_deploy
from farmhand.deploy.target import Target
from farmhand.errors import LabError
from farmhand.keystore import pki
from farmhand.keystore.bundle import bundle_filename
from farmhand.keystore.fs import write_new
from farmhand.keystore.plan import Role, new_plan
from farmhand.keystore.store import KeyStore, is_store
from farmhand.lab.farm import LabFarm
from farmhand.model.host import SMB_PORT, SSH_PORT
from farmhand.model.smb import WORKER_SMB_KEY, worker_password
from farmhand.settings import RenderManager

Say = Callable[[str], None]
LAB_FARM_NAME = "lab"
LAB_DEPLOY_DATA = {"farmhand_apt_update": False, "farmhand_mounts": False, "farmhand_queue": False}
"""What lab deploys leave out: the index refresh (the image carries its packages), the mounts
and the render queue, except Slurm's (:func:`deploy_data`), which needs no download."""
LAB_PLAN_SETTINGS = {"idle_after_minutes": 0, "idle_max_uptime_minutes": 0}
"""Lab workers never power themselves off: a container sees the whole machine's CPU, and a
user exploring the lab should not find workers gone after half an hour."""


@dataclass(frozen=True)
class Check:
    """One thing the lab proved (or failed to)."""

    claim: str
    passed: bool
    detail: str = ""


def store_dir(farm: LabFarm) -> Path:
    return farm.state_dir / "keys"


def passphrase_file(farm: LabFarm) -> Path:
    return farm.state_dir / "passphrase"


def lab_passphrase(farm: LabFarm) -> str:
    """The lab farm's passphrase: random, made once, kept 0600 in the lab's state folder."""
    path = passphrase_file(farm)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        write_new(path, secrets.token_urlsafe(24).encode(), 0o600)
    return path.read_text().strip()


def ensure_keys(farm: LabFarm, workers: int, say: Say) -> KeyStore:
    root = store_dir(farm)
    if not is_store(root):
        say(f"keygen: CA, hub, {workers} workers and boss1 into {root}")
        plan = new_plan(name=LAB_FARM_NAME, hub_address=str(farm.address("hub")))
        plan = plan.with_settings(**LAB_PLAN_SETTINGS)
        pki.create_farm(root, plan, workers, ["boss1"], lab_passphrase(farm))
    return KeyStore.open(root)


def targets(farm: LabFarm, names: list[str], user: str = "root") -> list[Target]:
    """Lab hosts as deploy targets; a ``user`` other than root deploys through sudo."""
    return [
        Target(
            host=str(farm.address(name)),
            user=user,
            key=str(farm.key_path),
            known_hosts="/dev/null",
            strict_host_keys="off",
            name=name,
        )
        for name in names
    ]


def deploy_role(
    farm: LabFarm, role: Role, names: list[str], bundle: str = "", user: str = "root"
) -> DeployReport:
    """Run the real deploy for ``role`` on lab hosts, from the desk namespace (as ``user``)."""
    store = store_dir(farm)
    path = store / (bundle or bundle_filename(role))
    report = run_deploy(
        role,
        path,
        lab_passphrase(farm),
        targets(farm, names, user),
        data=deploy_data(farm),
        netns=farm.desk_namespace,
    )
    if not report.ok:
        raise DeployError(f"lab {role.value} deploy: {report.failure_message()}")
    return report


def slurm_farm(farm: LabFarm) -> bool:
    """Whether the lab's farm runs Slurm (the default render manager)."""
    return KeyStore.open(store_dir(farm)).plan.settings.render_manager is RenderManager.SLURM


def deploy_data(farm: LabFarm) -> dict[str, bool]:
    """The lab's deploy data: with the queue when it is Slurm (the distribution's packages,
    in the image's offline cache), without it otherwise (the Deadline and Flamenco lab tests
    deploy theirs from stand-in installers)."""
    return {**LAB_DEPLOY_DATA, "farmhand_queue": slurm_farm(farm)}


def sinfo_nodes(farm: LabFarm) -> dict[str, str]:
    """Each Slurm node's state as the hub's sinfo reports it (``worker0001: idle``)."""
    result = farm.exec("hub", ["timeout", "20", "sinfo", "-h", "-N", "-o", "%N %t"])
    return dict(line.split() for line in result.stdout.splitlines() if len(line.split()) == 2)


def provision(farm: LabFarm, say: Say, boss: bool = True) -> dict[str, DeployReport]:
    """keygen (once) and deploy hub, workers and (``boss``) boss1; returns each role's report.
    ``farmhand lab up`` leaves boss1 out: it joins with ``farmhand join``, as a laptop does."""
    names = [r.name for r in farm.records()]
    workers = [n for n in names if n.startswith("worker")]
    ensure_keys(farm, max(len(workers), 1), say)
    reports = {}
    started = time.monotonic()
    say("deploying the hub")
    reports["hub"] = deploy_role(farm, Role.HUB, ["hub"])
    say(f"deploying {len(workers)} workers")
    reports["workers"] = deploy_role(farm, Role.WORKER, workers)
    if boss:
        say("deploying boss1")
        boss_bundle = bundle_filename(Role.BOSS, "boss1")
        reports["boss"] = deploy_role(farm, Role.BOSS, ["boss1"], boss_bundle)
    say(f"deploys done in {time.monotonic() - started:.1f} s")
    return reports


def add_sudo_user(farm: LabFarm, name: str, user: str) -> None:
    """Give host ``name`` a login like ``ubuntu@`` or ``vagrant@``: the lab key, passwordless
    sudo, no root powers of its own."""
    script = (
        f"id -u {user} >/dev/null 2>&1 || useradd --create-home --shell /bin/bash {user}; "
        f"install -d -m 700 -o {user} -g {user} /home/{user}/.ssh; "
        f"install -m 600 -o {user} -g {user} /root/.ssh/authorized_keys "
        f"/home/{user}/.ssh/authorized_keys; "
        f"echo '{user} ALL=(ALL) NOPASSWD:ALL' > /etc/sudoers.d/90-{user}; "
        f"chmod 440 /etc/sudoers.d/90-{user}"
    )
    farm.exec(name, ["sh", "-c", script], check=True)


def overlay_ip(farm: LabFarm, name: str) -> str:
    entry = KeyStore.open(store_dir(farm)).register.get(name)
    if entry is None:
        raise LabError(f"no certificate named {name} in the lab's key store")
    return str(entry.ip)


def ping(farm: LabFarm, source: str, address: str, tries: int = 20) -> bool:
    """Overlay reachability, allowing a few seconds for handshakes."""
    for _ in range(tries):
        result = farm.exec(source, ["ping", "-c", "1", "-W", "1", address])
        if result.returncode == 0:
            return True
        time.sleep(0.5)
    return False


def tcp_open(farm: LabFarm, source: str, address: str, port: int) -> bool:
    """Whether ``source`` can open a TCP connection to ``address:port`` (bash's /dev/tcp)."""
    probe = f"exec 3<>/dev/tcp/{address}/{port}"
    result = farm.exec(source, ["timeout", "3", "bash", "-c", probe])
    return result.returncode == 0


def desk_tcp_open(farm: LabFarm, address: str, port: int) -> bool:
    probe = f"exec 3<>/dev/tcp/{address}/{port}"
    result = farm.run_in_desk(["timeout", "3", "bash", "-c", probe], timeout=10)
    return result.returncode == 0


def smb_auth_file(farm: LabFarm, name: str) -> str:
    """Give ``name`` an smbclient auth file (sent over ssh stdin, never in a command line)
    with its own account: a worker's (named like its certificate), else the bosses'."""
    store = KeyStore.open(store_dir(farm))
    vault = store.unlock(lab_passphrase(farm))
    if name.startswith("worker"):
        user, password = name, worker_password(vault.extras[WORKER_SMB_KEY.name], name)
    else:
        user, password = store.plan.farm_user, vault.smb_password
    path = "/root/.farmhand-smb-auth"
    farm.exec(
        name,
        ["sh", "-c", f"umask 077 && cat > {path}"],
        input=f"username={user}\npassword={password}\n",
        check=True,
    )
    return path


def ensure_smbclient(farm: LabFarm, name: str) -> None:
    farm.exec(
        name,
        [
            "sh",
            "-c",
            "command -v smbclient >/dev/null || "
            "DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-download smbclient",
        ],
        check=True,
    )


def smb(farm: LabFarm, name: str, command: str, share: str = "farm") -> str:
    """Run an smbclient command on ``name`` against the hub's share, over the overlay."""
    hub = overlay_ip(farm, "hub")
    auth = smb_auth_file(farm, name)
    result = farm.exec(
        name,
        ["smbclient", f"//{hub}/{share}", "-A", auth, "-m", "SMB3", "-c", command],
    )
    if result.returncode != 0:
        raise LabError(f"smbclient on {name} failed: {result.stderr.strip() or result.stdout}")
    return result.stdout


def prove(farm: LabFarm, say: Say) -> list[Check]:
    """The farm's promises, checked from the hosts themselves."""
    names = [r.name for r in farm.records()]
    workers = [n for n in names if n.startswith("worker")]
    hub_overlay = overlay_ip(farm, "hub")
    hub_underlay = str(farm.address("hub"))
    checks = [
        Check(
            f"boss1 reaches the hub over the overlay ({hub_overlay})",
            ping(farm, "boss1", hub_overlay),
        ),
    ]
    for worker in workers:
        address = overlay_ip(farm, worker)
        checks.append(
            Check(
                f"boss1 reaches {worker} over the overlay ({address})", ping(farm, "boss1", address)
            )
        )
        checks.append(
            Check(f"{worker} reaches the hub over the overlay", ping(farm, worker, hub_overlay))
        )
    say("checking the shares over SMB")
    token = secrets.token_hex(8)
    for host in ("boss1", workers[0]):
        ensure_smbclient(farm, host)
    try:
        farm.exec("boss1", ["sh", "-c", f"echo {token} > /tmp/farmhand-proof.txt"], check=True)
        smb(farm, "boss1", "cd scenes; put /tmp/farmhand-proof.txt proof.txt")
        smb(farm, workers[0], "cd scenes; get proof.txt /tmp/farmhand-proof.txt")
        read = farm.exec(workers[0], ["cat", "/tmp/farmhand-proof.txt"]).stdout.strip()
        checks.append(
            Check(f"a file boss1 wrote to the hub's share is read by {workers[0]}", read == token)
        )
    except LabError as exc:
        checks.append(
            Check("a file boss1 wrote to the hub's share is read by a worker", False, str(exc))
        )
    checks += [
        Check(
            f"the hub's underlay address answers SSH ({hub_underlay}:{SSH_PORT})",
            desk_tcp_open(farm, hub_underlay, SSH_PORT),
        ),
        Check(
            f"the hub's underlay address does not answer SMB ({hub_underlay}:{SMB_PORT})",
            not desk_tcp_open(farm, hub_underlay, SMB_PORT),
        ),
        Check(
            "the hub cannot open a connection to the boss (SSH over the overlay)",
            not tcp_open(farm, "hub", overlay_ip(farm, "boss1"), SSH_PORT),
        ),
    ]
    if slurm_farm(farm):
        say("asking the hub's Slurm controller for its nodes")
        nodes: dict[str, str] = {}
        for _ in range(30):  # slurmd registers within seconds of its start
            nodes = sinfo_nodes(farm)
            if all(nodes.get(w) == "idle" for w in workers):
                break
            time.sleep(1)
        listed = ", ".join(f"{w} {nodes.get(w, 'missing')}" for w in workers)
        checks.append(
            Check(
                f"sinfo on the hub lists the workers as idle Slurm nodes ({listed})",
                all(nodes.get(w) == "idle" for w in workers),
            )
        )
    if len(workers) > 1:
        checks.append(
            Check(
                f"{workers[0]} cannot SSH to {workers[1]} over the overlay",
                not tcp_open(farm, workers[0], overlay_ip(farm, workers[1]), SSH_PORT),
            )
        )
    return checks
