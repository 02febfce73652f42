"""What ``farmhand status`` knows of the farm: from a bundle or from ``farmhand join``'s
config folder, never a private key (the SMB password only)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from ipaddress import IPv4Address

from farmhand.errors import UsageError
from farmhand.join.paths import JoinPaths
from farmhand.join.state import load_state
from farmhand.keystore.bundle import Bundle, Peer
from farmhand.keystore.plan import FarmPlan, Role
from farmhand.model.smb import smb_account
from farmhand.nebula.cert import certificate_from_pem


@dataclass(frozen=True)
class FarmView:
    """What status needs to know about the farm: no private key, one SMB login only."""

    plan: FarmPlan
    peers: tuple[Peer, ...]
    blocklist: frozenset[str]
    ca_pem: bytes
    member: str
    member_ip: str
    member_not_after: int
    smb_user: str
    smb_password: str
    nebula: str = ""

    @classmethod
    def from_bundle(cls, bundle: Bundle) -> FarmView:
        host = bundle.hosts[0] if bundle.role is not Role.WORKER else None
        account = smb_account(bundle)  # a workers bundle: its first certificate's account
        return cls(
            plan=bundle.plan,
            peers=bundle.peers,
            blocklist=bundle.blocklist,
            ca_pem=bundle.ca_pem,
            member=host.name if host else "",
            member_ip=str(host.ip.ip) if host else "",
            member_not_after=host.certificate.details.not_after if host else 0,
            smb_user=account.user,
            smb_password=account.password,
        )

    @classmethod
    def from_join(cls, paths: JoinPaths) -> FarmView:
        """The farm as ``farmhand join`` left it in the config folder (no passphrase needed)."""
        state = load_state(paths)
        try:
            meta = json.loads(paths.farm.read_text(encoding="utf-8"))
            own = certificate_from_pem(paths.cert.read_bytes())
            return cls(
                plan=FarmPlan.from_dict(meta["plan"]),
                peers=tuple(Peer.from_dict(p) for p in meta.get("peers", ())),
                blocklist=frozenset(meta.get("blocklist", ())),
                ca_pem=paths.ca.read_bytes(),
                member=state.boss,
                member_ip=state.overlay_ip,
                member_not_after=own.details.not_after,
                smb_user=state.smb_user,
                smb_password=paths.smb_password.read_text(encoding="utf-8").strip(),
                nebula=state.nebula,
            )
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise UsageError(f"{paths.dir} is damaged ({exc}): run 'farmhand join' again") from None

    @property
    def hub_ip(self) -> str:
        return str(self.plan.addresses.hub)

    def workers(self) -> tuple[Peer, ...]:
        return tuple(p for p in self.peers if p.role is Role.WORKER)


def worker_price(plan: FarmPlan) -> tuple[float, str] | None:
    """(price per worker-hour, currency) from farm.toml, or None when no price is set."""
    price = plan.settings.worker_hourly_price
    return None if price is None else (price, plan.settings.currency)


def view_from(paths: JoinPaths, bundle: Bundle | None) -> FarmView:
    if bundle is not None:
        return FarmView.from_bundle(bundle)
    if not paths.joined():
        raise UsageError(
            f"this machine has not joined a farm ({paths.dir} is empty): run 'farmhand join', "
            "or give --bundle FILE"
        )
    return FarmView.from_join(paths)


def is_ip(text: str) -> bool:
    try:
        IPv4Address(text)
    except ValueError:
        return False
    return True
