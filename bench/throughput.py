"""Part 4 of the lab benchmark: overlay TCP throughput with iperf3 under Nebula setting
variants (ours as deployed, oomerfarm's, others), applied by editing the deployed config.yml and
always restored, with the results table; one module, so what is changed on the hosts and how it
is put back stay side by side."""

from __future__ import annotations

import json
import re
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.harness import BenchError
from bench.measure import NEBULA_UNIT, CpuMeter, format_mib, remote, say, wait_for_overlay
from farmhand.keystore.plan import DEFAULT_MTU
from farmhand.lab import provision
from farmhand.lab.farm import LabFarm
from farmhand.model.distro import DEBIAN_12
from farmhand.model.host import NEBULA_DEV, SMB_PORT, SOCKET_BUFFER, TX_QUEUE
from farmhand.model.paths import NEBULA_CONFIG

DEFAULT_MAX_OTHERS = 0.5
"""CPUs that processes outside the bench lab may keep busy during an iperf3 run before the run
is done again: this machine is shared (other labs, other sessions); a quiet run shows ~0.05."""

SAMBA_UNIT = DEBIAN_12.samba_service
IPERF_PORT = SMB_PORT
IPERF_PIDFILE = "/run/fhbench-iperf3.pid"


@dataclass(frozen=True)
class Variant:
    """Nebula data-path settings to try; None keeps what the deploy rendered."""

    key: str
    name: str
    mtu: int | None = None
    tx_queue: int | None = None
    buffer: int | None = None
    """Socket buffer (listen.read_buffer/write_buffer); 0 removes them (kernel default)."""

    @property
    def as_deployed(self) -> bool:
        return self.mtu is None and self.tx_queue is None and self.buffer is None

    def settings(self) -> str:
        mtu = self.mtu or DEFAULT_MTU
        tx_queue = self.tx_queue or TX_QUEUE
        buffer = SOCKET_BUFFER if self.buffer is None else self.buffer
        buffers = format_mib(buffer) if buffer else "default"
        return f"mtu {mtu}, tx_queue {tx_queue}, buffers {buffers}"


OURS = Variant("a", "ours (as deployed)")
OOMERFARM = Variant("b", "oomerfarm", mtu=1300, tx_queue=500, buffer=0)
MTU_1440 = Variant("c", "ours + mtu 1440", mtu=1440)
BREAKDOWN = (
    Variant("", "ours, default buffers", buffer=0),
    Variant("", "ours, tx_queue 500", tx_queue=500),
    Variant("", "ours, mtu 1300", mtu=1300),
)

_SETTING_LINE = re.compile(r"^(?P<indent>[ ]+)(?P<key>mtu|tx_queue|read_buffer|write_buffer):")


def apply_variant(text: str, variant: Variant) -> str:
    """The deployed config ``text`` with ``variant``'s settings; the rest stays byte for byte."""
    seen: dict[str, int] = {}
    out = []
    for line in text.splitlines(keepends=True):
        match = _SETTING_LINE.match(line)
        if match is None:
            out.append(line)
            continue
        key, indent = match["key"], match["indent"]
        seen[key] = seen.get(key, 0) + 1
        value: int | None
        if key == "mtu":
            value = variant.mtu
        elif key == "tx_queue":
            value = variant.tx_queue
        else:
            value = variant.buffer
        if value is None:
            out.append(line)
        elif value:
            out.append(f"{indent}{key}: {value}\n")
        # value == 0: the line goes, Nebula keeps the kernel's default buffers
    if seen != {"mtu": 1, "tx_queue": 1, "read_buffer": 1, "write_buffer": 1}:
        raise BenchError(
            "the deployed Nebula config no longer has exactly one mtu, tx_queue, read_buffer "
            f"and write_buffer line (found {seen}): update bench/throughput.py"
        )
    return "".join(out)


@dataclass
class Effective:
    """What the kernel shows for a host's Nebula once a variant is applied."""

    mtu: int
    qlen: int
    rcvbuf: int
    sndbuf: int


