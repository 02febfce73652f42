"""Host model + templates/ -> the files a host gets: the single place Jinja2 runs."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

import jinja2

from farmhand import hosts as h
from farmhand import idle, leases
from farmhand.errors import FarmhandError, UsageError
from farmhand.hosts import HostModel
from farmhand.keystore.extras import LEASE_HOST_KEY
from farmhand.keystore.fs import atomic_write
from farmhand.keystore.plan import Role
from farmhand.resources import data_dir

SYSTEMD_DIR = "/etc/systemd/system"


@dataclass(frozen=True)
class RenderedFile:
    """One file for a host. ``secret`` files never go through a diff; ``at_boot`` files are
    made on the host when it boots (a worker's chosen certificate), not by the deploy."""

    path: str
    content: bytes = field(repr=False)
    mode: int = 0o644
    secret: bool = False
    at_boot: bool = False

    @property
    def text(self) -> str:
        return self.content.decode()


@dataclass(frozen=True)
class Tuning:
    """Nebula's data-path settings (see bench/lab for the measurements behind them)."""

    mtu: int
    dev: str = h.NEBULA_DEV
    tx_queue: int = h.TX_QUEUE
    socket_buffer: int = h.SOCKET_BUFFER


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(data_dir("templates"))),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - config files, not HTML
    )


def unit_name_for_path(path: str, suffix: str) -> str:
    """systemd's unit name for a mount point (``/mnt/a/b`` -> ``mnt-a-b.mount``)."""
    parts = PurePosixPath(path).parts[1:]
    escaped = [
        "".join(c if c.isalnum() or c in "_." else f"\\x{ord(c):02x}" for c in p) for p in parts
    ]
    return "-".join(escaped) + suffix


def nebula_paths(nebula_dir: str = h.NEBULA_DIR, sep: str = "/") -> dict[str, str]:
    """Where a host's Nebula config, CA, certificate and key live (``sep``: the host's OS)."""
    return {
        "dir": nebula_dir,
        "config": f"{nebula_dir}{sep}config.yml",
        "ca": f"{nebula_dir}{sep}ca.crt",
        "cert": f"{nebula_dir}{sep}host.crt",
        "key": f"{nebula_dir}{sep}host.key",
        "pool": f"{nebula_dir}{sep}pool",
    }


def render_join_files(
    model: HostModel, nebula_dir: str, *, sep: str = "/", tun_dev: str = h.NEBULA_DEV
) -> list[RenderedFile]:
    """A boss's Nebula config, CA, certificate and key under ``nebula_dir`` (``farmhand join``
    keeps them in the user's config folder, on Linux, macOS or Windows), from the same
    templates as ``render_host``."""
    paths = nebula_paths(nebula_dir, sep)
    files = render_host(model, paths=paths, tun_dev=tun_dev)
    wanted = {paths["config"], paths["ca"], paths["cert"], paths["key"]}
    return [f for f in files if f.path in wanted]


