"""Everything a deploy needs from the controller: the decrypted bundle, the host model and its
rendered files. The bundle is opened once per pyinfra run, in memory, on the controller."""

from __future__ import annotations

import os
from pathlib import Path

from pyinfra.context import host, state
from pyinfra.facts.server import Command, LinuxDistribution

from farmhand.errors import FarmhandError, UsageError
from farmhand.hostfiles import host_files
from farmhand.hostfiles.base import HostFiles
from farmhand.keystore.bundle import Bundle, open_bundle
from farmhand.keystore.plan import Role
from farmhand.model.distro import distro_from_os_release
from farmhand.model.host import HostModel, host_model
from farmhand.passphrase import ENV_VAR as PASSPHRASE_ENV
from farmhand.passphrase import resolve_passphrase

_BUNDLES: dict[tuple[str, int], Bundle] = {}


def _bundle(path: Path) -> Bundle:
    try:
        key = (str(path.resolve()), path.stat().st_mtime_ns)
    except FileNotFoundError:
        raise UsageError(f"no such keybundle: {path}") from None
    if key not in _BUNDLES:
        passphrase_file = host.data.get("farmhand_passphrase_file")
        passphrase = resolve_passphrase(Path(passphrase_file) if passphrase_file else None, None)
        # Run as plain pyinfra (FARMHAND_PASSPHRASE=… pyinfra …): what the deploy runs on
        # @local inherits this process's environment, so the passphrase leaves it once read.
        os.environ.pop(PASSPHRASE_ENV, None)
        _BUNDLES[key] = open_bundle(path, passphrase)
    return _BUNDLES[key]


def _key_login_works() -> bool:
    """True when the account we deploy through has an SSH public key authorised."""
    user = host.data.get("ssh_user") or "root"
    probe = f"grep -sqE '^(ssh-|ecdsa-|sk-)' ~{user}/.ssh/authorized_keys && echo yes || echo no"
    return host.get_fact(Command, command=probe) == "yes"


def load(role: Role) -> tuple[HostModel, HostFiles]:
    """The model and rendered files of the current host, for a deploy of ``role``: exactly what
    ``farmhand files`` shows for it (no task renders anything itself)."""
    if state.config.DIFF:
        raise FarmhandError(
            "farmhand deploys refuse --diff: it would print keys and passwords; "
            "review with 'farmhand files' instead"
        )
    bundle_path = host.data.get("farmhand_bundle")
    if not bundle_path:
        raise UsageError("no keybundle given: set the host data farmhand_bundle=PATH")
    bundle = _bundle(Path(bundle_path))
    if bundle.role is not role:
        raise UsageError(
            f"{bundle_path} is a {bundle.role.value} bundle; this deploy needs a {role.value} one"
        )
    release = host.get_fact(LinuxDistribution)
    distro = distro_from_os_release(release.get("release_meta") or {})
    model = host_model(
        bundle,
        host=host.data.get("farmhand_host") or "",
        hub_address=host.data.get("farmhand_hub_address") or "",
        distro=distro,
        # farmhand_ssh_port: sshd's own port when we connect through a forward (Vagrant).
        ssh_ports=(int(host.data.get("farmhand_ssh_port") or host.data.get("ssh_port") or 22),),
        key_logins_work=role is not Role.BOSS and _key_login_works(),
    )
    return model, host_files(model)


def preload(path: Path, bundle: Bundle) -> None:
    """Hand an already opened bundle to the deploys (the engine opens it once, up front)."""
    _BUNDLES[(str(path.resolve()), path.stat().st_mtime_ns)] = bundle
