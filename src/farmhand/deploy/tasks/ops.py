"""The operation sequences the tasks share (pyinfra keeps its own in pyinfra/operations/util/).

A managed service: its unit files installed, systemd reloaded when they changed, the service
running and enabled, and restarted (or reloaded) when anything it reads changed, unless it was
just started (a start reads everything anew). pyinfra's ``systemd.service(daemon_reload=...)``
does not fit: it is decided when the deploy is built, before the units are uploaded, so it could
only reload on every run (never a quiet second deploy) or never.

A step run once per digest: done once, its digest remembered in a root-only stamp file under
/var/lib/farmhand, done again only when the digest changes (a password set through a tool that
cannot tell whether it already holds it).

Persistent SELinux labels: pyinfra's ``selinux.file_context_mapping`` per path (``semanage
fcontext``, never ``chcon``, which a relabel undoes), then ``restorecon`` over what exists,
only when a mapping changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Literal

from pyinfra.api.operation import OperationMeta
from pyinfra.context import host
from pyinfra.facts.server import Command
from pyinfra.operations import selinux, server, systemd
from pyinfra.operations.util import any_changed

from farmhand.deploy.tasks import files as farm_files
from farmhand.hostfiles.base import HostFile
from farmhand.model.paths import FARMHAND_STATE, SYSTEMD_DIR

OnChange = Literal["restart", "reload", "nothing"]


def install_units(label: str, units: Iterable[HostFile]) -> list[OperationMeta]:
    """Install ``units`` (unit files and drop-ins); reload systemd when any of them changed."""
    installed = farm_files.install(units)
    systemd.daemon_reload(name=f"Reload systemd units ({label})", _if=any_changed(*installed))
    return installed


def restart_on_change(
    service: str,
    changed: Sequence[OperationMeta],
    started: OperationMeta,
    *,
    name: str,
    on_change: OnChange = "restart",
) -> OperationMeta | None:
    """Restart (or reload) ``service`` when any of ``changed`` changed, unless ``started``
    (the operation that keeps it running) has just started it."""
    if on_change == "nothing":
        return None
    check = any_changed(*changed)
    return systemd.service(
        name=name,
        service=service,
        restarted=on_change == "restart",
        reloaded=on_change == "reload",
        _if=lambda: check() and not started.did_change(),
    )


def managed_service(
    label: str,
    service: str,
    units: Iterable[HostFile],
    *,
    depends: Sequence[OperationMeta] = (),
    on_change: OnChange = "restart",
    start_name: str | None = None,
    restart_name: str | None = None,
) -> OperationMeta:
    """``service`` from its ``units``: installed, systemd reloaded if they changed, running and
    enabled, and restarted (``on_change``) when the units or ``depends`` (its config, keys...)
    changed but it was not just started; re-enabled when its own unit file changed, so that
    the links its ``[Install]`` section asks for (``WantedBy=``) follow the file on a host
    deployed before. Returns the operation that keeps it running."""
    units = tuple(units)
    installed = install_units(label, units)
    own_unit = [
        op
        for item, op in zip((u for u in units if not u.at_boot), installed, strict=True)
        if item.path == f"{SYSTEMD_DIR}/{service}"
    ]
    if own_unit:
        server.shell(
            name=f"Re-enable {service} (its unit file changed)",
            commands=[f"systemctl reenable {service}"],
            _if=any_changed(*own_unit),
        )
    started = systemd.service(
        name=start_name or f"{service} running and enabled",
        service=service,
        enabled=True,
        running=True,
    )
    verb = "Reload" if on_change == "reload" else "Restart"
    restart_on_change(
        service,
        [*depends, *installed],
        started,
        name=restart_name or f"{verb} {service} after its files changed",
        on_change=on_change,
    )
    return started


def once_per_digest(
    name: str, stamp: str, digest: str, commands: Sequence[str]
) -> OperationMeta | None:
    """Run ``commands`` unless ``stamp`` (a root-only file under /var/lib/farmhand, whose folder
    the deploy's first step makes) holds ``digest``; then remember ``digest`` there. ``digest``
    should be of what the step applies (sha256 of a password), never the thing itself."""
    if not stamp.startswith(f"{FARMHAND_STATE}/"):
        raise ValueError(f"a stamp file belongs under {FARMHAND_STATE}: {stamp}")
    applied = host.get_fact(Command, command=f"cat {stamp} 2>/dev/null || true")
    if (applied or "").strip() == digest:
        return None
    return server.shell(
        name=name,
        commands=[*commands, f"umask 077 && echo {digest} > {stamp} && chmod 600 {stamp}"],
    )


def selinux_labels(what: str, mappings: Sequence[tuple[str, str]], restore: str) -> None:
    """``mappings`` of (path expression, SELinux type), then ``restore`` (a restorecon command)
    when any was added or changed. pyinfra finds a mapping by grepping ``semanage fcontext
    -l`` for the expression as a basic regular expression that must match exactly one line:
    paths written out (``/srv/farmhand(/.*)?``, where ``(``, ``)``, ``?`` and ``.`` match
    themselves), never a pattern like ``[^/]+``, which would never be found and be added on
    every run."""
    changed = [
        selinux.file_context_mapping(
            name=f"SELinux: {target} is {se_type}", target=target, se_type=se_type
        )
        for target, se_type in mappings
    ]
    server.shell(name=f"SELinux: restorecon {what}", commands=[restore], _if=any_changed(*changed))