def render_host(
    model: HostModel, *, paths: dict[str, str] | None = None, tun_dev: str = h.NEBULA_DEV
) -> list[RenderedFile]:
    """Every file farmhand installs on ``model``'s host, as the host has them once running."""
    env = _environment()
    plan = model.bundle.plan
    paths = paths or nebula_paths()
    context = {
        "host": model,
        "plan": plan,
        "paths": paths,
        "tuning": Tuning(mtu=plan.mtu, dev=tun_dev),
        "blocklist": model.blocklist,
        "lighthouse_endpoints": model.lighthouse_endpoints,
        "listen_port": model.listen_port,
        "inbound": model.inbound_rules,
        "lib": h.FARMHAND_LIB,
        "etc": h.FARMHAND_ETC,
        "smb_port": h.SMB_PORT,
    }

    def render(template: str, **extra: object) -> bytes:
        try:
            return env.get_template(template).render(**context, **extra).encode()
        except jinja2.TemplateError as exc:
            raise FarmhandError(f"template {template} failed to render: {exc}") from None

    chosen = model.certificate
    files = [
        RenderedFile(paths["config"], render("nebula/config.yml.j2"), 0o600),
        RenderedFile(paths["ca"], model.bundle.ca_pem, 0o644),
        RenderedFile(paths["cert"], chosen.cert_pem, 0o644, at_boot=model.role is Role.WORKER),
        RenderedFile(
            paths["key"], chosen.key_pem, 0o600, secret=True, at_boot=model.role is Role.WORKER
        ),
        RenderedFile(
            f"{SYSTEMD_DIR}/farmhand-nebula.service", render("systemd/farmhand-nebula.service.j2")
        ),
        RenderedFile(f"{h.FARMHAND_ETC}/farm.json", _farm_json(model)),
    ]
    if model.role is Role.BOSS:
        return files
    files += _firewall(model, render)
    files += queue_files(model, render)
    if model.key_logins_work:
        files.append(
            RenderedFile(
                "/etc/ssh/sshd_config.d/50-farmhand.conf", render("ssh/50-farmhand.conf.j2")
            )
        )
    files += lease_files(model, render)
    if model.role is Role.HUB:
        files += [
            RenderedFile("/etc/samba/smb.conf", render("samba/smb.conf.j2")),
            RenderedFile(
                f"{SYSTEMD_DIR}/{model.distro.samba_service}.service.d/farmhand.conf",
                render("systemd/samba-overlay.conf.j2"),
            ),
            RenderedFile(
                f"{h.FARMHAND_LIB}/wait-overlay", render("farmhand/wait-overlay.sh.j2"), 0o755
            ),
            RenderedFile(
                f"{h.FARMHAND_ETC}/smb.password",
                model.smb_password.encode() + b"\n",
                0o600,
                secret=True,
            ),
        ]
    else:
        for host in model.bundle.hosts:
            files.append(RenderedFile(f"{h.NEBULA_POOL}/{host.name}.crt", host.cert_pem, 0o644))
            files.append(
                RenderedFile(f"{h.NEBULA_POOL}/{host.name}.key", host.key_pem, 0o600, secret=True)
            )
        files += [
            RenderedFile(
                f"{h.FARMHAND_ETC}/smb-credentials",
                render("farmhand/smb-credentials.j2"),
                0o600,
                secret=True,
            ),
        ]
        files += _idle_shutdown(model, render)
        for share in model.shares:
            files.append(
                RenderedFile(
                    f"{SYSTEMD_DIR}/{unit_name_for_path(share.mount_point, '.mount')}",
                    render("systemd/share.mount.j2", share=share),
                )
            )
            files.append(
                RenderedFile(
                    f"{SYSTEMD_DIR}/{unit_name_for_path(share.mount_point, '.automount')}",
                    render("systemd/share.automount.j2", share=share),
                )
            )
    return files


def lease_files(model: HostModel, render: Callable[..., bytes]) -> list[RenderedFile]:
    """The certificate leases (farmhand/leases.py): the lease service and its sshd entry on the
    hub; the picker, its renewal timer, the claim key and the hub's pinned host key on workers."""
    module = Path(leases.__file__).read_bytes()
    files = [RenderedFile(leases.LIB, b"#!/usr/bin/python3\n" + module, 0o755)]
    extras = model.bundle.extras
    if model.role is Role.HUB:
        needed = ("lease-host-key", "lease-claim-key.pub")
    else:
        needed = ("lease-claim-key", "lease-host-key.pub")
    missing = [name for name in needed if name not in extras]
    if missing:
        raise UsageError(
            f"the {model.role.value} bundle has no certificate-lease keys ({', '.join(missing)}): "
            "it comes from an older farmhand: run `farmhand keys rebundle`"
        )
    if model.role is Role.HUB:
        pool = {
            "ttl": model.lease_ttl,
            "pool": [
                {"name": p.name, "ip": str(p.ip), "not_after": p.not_after}
                for p in model.bundle.peers_of(Role.WORKER)
            ],
        }
        files += [
            RenderedFile(leases.HUB_POOL, json.dumps(pool, indent=1).encode() + b"\n"),
            RenderedFile(leases.HUB_HOST_KEY, extras["lease-host-key"], 0o600, secret=True),
            RenderedFile(
                leases.HUB_HOST_KEY + ".pub",
                LEASE_HOST_KEY.public(extras["lease-host-key"]) if LEASE_HOST_KEY.public else b"",
            ),
            RenderedFile(
                "/etc/ssh/sshd_config.d/40-farmhand-lease.conf",
                render("ssh/40-farmhand-lease.conf.j2", leases=leases),
            ),
            RenderedFile(
                leases.LEASE_AUTHORIZED_KEYS,
                render(
                    "farmhand/lease-authorized_keys.j2",
                    leases=leases,
                    claim_key=extras["lease-claim-key.pub"].decode().strip(),
                ),
            ),
        ]
        return files
    config = {
        "hub": model.hub_address,
        "hub_port": model.lease_ssh_port,
        "user": leases.LEASE_USER,
        "ttl": model.lease_ttl,
        "renew_every": model.lease_renew_every,
        "claim_key": leases.CLAIM_KEY,
        "known_hosts": leases.KNOWN_HOSTS,
        "pool_dir": h.NEBULA_POOL,
        "cert": h.NEBULA_CERT,
        "key": h.NEBULA_KEY,
        "nebula_unit": "farmhand-nebula.service",
        "pick_unit": "farmhand-pick-cert.service",
        "connect_timeout": 10,
    }
    host_key = extras["lease-host-key.pub"].decode().split()
    files += [
        RenderedFile(leases.WORKER_CONFIG, json.dumps(config, indent=1).encode() + b"\n"),
        RenderedFile(leases.CLAIM_KEY, extras["lease-claim-key"], 0o600, secret=True),
        RenderedFile(
            leases.KNOWN_HOSTS,
            f"{leases.HOST_KEY_ALIAS} {host_key[0]} {host_key[1]}\n".encode(),
        ),
        RenderedFile(
            f"{SYSTEMD_DIR}/farmhand-pick-cert.service",
            render("systemd/farmhand-pick-cert.service.j2", leases=leases),
        ),
        RenderedFile(
            f"{SYSTEMD_DIR}/farmhand-lease-renew.service",
            render("systemd/farmhand-lease-renew.service.j2", leases=leases),
        ),
        RenderedFile(
            f"{SYSTEMD_DIR}/farmhand-lease-renew.timer",
            render("systemd/farmhand-lease-renew.timer.j2", leases=leases),
        ),
    ]
    return files


