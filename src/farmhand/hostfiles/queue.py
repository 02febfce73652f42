"""The render queue's files on a hub or worker: the artifact fetcher (component ``queue``), and
the files the farm's render manager declares (its configs, units and TLS keys), in the
components it names (``mongodb``, ``deadline-client``, ``flamenco``...)."""

from __future__ import annotations

from collections.abc import Callable

from farmhand.hostfiles.base import HostFile
from farmhand.keystore.plan import Role
from farmhand.model.host import HostModel
from farmhand.model.paths import FETCH, MOUNTS_ROOT, OPT, QUEUE_ETC, SHARES_ROOT
from farmhand.queue import manager_for
from farmhand.queue.artifacts import BLENDER, blender_path
from farmhand.queue.base import QueueFile, blender_autoexec_flag
from farmhand.queue.deadline import tls as tls  # the CLI's boss client certificate

Expand = Callable[..., bytes]


def queue_files(model: HostModel, expand: Expand) -> dict[str, list[HostFile]]:
    """The queue's files for a hub or worker, by component (bosses install their client
    themselves)."""
    if model.role is Role.BOSS:
        return {}
    spec = manager_for(model.plan)
    ctx = {
        "queue": spec.service(),
        "queue_etc": QUEUE_ETC,
        "opt": OPT,
        "shares_root": SHARES_ROOT,
        "mounts_root": MOUNTS_ROOT,
        "blender_linux": blender_path(model.distro),
        "blender_version": BLENDER.version,
        "blender_args": f"-b {blender_autoexec_flag(model.plan)}",
    }
    parts = {"queue": [HostFile(FETCH, expand("queue/fetch-artifact.py.j2", **ctx), 0o755)]}
    for item in spec.host_files(model):
        parts.setdefault(item.component, []).append(_host_file(item, expand, ctx))
    return parts


def _host_file(item: QueueFile, expand: Expand, ctx: dict[str, object]) -> HostFile:
    content = expand(item.template, **ctx, **item.values) if item.template else item.content
    return HostFile(
        item.path, content, item.mode, secret=item.secret, group=item.group, owner=item.owner
    )
