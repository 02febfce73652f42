"""``farmhand lab``: the whole farm on one Linux machine, in systemd-nspawn containers.

image.py builds the cached base image, net.py the underlay of network namespaces, nspawn.py
boots and reaches one container, farm.py ties them into a hub, workers and a boss. Needs root.
"""

from farmhand.lab.farm import HostRecord, HostStatus, LabFarm, worker_name
from farmhand.lab.image import OFFLINE_PACKAGES, ImageSpec, ensure_base_image
from farmhand.lab.net import DESK_ADDRESS, UNDERLAY, NatRouter, Underlay
from farmhand.lab.nspawn import NspawnHost, ensure_lab_key
from farmhand.lab.system import lab_root, require_host

__all__ = [
    "DESK_ADDRESS",
    "OFFLINE_PACKAGES",
    "UNDERLAY",
    "HostRecord",
    "HostStatus",
    "ImageSpec",
    "LabFarm",
    "NatRouter",
    "NspawnHost",
    "Underlay",
    "ensure_base_image",
    "ensure_lab_key",
    "lab_root",
    "require_host",
    "worker_name",
]
