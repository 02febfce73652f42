"""The lease table (onhost/leases.py): claim, renew, expire, release and every conflict, applied
by the hub's ``handle`` to real files under its lock, and the worker's machine identity.

The hub-side script is this same module, so what runs here is what runs on the hub; the
end-to-end path through OpenSSH is in tests/test_leases_ssh.py and tests/test_lab_clones.py.
"""

from __future__ import annotations

import ast
import errno
import json
import os
import shutil
import stat
import subprocess
import sys
import time
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
    # ...but the worker hears that it had lapsed: it ran without a lease, and starts over.
    assert answer["lapsed"] is True
    assert answer["now"] == T0 + TTL + 100
    assert "lapsed" not in hub.ask(T0 + TTL + 101, "renew", A, "worker0003")


def test_release_frees_at_once_and_only_by_its_holder(hub: Hub) -> None:
    for m in (A, B, C):
        hub.ask(T0, "claim", m)
    stranger = hub.ask(T0 + 1, "release", MACHINES[3], "worker0002")
    assert stranger == {"ok": True, "ttl": TTL, "released": False, "now": T0 + 1}
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


def test_serve_answers_in_json_when_the_hub_itself_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    request = {"op": "claim", "machine": A, "boot": BOOT, "hostname": "h", "name": ""}
    monkeypatch.setattr(leases, "read_request", lambda: json.dumps(request).encode())
    monkeypatch.setenv("SSH_CONNECTION", "203.0.113.7 5 10.0.0.1 22")
    assert leases.serve(pool_path=str(tmp_path / "missing.json")) == 0
    answer = json.loads(capsys.readouterr().out)
    assert (answer["ok"], answer["reason"]) == (False, "hub-error")
    assert "No such file or directory" in answer["message"]
    (tmp_path / "hub").mkdir()
    hub = Hub(tmp_path / "hub")
    paths = {
        "table_path": str(hub.table_path),
        "lock_path": str(hub.root / "state/lock"),
        "pool_path": str(hub.pool_path),
        "published_path": str(hub.published_path),
    }
    assert leases.serve(**paths) == 0
    granted = json.loads(capsys.readouterr().out)
    assert granted["ok"], granted
    assert granted["lease"]["source"] == "203.0.113.7", "the source sshd named"


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


