"""The lease table (onhost/leases.py): claim, renew, expire, release and every conflict, applied
by the hub's ``handle`` to real files under its lock, and the worker's machine identity.

The hub-side script is this same module, so what runs here is what runs on the hub; the
end-to-end path through OpenSSH is in tests/test_leases_ssh.py and tests/test_lab_clones.py.
"""

from __future__ import annotations

import ast
import json
import os
import stat
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from farmhand.model.paths import FARMHAND_ETC, FARMHAND_LIB, SHARES_ROOT
from farmhand.onhost import leases

TTL = 60
T0 = 1_800_000_000
MACHINES = [f"{n:032x}" for n in range(1, 10)]
A, B, C = MACHINES[:3]
BOOT = "b0" * 16


def pool(n: int, not_after: int = T0 + 10**8) -> list[dict[str, Any]]:
    return [
        {"name": f"worker{i:04d}", "ip": f"10.87.99.{i}", "not_after": not_after}
        for i in range(1, n + 1)
    ]


class Hub:
    """The hub's files in a temporary folder; ``ask`` runs one request at a given time."""

    def __init__(self, root: Path, size: int = 3, ttl: int = TTL) -> None:
        self.root = root
        (root / "state").mkdir()
        (root / "share").mkdir()
        self.table_path = root / "state/leases.json"
        self.published_path = root / "share/leases.json"
        self.pool_path = root / "lease-pool.json"
        self.set_pool(pool(size), ttl)

    def set_pool(self, entries: list[dict[str, Any]], ttl: int = TTL) -> None:
        self.pool_path.write_text(json.dumps({"ttl": ttl, "pool": entries}))

    def ask(self, now: int, op: str, machine: str, name: str = "", **extra: Any) -> dict[str, Any]:
        request = {
            "op": op,
            "machine": machine,
            "boot": extra.pop("boot", BOOT),
            "hostname": extra.pop("hostname", "box"),
            "name": name,
        }
        source = extra.pop("source", "")
        return leases.handle(
            {**request, **extra},
            table_path=str(self.table_path),
            lock_path=str(self.root / "state/lock"),
            pool_path=str(self.pool_path),
            published_path=str(self.published_path),
            now=now,
            source=source,
        )

    def name(self, answer: dict[str, Any]) -> str:
        assert answer["ok"], answer
        return str(answer["lease"]["name"])

    def published(self) -> dict[str, Any]:
        return dict(json.loads(self.published_path.read_text()))


@pytest.fixture
def hub(tmp_path: Path) -> Hub:
    return Hub(tmp_path)


def test_claims_get_distinct_certificates_and_the_same_machine_keeps_its_own(hub: Hub) -> None:
    got = [hub.name(hub.ask(T0, "claim", m)) for m in (A, B, C)]
    assert got == ["worker0003", "worker0002", "worker0001"], "the highest number first"
    assert hub.name(hub.ask(T0 + 5, "claim", B)) == "worker0002", "asking again changes nothing"
    table = hub.published()
    assert table["ttl"] == TTL
    assert table["updated"] == T0 + 5
    assert [(x["name"], x["ip"], x["machine"]) for x in table["leases"]] == [
        ("worker0001", "10.87.99.1", C),
        ("worker0002", "10.87.99.2", B),
        ("worker0003", "10.87.99.3", A),
    ]
    b = table["leases"][1]
    assert (b["since"], b["renewed"], b["expires"]) == (T0, T0 + 5, T0 + 5 + TTL)
    assert set(b) == {"name", "ip", "machine", "hostname", "since", "renewed", "expires"}


def test_an_exhausted_pool_refuses_and_says_when_a_lease_may_end(hub: Hub) -> None:
    for m in (A, B, C):
        hub.ask(T0, "claim", m)
    answer = hub.ask(T0 + 1, "claim", MACHINES[3])
    assert (answer["ok"], answer["reason"]) == (False, "exhausted")
    assert "all 3 worker certificates are held by live machines" in answer["message"]
    when = leases._when(T0 + TTL)
    assert f"the first lease to end unless renewed ends at {when}" in answer["message"]
    # It says when, never which certificate or machine: anyone with the claim key may ask.
    assert not any(f"worker000{i}" in answer["message"] for i in (1, 2, 3))
    assert not any(m[:12] in answer["message"] for m in (A, B, C))
    assert len(hub.published()["leases"]) == 3