def effective(farm: LabFarm, host: str) -> Effective:
    """Read back the tun device and Nebula's UDP socket: proof the variant took effect."""
    out = remote(farm, host, f"ip -o link show {NEBULA_DEV}; ss -Hnuamp")
    link = re.search(r" mtu (\d+) .* qlen (\d+)", out)
    lines = out.splitlines()
    skmem = None
    for index, line in enumerate(lines):
        if '"nebula"' in line:
            rest = " ".join(lines[index : index + 2])
            skmem = re.search(r"skmem:\(r\d+,rb(\d+),t\d+,tb(\d+)", rest)
            break
    if link is None or skmem is None:
        raise BenchError(f"{host}: cannot read Nebula's tun device or UDP socket:\n{out}")
    return Effective(int(link[1]), int(link[2]), int(skmem[1]), int(skmem[2]))


@dataclass
class IperfRun:
    """One iperf3 run, with the CPU load around it that decides whether it counts."""

    round: int
    direction: str
    mbits: float
    retransmits: int
    lab_cpus: float = 0.0
    other_cpus: float = 0.0
    attempts: int = 1


@dataclass
class VariantResult:
    """A variant's runs over all rounds; its median is what the ratio compares."""

    variant: Variant
    effective: Effective | None = None
    runs: list[IperfRun] = field(default_factory=list)

    def of(self, direction: str) -> list[IperfRun]:
        return [r for r in self.runs if r.direction == direction]

    def median(self, direction: str) -> float:
        return statistics.median(r.mbits for r in self.of(direction))

    def retransmits(self, direction: str) -> list[int]:
        return [r.retransmits for r in self.of(direction)]