def test_files_are_written_durably_with_their_modes_and_a_damaged_table_is_kept(
    hub: Hub,
) -> None:
    hub.ask(T0, "claim", A)
    for path in (hub.table_path, hub.published_path):
        assert stat.S_IMODE(path.stat().st_mode) == 0o644
    journal = hub.table_path.parent / "leases.json.unsaved"
    assert sorted(p.name for p in hub.table_path.parent.iterdir()) == [
        "leases.json",
        "leases.json.unsaved",
        "lock",
    ]
    assert journal.stat().st_size == 4096, "room for unsaved renewals, made while there is room"
    assert leases.read_journal(str(journal)) == []
    # Each write keeps the table it replaces as .prev (a hard link, no copy).
    assert hub.ask(T0 + 1, "renew", A, "worker0003")["ok"]
    prev = leases.parse_table((hub.table_path.parent / "leases.json.prev").read_text())
    assert [(x["name"], x["expires"]) for x in prev["leases"]] == [("worker0003", T0 + TTL)]
    assert leases.parse_table(hub.table_path.read_text())["leases"][0]["expires"] == T0 + 1 + TTL
    # A damaged table is kept for a human and never replaced by an empty one (which would give
    # worker0003 away while A runs it): the last good copy is used, and for one TTL nothing
    # is granted, because the damaged table may have held a lease the copy does not.
    hub.table_path.write_text("{not json")
    waiting = hub.ask(T0 + 2, "claim", B)
    assert (waiting["ok"], waiting["reason"]) == (False, "paused")
    assert "the hub restored its lease table from the last good copy" in waiting["message"]
    assert (hub.table_path.parent / f"leases.json.damaged-{T0 + 2}").read_text() == "{not json"
    assert hub.published()["grants_paused_until"] == T0 + 2 + TTL
    # A renewal the copy proves (this very boot held it) is answered; another one is not.
    assert hub.ask(T0 + 3, "renew", A, "worker0003")["ok"]
    unproven = hub.ask(T0 + 3, "renew", B, "worker0001")
    assert (unproven["ok"], unproven["reason"]) == (False, "paused")
    assert hub.ask(T0 + 1 + TTL, "claim", B)["reason"] == "paused"
    assert hub.name(hub.ask(T0 + 2 + TTL, "claim", B)) == "worker0002", "not A's"
    assert "grants_paused_until" not in hub.published()
    # Both the table and its copy damaged: nothing is granted or renewed until every lease they
    # could hold has ended (a TTL after either was last written), then a new table.
    last_write = T0 + 100
    for path in (hub.table_path, hub.table_path.parent / "leases.json.prev"):
        path.write_text("{not json")
        os.utime(path, (last_write, last_write))
    for op, machine, name in (("renew", A, "worker0003"), ("claim", C, "")):
        answer = hub.ask(last_write + 1, op, machine, name)
        assert (answer["ok"], answer["reason"]) == (False, "hub-table"), answer
        assert "nor a good copy of it: it grants and renews nothing until" in answer["message"]
    assert "cannot read its lease table" in hub.published()["table_error"]
    assert hub.table_path.read_text() == "{not json", "left as it is meanwhile"
    assert hub.ask(last_write + TTL, "claim", C)["reason"] == "hub-table"
    assert hub.name(hub.ask(last_write + 1 + TTL, "claim", C)) == "worker0003"
    for name in ("leases.json", "leases.json.prev"):
        kept = hub.table_path.parent / f"{name}.damaged-{last_write + 1 + TTL}"
        assert kept.read_text() == "{not json"


def test_a_damaged_journal_holds_grants_for_a_ttl_and_is_made_anew(hub: Hub) -> None:
    """The journal may hold renewals answered while the disk was full: if it cannot be read,
    no certificate is granted until a TTL after it was last written."""
    hub.ask(T0, "claim", A)
    journal = hub.table_path.parent / "leases.json.unsaved"
    journal.write_text("garbage")
    os.utime(journal, (T0 + 10, T0 + 10))
    waiting = hub.ask(T0 + 11, "claim", B)
    assert (waiting["ok"], waiting["reason"]) == (False, "paused")
    assert "journal of unsaved renewals was damaged" in waiting["message"]
    assert hub.ask(T0 + 12, "renew", A, "worker0003")["ok"], "a lease on record is renewed"
    assert leases.read_journal(str(journal)) == []
    assert journal.stat().st_size == 4096
    assert hub.ask(T0 + 10 + TTL, "claim", B)["reason"] == "paused"
    assert hub.name(hub.ask(T0 + 11 + TTL, "claim", B)) == "worker0002"


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


# --- a full disk ------------------------------------------------------------------------------