def queue_files(model: HostModel, render: Callable[..., bytes]) -> list[RenderedFile]:
    """The render queue's files (farmhand.queuefiles chooses them; Jinja2 runs here)."""
    from farmhand.queuefiles import queue_files as chosen  # it imports RenderedFile from here

    return chosen(model, render)


def _firewall(model: HostModel, render: Callable[[str], bytes]) -> list[RenderedFile]:
    if model.distro.firewall == "nftables":
        return [
            RenderedFile(
                f"{h.FARMHAND_ETC}/nftables.conf", render("firewall/nftables.conf.j2"), 0o644
            ),
            RenderedFile(
                f"{SYSTEMD_DIR}/farmhand-firewall.service",
                render("systemd/farmhand-firewall.service.j2"),
            ),
        ]
    return [
        RenderedFile(
            "/etc/firewalld/zones/farmhand-overlay.xml", render("firewall/farmhand-overlay.xml.j2")
        )
    ]


def _idle_shutdown(model: HostModel, render: Callable[..., bytes]) -> list[RenderedFile]:
    """A worker's idle shutdown: the decision script, the farm's settings, timer and service."""
    extra = {
        "idle": idle.IdleSettings.from_farm(model.plan.settings),
        "idle_env": idle.IDLE_ENV,
        "idle_local_env": idle.IDLE_LOCAL_ENV,
        "idle_script": idle.IDLE_SCRIPT,
    }
    units = "systemd/farmhand-idle"
    return [
        RenderedFile(idle.IDLE_SCRIPT, render("farmhand/idle-check.sh.j2", **extra), 0o755),
        RenderedFile(idle.IDLE_ENV, render("farmhand/idle-settings.env.j2", **extra)),
        RenderedFile(f"{SYSTEMD_DIR}/{idle.IDLE_SERVICE}", render(f"{units}.service.j2", **extra)),
        RenderedFile(f"{SYSTEMD_DIR}/{idle.IDLE_TIMER}", render(f"{units}.timer.j2", **extra)),
    ]


def render_text(template: str, **context: object) -> str:
    """One template outside a host's files (cloud-init user-data), with the same settings."""
    try:
        return _environment().get_template(template).render(**context)
    except jinja2.TemplateError as exc:
        raise FarmhandError(f"template {template} failed to render: {exc}") from None


def _farm_json(model: HostModel) -> bytes:
    """What tools on the host (status, the picker) need to know, without secrets."""
    data = {
        "role": model.role.value,
        "name": model.name if model.role is not Role.WORKER else None,
        "farm": model.bundle.plan.name,
        "network": str(model.bundle.plan.network),
        "hub_overlay_ip": str(model.hub_overlay_ip),
        "hub_address": model.hub_address,
        "port": model.bundle.plan.port,
        "shares": [s.name for s in model.shares],
    }
    return json.dumps(data, indent=1).encode() + b"\n"


def write_tree(files: list[RenderedFile], out: Path) -> list[Path]:
    """Lay ``files`` out under ``out`` as on the host (``out/etc/...``), with their modes."""
    written = []
    for item in files:
        target = out / item.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, item.content, item.mode)
        written.append(target)
    return written


def render_template(template: str, **context: object) -> bytes:
    """One template from templates/ with ``context`` (farmhand join's service files)."""
    try:
        return _environment().get_template(template).render(**context).encode()
    except jinja2.TemplateError as exc:
        raise FarmhandError(f"template {template} failed to render: {exc}") from None