class Throughput:
    """Applies variants on the iperf3 server (the hub) and client (a worker), runs iperf3."""

    def __init__(
        self,
        farm: LabFarm,
        server: str,
        client: str,
        seconds: int,
        *,
        max_others: float,
        retries: int,
    ) -> None:
        self.farm = farm
        self.server = server
        self.client = client
        self.seconds = seconds
        self.max_others = max_others
        self.retries = retries
        self.meter = CpuMeter(farm)
        self.hosts = (server, client)
        self.server_ip = provision.overlay_ip(farm, server)
        self.deployed: dict[str, str] = {}
        self.current: Variant | None = OURS

    def prepare(self) -> None:
        """iperf3 from the image's offline apt cache; keep the deployed configs; stop smbd."""
        for host in self.hosts:
            remote(
                self.farm,
                host,
                "command -v iperf3 >/dev/null || DEBIAN_FRONTEND=noninteractive "
                "apt-get install -y -q --no-download iperf3 >/dev/null 2>&1",
            )
            self.deployed[host] = remote(self.farm, host, 'cat "$1"', NEBULA_CONFIG)
        remote(self.farm, self.server, f"systemctl stop {SAMBA_UNIT}")

    def apply(self, variant: Variant) -> Effective:
        if variant != self.current:
            for host in self.hosts:  # the hub first: the worker then handshakes with the new one
                text = self.deployed[host]
                if not variant.as_deployed:
                    text = apply_variant(text, variant)
                remote(
                    self.farm,
                    host,
                    'umask 077 && cat > "$1.fhbench" && nebula -test -config "$1.fhbench" '
                    '&& mv -f "$1.fhbench" "$1" && systemctl restart ' + NEBULA_UNIT,
                    NEBULA_CONFIG,
                    input=text,
                )
            self.current = variant
        wait_for_overlay(self.farm, self.client, self.server_ip)
        seen = {host: effective(self.farm, host) for host in self.hosts}
        server = seen[self.server]
        want_mtu = variant.mtu or DEFAULT_MTU
        want_qlen = variant.tx_queue or TX_QUEUE
        for host, got in seen.items():
            if (got.mtu, got.qlen) != (want_mtu, want_qlen):
                raise BenchError(
                    f"{host}: {NEBULA_DEV} has mtu {got.mtu} qlen {got.qlen}, "
                    f"not {want_mtu} and {want_qlen} as {variant.name} sets"
                )
            if (got.rcvbuf, got.sndbuf) != (server.rcvbuf, server.sndbuf):
                raise BenchError(f"{host}: Nebula's socket buffers differ from {self.server}'s")
        return server

    def run(self, round_: int, direction: str, label: str) -> IperfRun:
        """One iperf3 run; run again (up to ``retries`` times) while others load the CPUs."""
        for attempt in range(1, self.retries + 2):
            result = self.once(round_, direction)
            result.attempts = attempt
            if result.other_cpus <= self.max_others or not self.meter.available:
                break
            if attempt <= self.retries:
                say(
                    f"round {round_}: {label} {direction:<4} {result.mbits:6.1f} Mbit/s while "
                    f"{result.other_cpus:.2f} CPUs were busy outside the lab "
                    f"(> {self.max_others:.2f}): run again"
                )
        return result

    def once(self, round_: int, direction: str) -> IperfRun:
        # A fresh server per run, and no TCP metrics cached from the previous run (a run with
        # many losses would otherwise start the next one with a small ssthresh).
        remote(
            self.farm,
            self.server,
            "ip tcp_metrics flush all 2>/dev/null; "
            f'[ -f {IPERF_PIDFILE} ] && kill "$(cat {IPERF_PIDFILE})" 2>/dev/null; '
            f"rm -f {IPERF_PIDFILE}; "
            f'iperf3 -s -1 -D -B "$1" -p {IPERF_PORT} --pidfile {IPERF_PIDFILE} && '
            f"for i in $(seq 50); do ss -Hltn 'sport = :{IPERF_PORT}' | grep -q . && exit 0; "
            "sleep 0.1; done; exit 1",
            self.server_ip,
        )
        client = 'ip tcp_metrics flush all 2>/dev/null; exec iperf3 "$@"'
        argv = ["sh", "-c", client, "sh", "-c", self.server_ip, "-p", str(IPERF_PORT)]
        argv += ["-t", str(self.seconds), "-J", *(["-R"] if direction == "down" else [])]
        before = self.meter.sample()
        result = self.farm.host(self.client).exec(argv, timeout=self.seconds + 60)
        after = self.meter.sample()
        try:
            data: dict[str, Any] = json.loads(result.stdout)
        except ValueError:
            raise BenchError(f"iperf3 on {self.client}: {result.stderr or result.stdout}") from None
        if "error" in data:
            raise BenchError(f"iperf3 on {self.client}: {data['error']}")
        end = data["end"]
        return IperfRun(
            round_,
            direction,
            end["sum_received"]["bits_per_second"] / 1e6,
            int(end["sum_sent"].get("retransmits", 0)),
            lab_cpus=CpuMeter.lab(before, after),
            other_cpus=CpuMeter.others(before, after),
        )

    def restore(self) -> None:
        """The deployed configs back, Nebula restarted with them, iperf3 gone, smbd running."""
        for host, deployed in self.deployed.items():
            if remote(self.farm, host, 'cat "$1"', NEBULA_CONFIG) != deployed:
                remote(
                    self.farm,
                    host,
                    'umask 077 && cat > "$1.fhbench" && mv -f "$1.fhbench" "$1" '
                    f"&& systemctl restart {NEBULA_UNIT}",
                    NEBULA_CONFIG,
                    input=deployed,
                )
        self.current = OURS
        remote(
            self.farm,
            self.server,
            f'[ -f {IPERF_PIDFILE} ] && kill "$(cat {IPERF_PIDFILE})" 2>/dev/null; '
            f"rm -f {IPERF_PIDFILE}; sleep 0.5; systemctl start {SAMBA_UNIT}",
        )

    def check_restored(self) -> list[str]:
        """Problems left by the benchmark on its hosts (empty when all is as deployed)."""
        problems = []
        for host in self.hosts:
            if remote(self.farm, host, 'cat "$1"', NEBULA_CONFIG) != self.deployed[host]:
                problems.append(f"{host}: {NEBULA_CONFIG} differs from the deployed one")
        out = remote(
            self.farm, self.server, f"systemctl is-active {SAMBA_UNIT}; ss -Hltnp", check=False
        )
        if not out.startswith("active") or "smbd" not in out:
            problems.append(f"{self.server}: {SAMBA_UNIT} is not back on port {SMB_PORT}")
        return problems