def test_a_lease_that_is_not_renewed_ends_after_the_ttl(hub: Hub) -> None:
    for m in (A, B, C):
        hub.ask(T0, "claim", m)
    assert hub.ask(T0 + 30, "renew", A, "worker0003")["ok"]
    assert hub.ask(T0 + 30, "renew", C, "worker0001")["ok"]
    # B's lease ends at T0 + TTL: one second before, the pool is still exhausted.
    assert hub.ask(T0 + TTL - 1, "claim", MACHINES[3])["reason"] == "exhausted"
    assert hub.name(hub.ask(T0 + TTL, "claim", MACHINES[3])) == "worker0002"
    # B comes back (its renewal was late): it lost its certificate and must pick again.
    late = hub.ask(T0 + TTL + 1, "renew", B, "worker0002")
    assert (late["ok"], late["reason"]) == (False, "lost")
    assert late["message"] == "worker0002 is now held by another machine"
    assert MACHINES[3][:12] not in late["message"], "never who holds it"


def test_an_ended_lease_nobody_took_is_renewed_again(hub: Hub) -> None:
    hub.ask(T0, "claim", A)
    answer = hub.ask(T0 + TTL + 100, "renew", A, "worker0003")
    assert answer["ok"]
    assert answer["lease"]["expires"] == T0 + 2 * TTL + 100


def test_release_frees_at_once_and_only_by_its_holder(hub: Hub) -> None:
    for m in (A, B, C):
        hub.ask(T0, "claim", m)
    stranger = hub.ask(T0 + 1, "release", MACHINES[3], "worker0002")
    assert stranger == {"ok": True, "ttl": TTL, "released": False}
    assert hub.ask(T0 + 1, "claim", MACHINES[3])["reason"] == "exhausted"
    assert hub.ask(T0 + 2, "release", B, "worker0002")["released"] is True
    assert "worker0002" not in {x["name"] for x in hub.published()["leases"]}
    assert hub.name(hub.ask(T0 + 3, "claim", MACHINES[3])) == "worker0002"


def test_a_returning_machine_prefers_its_last_certificate(hub: Hub) -> None:
    assert hub.name(hub.ask(T0, "claim", A)) == "worker0003"
    assert hub.name(hub.ask(T0, "claim", B)) == "worker0002"
    hub.ask(T0 + 1, "release", A, "worker0003")
    hub.ask(T0 + 1, "release", B, "worker0002")
    assert hub.name(hub.ask(T0 + 2, "claim", B, boot="02" * 16)) == "worker0002"
    assert hub.name(hub.ask(T0 + 2, "claim", C)) == "worker0003"
    assert hub.name(hub.ask(T0 + 2, "claim", A)) == "worker0001"


