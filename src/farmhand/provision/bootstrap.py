"""``farmhand bootstrap``: the role's deploy run by a host on itself (pyinfra's ``@local``).

Everything that can be wrong with the input (not root, the bundle unreachable, the wrong
passphrase, a bundle of another role, no hub address) is checked before the first change to
the host, so a failed bootstrap leaves nothing half-installed.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from farmhand.deploy.runner import DeployReport, Event, run_deploy
from farmhand.deploy.targets import parse_target
from farmhand.errors import FarmhandError, UsageError
from farmhand.keystore import age
from farmhand.keystore.bundle import Bundle, bundle_from_tar
from farmhand.keystore.plan import Role, validate_hub_address
from farmhand.model.host import host_model
from farmhand.provision.bundle_source import bundle_file, is_url


class NotRootError(FarmhandError):
    """Bootstrapping changes the whole host: packages, units, the firewall."""


@dataclass(frozen=True)
class BootstrapOptions:
    """What ``farmhand bootstrap`` was asked to do, besides the role and the bundle."""

    hub_address: str = ""
    artifacts: str = ""
    apt_update: bool = True
    mounts: bool = True
    queue: bool = True
    data: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Checked when given, before root, the bundle or the passphrase: it reaches nebula.yml.
        object.__setattr__(self, "hub_address", validate_hub_address(self.hub_address))

    def deploy_data(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "farmhand_apt_update": self.apt_update,
            "farmhand_mounts": self.mounts,
            "farmhand_queue": self.queue,
            **self.data,
        }
        if self.hub_address:
            data["farmhand_hub_address"] = self.hub_address
        if self.artifacts:
            data["farmhand_artifacts"] = (
                self.artifacts if is_url(self.artifacts) else str(Path(self.artifacts).resolve())
            )
        return data


def require_root(euid: int | None = None) -> None:
    if sys.platform != "linux":
        raise NotRootError("farmhand bootstrap sets up Linux hosts only")
    if (os.geteuid() if euid is None else euid) != 0:
        raise NotRootError(
            "farmhand bootstrap changes this whole host and must run as root (use sudo)"
        )


def open_source(path: Path, source: str, passphrase: str) -> Bundle:
    """Decrypt and check the bundle; errors name what the user gave, not a temp file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such keybundle: {source}") from None
    except OSError as exc:
        raise UsageError(f"cannot read {source}: {exc.strerror}") from None
    return bundle_from_tar(age.decrypt(data, passphrase, source), source)


def check_bundle(bundle: Bundle, role: Role, source: str, options: BootstrapOptions) -> None:
    """The bundle is for ``role`` and has all a host of that role needs."""
    if role is Role.BOSS:
        raise UsageError("bosses join with 'farmhand deploy boss --bundle FILE @local'")
    if bundle.role is not role:
        raise UsageError(
            f"{source} is a {bundle.role.value} bundle: 'farmhand bootstrap {role.value}' "
            f"needs the {role.value} one"
        )
    host_model(bundle, hub_address=options.hub_address)  # e.g. no hub address anywhere


@contextmanager
def checked_bundle(
    role: Role, source: str, passphrase: str, options: BootstrapOptions
) -> Iterator[Path]:
    """The bundle as a local file, fetched and fully checked; a download is removed after."""
    require_root()
    with bundle_file(source) as path:
        check_bundle(open_source(path, source, passphrase), role, source, options)
        yield path


def bootstrap(
    role: Role,
    source: str,
    passphrase: str,
    options: BootstrapOptions,
    *,
    on_event: Callable[[Event], None] | None = None,
) -> DeployReport:
    """Check everything, then run the ``role`` deploy on this host."""
    with checked_bundle(role, source, passphrase, options) as path:
        return run_deploy(
            role,
            path,
            passphrase,
            [parse_target("@local")],
            data=options.deploy_data(),
            on_event=on_event,
        )