FULL_DISK_DRIVER = """
import errno, json, os, sys
from farmhand.onhost import leases

disk, pool_path, T0, TTL = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
os.makedirs(disk + "/state")
os.makedirs(disk + "/share")
table = disk + "/state/leases.json"
A, B, C = "a" * 32, "b" * 32, "c" * 32
out = {"steps": []}

def ask(now, op, machine, name=""):
    answer = leases.handle(
        {"op": op, "machine": machine, "boot": machine, "hostname": "h", "name": name},
        table_path=table, lock_path=disk + "/state/lock", pool_path=pool_path,
        published_path=disk + "/share/leases.json", now=now)
    out["steps"].append([now, op, machine[0], name, answer])
    return answer

def snapshot(key):
    with open(table, "rb") as handle:
        out[key] = handle.read().decode()
    with open(disk + "/share/leases.json") as handle:
        out[key + "_published"] = json.load(handle)

ask(T0, "claim", A)
ask(T0, "claim", B)
snapshot("before")
# Fill the disk to the last byte.
filler = os.open(disk + "/filler", os.O_WRONLY | os.O_CREAT)
for size in (4096, 1):
    try:
        while os.write(filler, b"x" * size):
            pass
    except OSError as exc:
        out["fill_error"] = exc.errno
try:
    os.write(filler, b"x")
    out["still_room"] = True
except OSError:
    out["still_room"] = False
os.close(filler)
for t in (20, 40, 60, 80):
    ask(T0 + t, "renew", A, "worker0003")
ask(T0 + 81, "claim", C)
ask(T0 + 82, "renew", B, "worker0002")
ask(T0 + 83, "release", A, "worker0003")
snapshot("during")
out["journal"] = leases.read_journal(table + ".unsaved")
out["listing"] = sorted(os.listdir(disk + "/state"))
os.unlink(disk + "/filler")
ask(T0 + 100, "claim", C)
ask(T0 + 101, "renew", A, "worker0003")
snapshot("after")
out["journal_after"] = leases.read_journal(table + ".unsaved")
print(json.dumps(out))
"""


def test_a_full_disk_keeps_live_leases_and_never_hands_a_certificate_out_twice(
    tmp_path: Path,
) -> None:
    """On a real 64 KiB tmpfs (a private mount namespace): the disk fills up while A and B
    hold leases. A keeps renewing and keeps its lease past the expiry the table on disk still
    shows; C is granted nothing; the table on disk stays whole. Once there is room again, C
    gets B's ended lease, never A's."""
    if os.geteuid() != 0 or not shutil.which("unshare"):
        pytest.skip("needs root and unshare (a tmpfs in a private mount namespace)")
    disk = tmp_path / "disk"
    disk.mkdir()
    (tmp_path / "pool.json").write_text(json.dumps({"ttl": TTL, "pool": pool(3)}))
    (tmp_path / "driver.py").write_text(FULL_DISK_DRIVER)
    script = 'mount -t tmpfs -o size=64k farmhand-full "$1" && exec "$2" "$3" "$1" "$4" "$5" "$6"'
    result = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", str(disk),
         sys.executable, str(tmp_path / "driver.py"), str(tmp_path / "pool.json"), str(T0),
         str(TTL)],
        env={**os.environ, "PYTHONPATH": str(Path(leases.__file__).parents[2])},
        capture_output=True,
        text=True,
        timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["fill_error"] == errno.ENOSPC
    assert out["still_room"] is False
    steps = {(t - T0, op, who): answer for t, op, who, _, answer in out["steps"]}
    assert steps[(0, "claim", "a")]["lease"]["name"] == "worker0003"
    assert steps[(0, "claim", "b")]["lease"]["name"] == "worker0002"
    # Live leases are kept, well past the expiry on disk (T0 + TTL): every renewal is ok, with
    # the full TTL, and says that it is in the journal.
    for t in (20, 40, 60, 80):
        renewal = steps[(t, "renew", "a")]
        assert renewal["ok"], renewal
        assert renewal["lease"]["expires"] == T0 + t + TTL
        assert "this renewal is in its journal" in renewal["warning"]
        assert "No space left on device" in renewal["warning"]
    # Nothing that would need the disk: no grant, no renewal of an ended lease, no release.
    for key in ((81, "claim", "c"), (82, "renew", "b"), (83, "release", "a")):
        assert (steps[key]["ok"], steps[key]["reason"]) == (False, "hub-disk"), steps[key]
        assert (
            "the hub cannot save its lease table (No space left on device"
            in (steps[key]["message"])
        )
    # The table on disk is whole and unchanged: it parses and holds the same leases.
    assert out["during"] == out["before"]
    assert [x["name"] for x in leases.parse_table(out["during"])["leases"]] == [
        "worker0002",
        "worker0003",
    ]
    assert out["journal"] == [["worker0003", "a" * 32, "a" * 32, T0 + 80]]
    assert not [n for n in out["listing"] if n.endswith(".tmp")], "no temporary file left"
    # The condition is published for farmhand status (rewritten in place: no room for a new
    # file), with the leases as the hub sees them.
    during = out["during_published"]
    assert during["disk_full"] is True
    assert "No space left on device" in during["write_error"]
    assert [(x["name"], x["expires"]) for x in during["leases"]] == [("worker0003", T0 + 80 + TTL)]
    # And logged for the hub's journal.
    assert "farmhand-lease: cannot save the lease table" in result.stderr
    assert "No space left on device" in result.stderr
    # Room again: C gets B's ended lease, not A's (which the table on disk shows ended at
    # T0 + TTL, but A renewed it); A's renewals are now in the table.
    assert steps[(100, "claim", "c")]["lease"]["name"] == "worker0002"
    assert steps[(101, "renew", "a")]["ok"]
    after = leases.parse_table(out["after"])
    holders = {x["name"]: x["machine"][0] for x in leases.live(after, T0 + 101)}
    assert holders == {"worker0002": "c", "worker0003": "a"}
    assert out["journal_after"] == []
    assert "write_error" not in out["after_published"]
    assert "disk_full" not in out["after_published"]