def test_a_host_named_like_a_certificate_waits_and_never_moves_a_live_holder(hub: Hub) -> None:
    """Every worker has the claim key and names itself: a workerNNNN hostname is no proof, so
    it never takes a certificate from a live holder (one that renews), named or not."""
    assert hub.name(hub.ask(T0, "claim", A, hostname="render")) == "worker0003"
    waiting = hub.ask(T0 + 1, "claim", B, "worker0003", hostname="worker0003")
    assert (waiting["ok"], waiting["reason"]) == (False, "taken")
    assert "held by another live machine" in waiting["message"]
    assert "this host waits for it" in waiting["message"]
    assert A[:12] not in waiting["message"]
    assert "render" not in waiting["message"]
    # The holder is not told to move: it renews and keeps its certificate, again and again.
    for t in range(T0 + 2, T0 + 3 * TTL, TTL // 3):
        kept = hub.ask(t, "renew", A, "worker0003", hostname="render")
        assert kept["ok"], kept
        assert hub.ask(t, "claim", B, "worker0003", hostname="worker0003")["reason"] == "taken"
    assert hub.name(hub.ask(T0 + 3 * TTL, "claim", A, hostname="render")) == "worker0003"
    assert [x["machine"] for x in hub.published()["leases"]] == [A]
    # Once the holder lets go (or stops renewing), the named host gets it.
    assert hub.ask(T0 + 3 * TTL + 1, "release", A, "worker0003")["released"] is True
    assert hub.name(hub.ask(T0 + 3 * TTL + 2, "claim", B, "worker0003")) == "worker0003"
    assert hub.name(hub.ask(T0 + 3 * TTL + 3, "claim", A, hostname="render")) == "worker0002"
    # A holder that asked by name is not moved either: the second host of that name waits.
    again = hub.ask(T0 + 3 * TTL + 4, "claim", C, "worker0003", hostname="worker0003")
    assert "held by another live machine" in again["message"]
    assert hub.ask(T0 + 3 * TTL + 5, "renew", B, "worker0003")["ok"]


def test_a_worker_hostname_asks_for_its_own_certificate(hub: Hub) -> None:
    assert hub.name(hub.ask(T0, "claim", A, "worker0003", hostname="worker0003")) == "worker0003"
    taken = hub.ask(T0 + 1, "claim", B, "worker0003", hostname="worker0003")
    assert (taken["ok"], taken["reason"]) == (False, "taken")
    assert "worker0003 is held by another live machine" in taken["message"]
    assert "hostname" not in taken["message"]
    assert A[:12] not in taken["message"]
    # The same machine renamed to worker0002 moves: its old lease ends with the new grant.
    assert hub.name(hub.ask(T0 + 2, "claim", A, "worker0002")) == "worker0002"
    assert [x["name"] for x in hub.published()["leases"]] == ["worker0002"]
    unknown = hub.ask(T0 + 3, "claim", C, "worker0099")
    assert unknown["reason"] == "unknown"


def test_one_source_holds_at_most_half_the_pool_and_brings_few_new_machines(
    tmp_path: Path,
) -> None:
    """Random machine ids from one address cannot drain the pool: it holds at most
    per_source certificates at once (half the pool by default) and brings at most that many
    machines the hub has never seen per TTL; other addresses still get theirs."""
    hub = Hub(tmp_path, size=6)
    attacker, other = "203.0.113.7", "198.51.100.2"
    randoms = [os.urandom(16).hex() for _ in range(6)]
    got = [hub.ask(T0, "claim", m, source=attacker) for m in randoms]
    assert [a["ok"] for a in got] == [True, True, True, False, False, False]
    refused = got[3]
    assert refused["reason"] == "limit"
    assert refused["message"].startswith(
        f"this address {attacker} already holds 3 worker certificate(s), the most one address "
        "may hold at once (lease_per_source in farm.toml)"
    )
    for text in (a["message"] for a in got[3:]):
        assert not any(m[:12] in text for m in randoms[:3]), "never another machine's id"
        assert not any(a["lease"]["name"] in text for a in got[:3]), "nor its certificate"
    # Asking again, or renewing, is no new lease: it does not count against the bound.
    first = got[0]["lease"]["name"]
    assert hub.name(hub.ask(T0 + 1, "claim", randoms[0], source=attacker)) == first
    assert hub.ask(T0 + 1, "renew", randoms[0], first, source=attacker)["ok"]
    # "Renewing" a free certificate is a claim too, and bounded the same way.
    free = sorted({f"worker{i:04d}" for i in range(1, 7)} - {a["lease"]["name"] for a in got[:3]})
    stolen = hub.ask(T0 + 1, "renew", randoms[4], free[0], source=attacker)
    assert (stolen["ok"], stolen["reason"]) == (False, "limit")
    # The pool still has free certificates for everyone else.
    assert hub.name(hub.ask(T0 + 2, "claim", A, source=other)) == free[-1]
    assert len(hub.published()["leases"]) == 4
    # Letting one go frees a place, but not for yet another new machine within the TTL...
    assert hub.ask(T0 + 3, "release", randoms[1], got[1]["lease"]["name"])["released"] is True
    churn = hub.ask(T0 + 4, "claim", randoms[5], source=attacker)
    assert (churn["ok"], churn["reason"]) == (False, "limit")
    assert "brought 3 new machines to the hub within 60 s" in churn["message"]
    # ...while a machine the hub knows comes back at once, and new ones after the TTL.
    assert hub.name(hub.ask(T0 + 5, "claim", randoms[1], boot="02" * 16, source=attacker))
    assert hub.ask(T0 + 6, "claim", randoms[5], source=attacker)["reason"] == "limit"
    assert hub.ask(T0 + TTL + 1, "release", randoms[1], got[1]["lease"]["name"], boot="02" * 16)
    renewed = [
        hub.ask(T0 + TTL, "renew", m, a["lease"]["name"], source=attacker)
        for m, a in ((randoms[0], got[0]), (randoms[2], got[2]))
    ]
    assert all(a["ok"] for a in renewed)
    assert hub.ask(T0 + TTL + 2, "claim", randoms[1], source=attacker)["ok"]
    assert hub.ask(T0 + TTL + 3, "claim", randoms[5], source=attacker)["reason"] == "limit"


def test_the_bound_per_source_can_be_set_for_workers_behind_one_address(tmp_path: Path) -> None:
    hub = Hub(tmp_path, size=4)
    hub.pool_path.write_text(json.dumps({"ttl": TTL, "pool": pool(4), "per_source": 4}))
    nat = "192.0.2.1"
    assert [hub.ask(T0, "claim", m, source=nat)["ok"] for m in MACHINES[:4]] == [True] * 4
    assert hub.ask(T0, "claim", MACHINES[4], source=nat)["reason"] == "exhausted"
    assert leases.load_pool(str(hub.pool_path))["per_source"] == 4
    hub.set_pool(pool(7))
    assert leases.load_pool(str(hub.pool_path))["per_source"] == 4, "7 // 2, rounded up"


@pytest.mark.parametrize(
    ("environ", "source"),
    [
        ({"SSH_CONNECTION": "203.0.113.7 51234 10.0.0.1 22"}, "203.0.113.7"),
        ({"SSH_CLIENT": "198.51.100.2 51234 22"}, "198.51.100.2"),
        ({"SSH_CONNECTION": "2001:db8:1:2:aaaa::7 5 2001:db8::1 22"}, "2001:db8:1:2::/64"),
        ({"SSH_CONNECTION": "::ffff:192.0.2.9 5 ::1 22"}, "192.0.2.9"),
        ({"SSH_CONNECTION": "fe80::1%eth0 5 fe80::2 22"}, "fe80::/64"),
        ({}, ""),
        ({"SSH_CONNECTION": "nonsense"}, ""),
    ],
)
def test_the_source_is_the_address_sshd_names(environ: dict[str, str], source: str) -> None:
    assert leases.source_of(environ) == source


def _pipe_with(data: bytes, close: bool) -> int:
    read, write = os.pipe()
    os.write(write, data)
    if close:
        os.close(write)
    return read


def test_a_request_must_arrive_whole_within_the_deadline_and_the_size_cap() -> None:
    now = [100.0]

    def clock() -> float:
        now[0] += 6.0  # every look at the clock: six seconds later
        return now[0]

    # A request that never ends (stdin stays open) is cut off at the deadline.
    with pytest.raises(leases.Refused, match="no complete request within 10 s") as exc:
        leases.read_request(_pipe_with(b'{"op": ', close=False), seconds=10.0, clock=clock)
    assert exc.value.reason == "timeout"
    assert now[0] == 118.0, "it stopped at the first look past the deadline"
    # One that is too long is refused at once, without reading it to its end.
    with pytest.raises(leases.Refused, match="request too long") as exc:
        leases.read_request(_pipe_with(b"x" * (leases.MAX_REQUEST + 10), close=False))
    assert exc.value.reason == "bad-request"
    assert leases.read_request(_pipe_with(b"{}", close=True)) == b"{}"


def test_expired_and_revoked_certificates_are_never_handed_out(hub: Hub) -> None:
    entries = pool(3)
    entries[0]["not_after"] = T0 - 1  # worker0001's certificate has expired
    hub.set_pool(entries)
    assert hub.name(hub.ask(T0, "claim", A)) == "worker0003"
    assert hub.name(hub.ask(T0, "claim", B)) == "worker0002"
    assert hub.ask(T0, "claim", C)["reason"] == "exhausted"
    hub.set_pool(pool(3)[:2])  # worker0003 revoked: the next bundle has no peer of that name
    gone = hub.ask(T0 + 1, "renew", A, "worker0003")
    assert (gone["ok"], gone["reason"]) == (False, "unknown")


@pytest.mark.parametrize(
    "request_",
    [
        None,
        [],
        {"op": "steal", "machine": A},
        {"op": "claim", "machine": "not-hex"},
        {"op": "claim", "machine": A, "name": "../../etc/passwd"},
        {"op": "renew", "machine": A},
    ],
)
def test_bad_requests_are_refused_and_change_nothing(hub: Hub, request_: Any) -> None:
    answer = leases.handle(
        request_,
        table_path=str(hub.table_path),
        lock_path=str(hub.root / "state/lock"),
        pool_path=str(hub.pool_path),
        published_path=str(hub.published_path),
        now=T0,
    )
    assert (answer["ok"], answer["reason"]) == (False, "bad-request")
    assert not hub.table_path.exists()


def test_files_are_written_atomically_with_their_modes_and_a_damaged_table_is_kept(
    hub: Hub,
) -> None:
    hub.ask(T0, "claim", A)
    for path in (hub.table_path, hub.published_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in hub.table_path.parent.iterdir()) == ["leases.json", "lock"]
    hub.table_path.write_text("{not json")
    assert hub.name(hub.ask(T0 + 1, "claim", B)) == "worker0003"
    assert (hub.table_path.parent / f"leases.json.damaged-{T0 + 1}").read_text() == "{not json"


def _claim_in_a_process(args: tuple[str, str]) -> dict[str, Any]:
    root, machine = args
    env = {**os.environ, "PYTHONPATH": str(Path(leases.__file__).parents[2])}
    code = (
        "import json, sys; from farmhand.onhost import leases; r = leases.handle("
        f"{{'op': 'claim', 'machine': '{machine}', 'boot': '{machine}', 'hostname': 'render'}}, "
        f"table_path='{root}/state/leases.json', lock_path='{root}/state/lock', "
        f"pool_path='{root}/lease-pool.json', published_path='{root}/share/leases.json'); "
        "print(json.dumps(r))"
    )
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return dict(json.loads(out.stdout))


def test_simultaneous_claims_from_many_processes_never_share_a_certificate(
    tmp_path: Path,
) -> None:
    hub = Hub(tmp_path, size=6)
    with ThreadPoolExecutor(max_workers=9) as pool_:
        answers = list(pool_.map(_claim_in_a_process, [(str(tmp_path), m) for m in MACHINES]))
    granted = [a["lease"]["name"] for a in answers if a["ok"]]
    assert sorted(granted) == [f"worker{i:04d}" for i in range(1, 7)]
    assert sorted(a["reason"] for a in answers if not a["ok"]) == ["exhausted"] * 3
    assert len(hub.published()["leases"]) == 6


def _identity(
    tmp_path: Path, macs: dict[str, str], default: str, machine_id: str = "0123" * 8
) -> str:
    route = tmp_path / "route"
    tmp_path.mkdir(parents=True, exist_ok=True)
    route.write_text(
        "Iface\tDestination\tGateway\n"
        + (f"{default}\t00000000\t0102A8C0\n" if default else "")
        + "eth9\t0000A8C0\t00000000\n"
    )
    (tmp_path / "machine-id").write_text(machine_id + "\n")
    return leases.machine_identity(
        str(tmp_path / "machine-id"), str(route), sorted(macs), lambda name: macs[name]
    )


def test_machine_identity_tells_clones_apart_by_the_default_route_mac(tmp_path: Path) -> None:
    one = _identity(tmp_path / "a", {"lo": "", "eth0": "aa:00:00:00:00:01"}, "eth0")
    two = _identity(tmp_path / "b", {"lo": "", "eth0": "aa:00:00:00:00:02"}, "eth0")
    assert one != two
    assert one == _identity(tmp_path / "a2", {"lo": "", "eth0": "aa:00:00:00:00:01"}, "eth0")
    assert len(one) == 32
    other_id = _identity(tmp_path / "a3", {"eth0": "aa:00:00:00:00:01"}, "eth0", "4567" * 8)
    assert other_id != one, "the machine-id counts too"
    # The default-route card counts, not the first by name; without a route, the first real one.
    cards = {"eth0": "aa:00:00:00:00:01", "ens5": "aa:00:00:00:00:09"}
    routed = _identity(tmp_path / "c", cards, "eth0")
    unrouted = _identity(tmp_path / "d", cards, "")
    assert routed == one
    assert unrouted == _identity(tmp_path / "e", {"ens5": "aa:00:00:00:00:09"}, "")
    assert routed != unrouted


def test_the_real_identity_and_boot_id_have_their_shape() -> None:
    assert len(leases.machine_identity()) == 32
    assert leases.boot_id() == leases.boot_id()
    assert len(leases.boot_id()) == 32


def test_two_boots_with_one_identity_never_share_a_certificate(hub: Hub) -> None:
    """Clones whose identity collides (same machine-id and MAC), or a machine that crashed and
    booted again: a live lease belongs to one boot; the other boot waits or gets another."""
    first = hub.name(hub.ask(T0, "claim", A, "worker0001", boot="01" * 16))
    second = hub.name(hub.ask(T0, "claim", A, boot="02" * 16))
    assert first != second
    taken = hub.ask(T0, "claim", A, first, boot="03" * 16)
    assert taken["reason"] == "taken"
    assert "an earlier boot of this machine" in taken["message"]
    assert hub.ask(T0 + 1, "renew", A, first, boot="02" * 16)["reason"] == "lost"
    assert hub.ask(T0 + 1, "release", A, first, boot="02" * 16)["released"] is False
    # After the crashed boot's lease ends, the machine gets its certificate back.
    assert hub.name(hub.ask(T0 + TTL + 1, "claim", A, first, boot="03" * 16)) == first


def test_the_module_runs_alone_on_a_bare_python(tmp_path: Path) -> None:
    """Hubs and workers have no farmhand installed: only the standard library, and nothing
    newer than Python 3.6 (EL 8) offers, such as dataclasses or postponed annotations."""
    tree = ast.parse(Path(leases.__file__).read_text())
    imported = {
        a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    imported |= {
        n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
    }
    assert imported <= sys.stdlib_module_names
    assert not imported & {"__future__", "dataclasses"}
    copy = tmp_path / "leases.py"
    copy.write_bytes(Path(leases.__file__).read_bytes())
    result = subprocess.run(
        ["/usr/bin/python3", "-I", str(copy), "identity"], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    identity, boot = result.stdout.split()
    assert identity == leases.machine_identity()
    assert boot == leases.boot_id()


def test_its_own_paths_sit_where_the_rest_of_farmhand_puts_things() -> None:
    """The module travels alone, so it names its paths itself: under model/paths.py's roots."""
    assert f"{FARMHAND_LIB}/leases.py" == leases.LIB
    for path in (leases.HUB_POOL, leases.WORKER_CONFIG, leases.WORKER_DIR):
        assert path.startswith(f"{FARMHAND_ETC}/"), path
    assert f"{SHARES_ROOT}/farm/.farmhand" == leases.PUBLISHED_DIR
