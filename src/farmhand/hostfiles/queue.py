"""The render queue's files on a hub or worker: the artifact fetcher, and the files the farm's
render manager declares (its config, units and TLS keys), rendered here."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import RenderedFile
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import FETCH, MOUNTS_ROOT, OPT, QUEUE_ETC, SHARES_ROOT
from farmhand.queue import MANAGERS, manager_for
from farmhand.queue.artifacts import BLENDER, blender_from_package
from farmhand.queue.base import QueueFile
from farmhand.queue.deadline import tls as tls  # the CLI's boss client certificate

Render = Callable[..., bytes]
GROUP_READABLE = {
    path: group for spec in MANAGERS.values() for path, group in spec.group_readable.items()
}
"""Secret files the service user must read (mode 0640): the group that owns them."""


def blender_path(model: HostModel) -> str:
    return "/usr/bin/blender" if blender_from_package(model.distro) else f"{OPT}/blender/blender"


def queue_files(model: HostModel, render: Render) -> list[RenderedFile]:
    """The queue's files for a hub or worker (bosses install their client themselves)."""
    if model.role is Role.BOSS:
        return []
    spec = manager_for(model.plan)
    ctx = {
        "queue": spec.service(),
        "queue_etc": QUEUE_ETC,
        "opt": OPT,
        "shares_root": SHARES_ROOT,
        "mounts_root": MOUNTS_ROOT,
        "blender_linux": blender_path(model),
        "blender_version": BLENDER.version,
    }
    files = [RenderedFile(FETCH, render("queue/fetch-artifact.py.j2", **ctx), 0o755)]
    return files + [_rendered(item, render, ctx) for item in spec.host_files(model)]


def _rendered(item: QueueFile, render: Render, ctx: dict[str, object]) -> RenderedFile:
    content = render(item.template, **ctx, **item.values) if item.template else item.content
    return RenderedFile(item.path, content, item.mode, secret=item.secret)