SHORT_WRITE_DRIVER = """
import json, resource, signal, sys
from farmhand.onhost import leases

root, limit, now = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
answers = []
for op, machine, name in json.loads(sys.argv[4]):
    answers.append(leases.handle(
        {"op": op, "machine": machine, "boot": machine, "hostname": "h", "name": name},
        table_path=root + "/state/leases.json", lock_path=root + "/state/lock",
        pool_path=root + "/lease-pool.json", published_path=root + "/share/leases.json",
        now=now))
print(json.dumps(answers))
"""


def test_a_short_write_never_commits_half_a_table(tmp_path: Path) -> None:
    """Files may grow no larger than a few hundred bytes (RLIMIT_FSIZE in a subprocess): every
    write of the table comes up short. It is never committed: claims are refused, the table
    stays whole, and a renewal is ok but not extended (the journal, a whole block, cannot be
    rewritten under this limit either): the lease ends when the table on disk says."""
    hub = Hub(tmp_path, size=6)
    for m in MACHINES[:3]:
        hub.ask(T0, "claim", m, boot=m, hostname="h")
    before = hub.table_path.read_bytes()
    limit = len(before) - 200
    requests = [("renew", A, "worker0006"), ("claim", MACHINES[3], ""), ("renew", B, "worker0005")]
    (tmp_path / "driver.py").write_text(SHORT_WRITE_DRIVER)
    result = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(tmp_path), str(limit), str(T0 + 20),
         json.dumps(requests)],
        env={**os.environ, "PYTHONPATH": str(Path(leases.__file__).parents[2])},
        capture_output=True,
        text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    renewed, claimed, again = json.loads(result.stdout)
    assert hub.table_path.read_bytes() == before, "the old table, whole"
    assert (claimed["ok"], claimed["reason"]) == (False, "hub-disk")
    assert "File too large" in claimed["message"]
    for answer in (renewed, again):
        assert answer["ok"], answer
        assert answer["lease"]["expires"] == T0 + TTL, "not extended: nothing could be saved"
        assert "the lease is not extended" in answer["warning"]
    assert not [p for p in hub.table_path.parent.iterdir() if p.name.endswith(".tmp")]
    assert "cannot save the lease table" in result.stderr


# --- the worker: its lease judged on clocks that keep counting through a suspend -------------