def measure_throughput(
    tp: Throughput, variants: Sequence[Variant], rounds: int, directions: Sequence[str]
) -> list[VariantResult]:
    """``rounds`` interleaved rounds over ``variants`` after one uncounted warm-up run."""
    results = {v: VariantResult(v) for v in variants}
    tp.apply(variants[0])
    warm = tp.once(0, directions[0])
    say(f"warm-up run (not counted): {warm.mbits:.0f} Mbit/s")
    for round_ in range(1, rounds + 1):
        # Each round in another order, so no variant always runs right after the same one.
        shift = (round_ - 1) % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            results[variant].effective = tp.apply(variant)
            for direction in directions:
                label = f"({variant.key}) {variant.name:<24}"
                run = tp.run(round_, direction, label)
                results[variant].runs.append(run)
                say(
                    f"round {round_}: {label} {direction:<4} "
                    f"{run.mbits:6.1f} Mbit/s, {run.retransmits:>6,} retransmits"
                    + (
                        f"; CPUs busy: lab {run.lab_cpus:.2f}, others {run.other_cpus:.2f}"
                        if tp.meter.available
                        else ""
                    )
                )
    return list(results.values())


def print_throughput(
    results: list[VariantResult], direction: str, tp: Throughput, baseline: VariantResult
) -> None:
    """Report section 4 for one direction: a table of all variants against ``baseline``."""
    arrow = f"{tp.client} -> {tp.server}" if direction == "up" else f"{tp.server} -> {tp.client}"
    print(
        f"\n4. overlay TCP throughput {arrow} (iperf3, {tp.seconds} s runs, "
        f"{len(baseline.of(direction))} interleaved rounds; Mbit/s at the receiver)"
    )
    base = baseline.median(direction)
    rows = [("settings", "mtu/qlen", "sockbuf", "Mbit/s per run", "median", "retransmits", "ratio")]
    for r in results:
        eff = r.effective
        marks = [
            "*" if tp.meter.available and x.other_cpus > tp.max_others else ""
            for x in r.of(direction)
        ]
        rows.append(
            (
                f"({r.variant.key}) {r.variant.name}",
                f"{eff.mtu}/{eff.qlen}" if eff else "-",
                format_mib(eff.rcvbuf) if eff else "-",
                " ".join(f"{x.mbits:.0f}{m}" for x, m in zip(r.of(direction), marks, strict=True)),
                f"{r.median(direction):.0f}",
                " ".join(f"{x:,}" for x in r.retransmits(direction)),
                f"{r.median(direction) / base:.2f}x",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    right = {1, 4, 6}
    for n, row in enumerate(rows):
        cells = [
            c.rjust(w) if i in right else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        print("   " + "  ".join(cells).rstrip())
        if n == 0:
            print("   " + "-" * (sum(widths) + 2 * (len(widths) - 1)))
    print(
        "   ratio: median / median of (b). sockbuf: Nebula's UDP socket as the kernel shows it, "
        "twice what\n   read_buffer asks for (20 MiB = our 10 MiB; 208 KiB = the kernel default)."
    )
    every = [x for r in results for x in r.of(direction)]
    again = sum(x.attempts - 1 for x in every)
    disturbed = sum(x.other_cpus > tp.max_others for x in every)
    others = statistics.median(x.other_cpus for x in every)
    if tp.meter.available:
        print(
            f"   CPUs busy outside the lab during a run: median {others:.2f}; {again} run(s) "
            f"done again because it was over {tp.max_others:.2f}"
            + (f"; * = still over after {tp.retries} retries" if disturbed else "")
        )
    else:
        print("   CPUs busy outside the lab: not measured (the containers are in systemd's scopes)")