class Worker:
    """A worker's picker and renewal timer with the hub, systemctl and the clocks faked: the
    clocks are (wall clock, CLOCK_BOOTTIME) as the test sets them; time.monotonic() is not
    among them (it stops while the machine is suspended or its VM paused)."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.answers: list[dict[str, Any]] = []
        self.requests: list[dict[str, Any]] = []
        self.systemctl: list[tuple[str, ...]] = []
        self.now: tuple[float, float | None] = (1_000_000.0, 50.0)
        (root / "pool").mkdir()
        for kind in ("crt", "key"):
            (root / f"pool/worker0003.{kind}").write_text(kind)
        self.config = {
            "hub": "hub",
            "ttl": TTL,
            "renew_every": TTL // 3,
            "pool_dir": str(root / "pool"),
            "cert": str(root / "host.crt"),
            "key": str(root / "host.key"),
            "nebula_unit": "farmhand-nebula.service",
            "pick_unit": "farmhand-pick-cert.service",
        }
        self.state = root / "run/lease.json"
        monkeypatch.setattr(leases, "WORKER_STATE", str(self.state))
        monkeypatch.setattr(leases, "ask_hub", self._ask)
        monkeypatch.setattr(leases, "_systemctl", lambda *args: self.systemctl.append(args))
        monkeypatch.setattr(leases, "short_hostname", lambda: "render")

    def _ask(self, config: dict[str, Any], request: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(request)
        return self.answers.pop(0)

    def clock(self) -> tuple[float, float | None]:
        return self.now

    def later(self, wall: float, boot: float | None) -> None:
        old_boot = self.now[1]
        self.now = (
            self.now[0] + wall,
            None if boot is None or old_boot is None else old_boot + boot,
        )

    def granted(self, hub_now: int, ok: bool = True, **extra: Any) -> dict[str, Any]:
        lease = {"name": "worker0003", "ip": "10.87.99.3", "renewed": hub_now}
        return {
            "ok": ok,
            "ttl": TTL,
            "now": hub_now,
            "lease": {**lease, "expires": hub_now + TTL},
            **extra,
        }

    def stopped_nebula(self) -> bool:
        return ("stop", "farmhand-nebula.service") in self.systemctl


@pytest.fixture
def worker(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Worker:
    made = Worker(tmp_path, monkeypatch)
    made.answers.append(made.granted(T0))  # the hub's clock: far from the worker's
    assert leases.pick(made.config, attempts=1, clock=made.clock) == 0
    state = json.loads(made.state.read_text())
    assert state["name"] == "worker0003"
    assert (state["expires_at"], state["expires_boot"]) == (1_000_000.0 + TTL, 50.0 + TTL)
    assert "renewed_at" not in state, "no monotonic time"
    return made


def test_a_worker_renews_while_its_lease_lasts_by_its_own_clocks(worker: Worker) -> None:
    worker.later(TTL // 3, TTL // 3)
    worker.answers.append(worker.granted(T0 + TTL // 3))
    assert leases.renew_once(worker.config, clock=worker.clock) == 0
    assert [r["op"] for r in worker.requests] == ["claim", "renew"]
    state = json.loads(worker.state.read_text())
    assert state["expires_at"] == worker.now[0] + TTL
    assert not worker.stopped_nebula()
    # The hub cannot be reached: the lease is kept while it lasts, given up when it ends (or
    # when a failed renewal leaves less than half a renewal period).
    for _ in range(2):
        worker.later(TTL // 3, TTL // 3)
        worker.answers.append({"ok": False, "reason": "unreachable", "message": "no route"})
        assert leases.renew_once(worker.config, clock=worker.clock) == 0
        assert not worker.stopped_nebula()
    worker.later(TTL // 3, TTL // 3)
    assert leases.renew_once(worker.config, clock=worker.clock) == 1
    assert worker.stopped_nebula()
    assert not worker.state.exists()
    assert len(worker.requests) == 4, "the ended lease was not renewed"
    # A failed renewal with less than half a renewal period left gives up at once.
    worker.answers.append(worker.granted(T0 + 100))
    assert leases.pick(worker.config, attempts=1, clock=worker.clock) == 0
    worker.systemctl.clear()
    worker.later(TTL - TTL // 6, TTL - TTL // 6)
    worker.answers.append({"ok": False, "reason": "unreachable", "message": "no route"})
    assert leases.renew_once(worker.config, clock=worker.clock) == 1
    assert worker.stopped_nebula()


def test_a_worker_that_slept_through_its_expiry_treats_the_lease_as_lost(worker: Worker) -> None:
    """Suspended (or its VM paused) for longer than the TTL: the monotonic clock says hardly any
    time passed, the wall clock says the lease ended. It stops Nebula and claims again, without
    even asking the hub to renew (which might grant the ended lease back, nobody having taken
    it, but Nebula ran without one meanwhile)."""
    worker.later(TTL + 1, TTL + 1)
    assert leases.renew_once(worker.config, clock=worker.clock) == 1
    assert [r["op"] for r in worker.requests] == ["claim"], "no renewal asked for"
    assert worker.systemctl == [
        ("stop", "farmhand-nebula.service"),
        ("restart", "--no-block", "farmhand-pick-cert.service"),
        ("start", "--no-block", "farmhand-nebula.service"),
    ]
    assert not worker.state.exists()


def test_either_clock_past_the_expiry_ends_the_lease(worker: Worker) -> None:
    """A VM pause: the guest's wall clock is set right again, but its boot clock did not count
    the pause; or the wall clock was not set right yet, but the boot clock counted a suspend."""
    worker.later(TTL + 5, 1)
    assert leases.renew_once(worker.config, clock=worker.clock) == 1
    assert worker.stopped_nebula()
    worker.systemctl.clear()
    worker.answers.append(worker.granted(T0 + 500))
    assert leases.pick(worker.config, attempts=1, clock=worker.clock) == 0
    worker.later(1, TTL + 5)
    assert leases.renew_once(worker.config, clock=worker.clock) == 1
    assert worker.stopped_nebula()


def test_a_renewal_the_hub_says_had_lapsed_starts_over(worker: Worker) -> None:
    """Clocks that counted nothing (a paused VM whose clock is not set right yet): the hub's
    clock is the last word. It says the lease had ended before this renewal."""
    worker.later(5, 5)
    worker.answers.append(worker.granted(T0 + TTL + 30, lapsed=True))
    assert leases.renew_once(worker.config, clock=worker.clock) == 1
    assert worker.stopped_nebula()
    assert not worker.state.exists()


def test_a_renewal_the_hub_could_not_save_keeps_the_expiry_it_gives(worker: Worker) -> None:
    worker.later(TTL // 3, TTL // 3)
    answer = worker.granted(T0 + TTL // 3, warning="the hub cannot save its lease table")
    answer["lease"]["expires"] = T0 + TTL  # not extended
    worker.answers.append(answer)
    assert leases.renew_once(worker.config, clock=worker.clock) == 0
    state = json.loads(worker.state.read_text())
    assert state["expires_at"] == worker.now[0] + TTL - TTL // 3
    assert not worker.stopped_nebula()


def test_an_older_pickers_state_is_still_judged(worker: Worker) -> None:
    state = json.loads(worker.state.read_text())
    for key in ("expires_at", "expires_boot"):
        del state[key]
    worker.state.write_text(json.dumps({**state, "renewed_at": 0.0}))  # monotonic, long ago
    assert leases.renew_once(worker.config, clock=worker.clock) == 1
    assert worker.stopped_nebula()


def test_the_real_clocks_count_boot_time() -> None:
    wall, boot = leases.clocks()
    assert abs(wall - time.time()) < 5
    assert boot is not None
    assert boot >= time.monotonic() - 1, "CLOCK_BOOTTIME includes suspends: never behind"


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
