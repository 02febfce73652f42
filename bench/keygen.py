"""Benchmark: batch certificate signing against the oomerfarm-style baseline, and keygen end to end.

Run from the project root::

    .venv/bin/python -m bench.keygen            # full run: 1,000 and 10,000 workers (~1 min)
    .venv/bin/python -m bench.keygen --quick    # smoke run with small sizes (~15 s)

What is measured (see bench/README.md):

* **ours**: ``farmhand.keystore.pki.sign_hosts`` for N workers (a fresh X25519 key pair and a
  signed Nebula certificate each) with a fresh CA from ``create_ca``, timed alone. Each size runs
  in a fresh child process, which also reports its own peak RSS, so the memory figure is that of
  signing N certificates and not of this harness.
* **baseline**: what oomerfarm's ``becomesecure.sh`` does, one ``nebula-cert sign -ca-crt -ca-key
  -name -ip -groups -out-crt -out-key`` process per worker, run sequentially into a temp dir (sign
  generates the key pair itself). At most ``--baseline-max`` processes really run; larger sizes
  are extrapolated linearly, and the output says so.
* **end to end**: ``create_farm`` into a temp dir (CA, hub, workers, one boss, the vault and every
  bundle age/scrypt-encrypted, files written and fsynced), plus the cost of one age encryption.

A few of our certificates are checked with ``nebula-cert verify`` and ``nebula-cert print -json``
before anything is reported, so a broken signer can never produce a fast number.

Exit status: 0 when every target evaluated passes, 1 when one fails, 2 when a correctness check
fails or a tool is missing.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

FULL_SIZES = (1_000, 10_000)
QUICK_SIZES = (100, 300)
FULL_E2E_SIZES = (100, 10_000)
QUICK_E2E_SIZES = (20,)
COMPARE_SIZES = (100, 2_000)
QUICK_COMPARE_SIZES = (20,)

# Targets from issue 15: end to end against the loop and against the scrypt floor.
TARGET_LOOP_RATIO = 2.0  # at least this many times faster than the oomerfarm-style loop
TARGET_FLOOR_RATIO = 1.5  # at most this many times the scrypt floor
TARGET_COMPARE_SIZE = 2_000
DEFAULT_BASELINE_MAX = 1_000
QUICK_BASELINE_MAX = 100

# Targets from issue 2 ("Benchmark").
TARGET_RATIO_SIZE = 1_000
TARGET_RATIO = 30.0
TARGET_TIME_SIZE = 10_000
TARGET_TIME_S = 3.0
TARGET_RSS_MB = 200.0

PASSPHRASE = "bench-keygen passphrase"  # noqa: S105 - throwaway stores in temp dirs
AGE_PAYLOAD = b"x" * 1024
WORKER_GROUPS = "farm,worker"  # the same groups our worker certs carry, so both sign alike


class BenchError(Exception):
    """A correctness check failed or a tool is missing: nothing may be reported as a result."""


# --------------------------------------------------------------------------------------------
# Helpers shared by the parent and the children


def _maxrss_mb() -> float:
    """This process's peak resident set size in MB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _plan_for(count: int) -> Any:
    """A default plan whose worker range holds ``count`` workers (10.87.0.0/16 holds ~40k)."""
    from farmhand.keystore.plan import new_plan

    plan = new_plan(network="10.87.0.0/16")
    if plan.addresses.workers.size - 1 < count:
        plan = new_plan(network="10.0.0.0/8")
    return plan


def _children_maxrss_mb() -> float:
    """The largest peak RSS of any waited-for child process (e.g. an encryption worker)."""
    rss = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return rss / (1024 * 1024) if sys.platform == "darwin" else rss / 1024


def _child(args: list[str]) -> dict[str, Any]:
    """Run ``python -m bench.keygen --child ...`` in a fresh interpreter; return its JSON line."""
    cmd = [sys.executable, "-m", "bench.keygen", "--child", *args]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise BenchError(f"benchmark child {' '.join(args)} failed:\n{proc.stderr.strip()}")
    lines = proc.stdout.strip().splitlines()
    if not lines:
        raise BenchError(f"benchmark child {' '.join(args)} printed nothing")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


# --------------------------------------------------------------------------------------------
# Children: each runs in its own interpreter so its ru_maxrss is its own


def child_sign(count: int, repeat: int, out: Path, samples: int) -> dict[str, Any]:
    """Time ``sign_hosts`` for ``count`` workers; write a few samples to ``out`` for checking."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from farmhand.keystore.pki import CLOCK_SKEW, plan_workers, sign_hosts
    from farmhand.keystore.register import Register
    from farmhand.nebula import pem
    from farmhand.nebula.cert import create_ca

    plan = _plan_for(count)
    now = int(time.time())
    ca_key = Ed25519PrivateKey.generate()
    # The same CA create_farm makes: constrained to the farm's network.
    ca = create_ca(
        f"{plan.name} bench CA",
        ca_key,
        not_before=now - CLOCK_SKEW,
        not_after=now + plan.ca_lifetime,
        ips=(plan.network,),
    )
    specs = plan_workers(plan, Register(), count)
    gc.collect()
    idle_rss = _maxrss_mb()
    times: list[float] = []
    peak_rss = idle_rss
    for run in range(repeat):
        gc.collect()
        start = time.perf_counter()
        certs, keys = sign_hosts(ca, ca_key, plan, specs, now)
        times.append(time.perf_counter() - start)
        if run == 0:
            peak_rss = _maxrss_mb()  # the high-water mark of exactly one signing
            if len(certs) != count or len(keys) != count:
                raise BenchError(f"sign_hosts returned {len(certs)} certs for {count} workers")
            if len({c.details.public_key for c in certs.values()}) != count:
                raise BenchError("sign_hosts reused a public key")
            out.mkdir(parents=True, exist_ok=True)
            (out / "ca.crt").write_bytes(ca.to_pem())
            expected = []
            for index in _sample_indices(count, samples):
                spec = specs[index]
                cert = certs[spec.name]
                if pem.x25519_public_from_private(keys[spec.name]) != cert.details.public_key:
                    raise BenchError(f"{spec.name}: private key does not match the certificate")
                (out / f"{spec.name}.crt").write_bytes(cert.to_pem())
                expected.append(
                    {
                        "name": spec.name,
                        "ip": str(plan.overlay_interface(spec.ip)),
                        "groups": list(spec.role.groups),
                    }
                )
            (out / "expected.json").write_text(json.dumps(expected))
        del certs, keys
    return {"count": count, "times": times, "idle_rss_mb": idle_rss, "peak_rss_mb": peak_rss}


def _sample_indices(count: int, samples: int) -> list[int]:
    if count <= 0 or samples <= 0:
        return []
    if samples == 1:
        return [0]
    step = (count - 1) / (samples - 1)
    return sorted({round(i * step) for i in range(samples)})


@dataclass
class _Phases:
    """Wall time spent in a few functions of a create_farm run, by wrapping module attributes.

    Bench-only instrumentation (nothing under src/ changes); a function that no longer exists is
    simply not reported.
    """

    seconds: dict[str, float] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)

    @contextlib.contextmanager
    def wrapped(self, targets: Sequence[tuple[Any, str, str]]) -> Iterator[None]:
        originals: list[tuple[Any, str, Any]] = []
        try:
            for module, attr, label in targets:
                original = getattr(module, attr, None)
                if original is None:
                    continue
                originals.append((module, attr, original))
                setattr(module, attr, self._timed(original, label))
                self.seconds.setdefault(label, 0.0)
            yield
        finally:
            for module, attr, original in reversed(originals):
                setattr(module, attr, original)

    def _timed(self, func: Callable[..., Any], label: str) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.seconds[label] += time.perf_counter() - start
                self.calls[label] = self.calls.get(label, 0) + 1

        return timed


def child_e2e(count: int, nebula_cert: str) -> dict[str, Any]:
    """Time ``create_farm`` with ``count`` workers into a temp dir, with a phase breakdown."""
    from farmhand.keystore import age, bundle, fs, pki, vault

    plan = _plan_for(count)
    phases = _Phases()
    targets = [
        (pki, "sign_hosts", "sign"),
        (pki, "_bundles", "bundles"),
        (bundle, "pack", "tar+gzip"),
        (vault, "pack", "tar+gzip"),
        (age, "encrypt_many", "age/scrypt"),
        (fs, "write_new", "write+fsync"),
    ]
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-e2e-") as tmp:
        root = Path(tmp) / "keys"
        with phases.wrapped(targets):
            start = time.perf_counter()
            result = pki.create_farm(root, plan, count, ["boss1"], PASSPHRASE)
            total = time.perf_counter() - start
        peak_rss = _maxrss_mb()
        if len(result.issued) != count + 2:
            raise BenchError(f"create_farm issued {len(result.issued)} certs, not {count + 2}")
        for path in result.bundles:
            if not path.read_bytes().startswith(b"age-encryption.org/v1\n"):
                raise BenchError(f"{path.name} is not an age file")
        names = ["hub", "boss1"] + ([pki.worker_name(count)] if count else [])
        for name in names:
            _nebula_verify(nebula_cert, root / "ca.crt", root / "certs" / f"{name}.crt")
        files = sum(1 for p in root.rglob("*") if p.is_file())
    return {
        "count": count,
        "total": total,
        "phases": phases.seconds,
        "files": files,
        "encrypted": len(result.bundles) + 1,  # the bundles plus the vault (secrets.age)
        "peak_rss_mb": peak_rss,
    }


def _log_n(encrypted: bytes) -> int:
    """The scrypt work factor (log2 N) an age file was made with: rage calibrates it to the
    machine at each encryption (about a second's work), so it differs between runs."""
    for line in encrypted.split(b"\n", 4)[1:3]:
        if line.startswith(b"-> scrypt "):
            return int(line.split()[-1])
    raise BenchError("not an age scrypt file")


def child_compare_e2e(count: int) -> dict[str, Any]:
    """``create_farm`` of ``count`` workers, untouched (no phase wrappers), with peak memory of
    this process and of the largest encryption process."""
    from farmhand.keystore import age, pki

    plan = _plan_for(count)
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-cmp-") as tmp:
        start = time.perf_counter()
        result = pki.create_farm(Path(tmp) / "keys", plan, count, ["boss1"], PASSPHRASE)
        total = time.perf_counter() - start
        secrets = [*result.bundles, Path(tmp) / "keys" / "secrets.age"]
        log_ns = [_log_n(path.read_bytes()) for path in secrets]
    files = len(result.bundles) + 1  # the bundles plus the vault
    return {
        "total": total,
        "files": files,
        "log_n": log_ns,
        "parallel": age._parallelism(files),
        "main_rss_mb": _maxrss_mb(),
        "child_rss_mb": _children_maxrss_mb(),
    }


def child_floor(files: int) -> dict[str, Any]:
    """The scrypt floor: ``files`` age passphrase encryptions of 1 KiB, as parallel as
    farmhand may run them here (its own encrypt_many: cores, memory, at most MAX_PARALLEL)."""
    from farmhand.keystore import age

    start = time.perf_counter()
    encrypted = age.encrypt_many([AGE_PAYLOAD] * files, PASSPHRASE)
    return {
        "total": time.perf_counter() - start,
        "parallel": age._parallelism(files),
        "log_n": [_log_n(e) for e in encrypted],
    }


def child_loop(count: int, files: int, nebula_cert: str) -> dict[str, Any]:
    """The oomerfarm-style loop: one ``nebula-cert sign`` per host (hub, workers, boss1), one
    after another, then per encrypted file a tar + gzip of its keys and certificates and an age
    passphrase encryption, one after another (as a shell loop runs ``tar`` and ``age -p``:
    pyrage runs the same scrypt; the age CLI reads a passphrase from a terminal only)."""
    import pyrage

    with tempfile.TemporaryDirectory(prefix="farmhand-bench-loop-") as tmp:
        work = Path(tmp)
        start = time.perf_counter()
        baseline = run_baseline(nebula_cert, [count + 2], count + 2, work / "pki")
        signed = time.perf_counter() - start
        everything = sorted((work / "pki").iterdir())
        groups = [everything] * files  # each file holds the farm's keys, like the vault
        for index, members in enumerate(groups):
            tarball = work / f"bundle{index}.tar.gz"
            subprocess.run(
                ["tar", "-czf", str(tarball), "-C", str(work / "pki"), *(p.name for p in members)],
                check=True,
            )
            encrypted = bytes(pyrage.passphrase.encrypt(tarball.read_bytes(), PASSPHRASE))
            (work / f"bundle{index}.tar.gz.age").write_bytes(encrypted)
        total = time.perf_counter() - start
        if baseline.first_cert is None:
            raise BenchError("the loop signed nothing")
    return {"total": total, "sign": signed, "main_rss_mb": _maxrss_mb()}


# --------------------------------------------------------------------------------------------
# nebula-cert: the baseline and the correctness checks


def _nebula_verify(nebula_cert: str, ca: Path, crt: Path) -> None:
    proc = subprocess.run(
        [nebula_cert, "verify", "-ca", str(ca), "-crt", str(crt)],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise BenchError(
            f"nebula-cert verify rejected {crt.name}: {(proc.stderr or proc.stdout).strip()}"
        )


def verify_samples(nebula_cert: str, sample_dir: Path) -> int:
    """``nebula-cert verify`` and ``print -json`` every sample the sign child wrote."""
    expected: list[dict[str, Any]] = json.loads((sample_dir / "expected.json").read_text())
    ca = sample_dir / "ca.crt"
    for item in expected:
        crt = sample_dir / f"{item['name']}.crt"
        _nebula_verify(nebula_cert, ca, crt)
        printed = subprocess.run(
            [nebula_cert, "print", "-json", "-path", str(crt)],
            capture_output=True,
            text=True,
            check=True,
        )
        details = json.loads(printed.stdout)["details"]
        seen = {"name": details["name"], "ip": details["ips"], "groups": details["groups"]}
        want = {"name": item["name"], "ip": [item["ip"]], "groups": item["groups"]}
        if seen != want:
            raise BenchError(f"nebula-cert print shows {seen} for {crt.name}, planned {want}")
    return len(expected)


def negative_control(nebula_cert: str, our_cert: Path, other_ca: Path) -> None:
    """Our cert must NOT verify against a different CA: proves the verify step can fail."""
    proc = subprocess.run(
        [nebula_cert, "verify", "-ca", str(other_ca), "-crt", str(our_cert)],
        capture_output=True,
        check=False,
    )
    if proc.returncode == 0:
        raise BenchError("nebula-cert verify accepted our cert under a foreign CA")


@dataclass
class Baseline:
    measured: int
    checkpoints: dict[int, float]  # size -> seconds, for sizes <= measured
    ca: Path
    first_cert: Path | None

    def seconds(self, size: int) -> tuple[float, bool]:
        """(time for ``size`` workers, whether it was extrapolated)."""
        if size in self.checkpoints:
            return self.checkpoints[size], False
        return self.checkpoints[self.measured] * size / self.measured, True


def run_baseline(nebula_cert: str, sizes: Sequence[int], limit: int, workdir: Path) -> Baseline:
    """One ``nebula-cert sign`` per worker, sequentially (as becomesecure.sh's loop does).

    One run of ``min(max(sizes), limit)`` processes; the elapsed time after the first n of them is
    exactly what a run of n would take, so it is recorded for every size n within the run.
    """
    run_count = max(1, min(max(sizes), limit))
    workdir.mkdir(parents=True, exist_ok=True)
    ca_crt, ca_key = workdir / "ca.crt", workdir / "ca.key"
    out_args = ("-out-crt", str(ca_crt), "-out-key", str(ca_key))
    subprocess.run(
        [nebula_cert, "ca", "-name", "oomer", "-duration", "43800h", *out_args],
        check=True,
        capture_output=True,
    )
    signer = (nebula_cert, "sign", "-ca-crt", str(ca_crt), "-ca-key", str(ca_key))
    marks = {n for n in sizes if n <= run_count} | {run_count}
    checkpoints: dict[int, float] = {}
    network_base = (10 << 24) | (87 << 16) | (99 << 8)  # 10.87.99.1 upward, like oomerfarm
    start = time.perf_counter()
    for i in range(1, run_count + 1):
        address = network_base + (i - 1) // 254 * 256 + (i - 1) % 254 + 1
        ip = ".".join(str((address >> shift) & 0xFF) for shift in (24, 16, 8, 0))
        name = f"worker{i:04d}"
        host_args = ("-name", name, "-ip", f"{ip}/16", "-groups", WORKER_GROUPS)
        crt, key = workdir / f"{name}.crt", workdir / f"{name}.key"
        proc = subprocess.run(
            [*signer, *host_args, "-out-crt", str(crt), "-out-key", str(key)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            check=False,
        )
        if proc.returncode != 0:
            raise BenchError(f"baseline nebula-cert sign failed: {proc.stderr.decode().strip()}")
        if i in marks:
            checkpoints[i] = time.perf_counter() - start
    crts = sorted(workdir.glob("worker*.crt"))
    if len(crts) != run_count:
        raise BenchError(f"baseline wrote {len(crts)} certificates, expected {run_count}")
    return Baseline(run_count, checkpoints, ca_crt, crts[0] if crts else None)


def nebula_cert_version(nebula_cert: str) -> str:
    proc = subprocess.run([nebula_cert, "-version"], capture_output=True, text=True, check=False)
    return (proc.stdout or proc.stderr).strip().removeprefix("Version: ") or "unknown"


# --------------------------------------------------------------------------------------------
# age on its own


@dataclass
class AgeCost:
    times: list[float]  # one pyrage.passphrase.encrypt each
    log_n: str
    parallel: int  # how many encryptions farmhand's encrypt_many runs at once here
    many_time: float | None  # encrypt_many of ``parallel`` payloads, or None if parallel == 1

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def speedup(self) -> float | None:
        if self.many_time is None:
            return None
        return self.parallel * self.median / self.many_time


def age_cost(runs: int, files: int) -> AgeCost:
    """One age encryption alone, then farmhand's encrypt_many of as many as it runs at once."""
    import pyrage

    from farmhand.keystore import age as farm_age

    times: list[float] = []
    log_n = "?"
    for _ in range(runs):
        start = time.perf_counter()
        encrypted = bytes(pyrage.passphrase.encrypt(AGE_PAYLOAD, PASSPHRASE))
        times.append(time.perf_counter() - start)
        for line in encrypted.split(b"\n", 4)[1:3]:
            if line.startswith(b"-> scrypt "):
                log_n = line.split()[-1].decode()
    limit = getattr(farm_age, "MAX_PARALLEL", 1)
    parallel = max(1, min(files, os.cpu_count() or 1, limit))
    many_time = None
    if parallel > 1:
        start = time.perf_counter()
        farm_age.encrypt_many([AGE_PAYLOAD] * parallel, PASSPHRASE)
        many_time = time.perf_counter() - start
    return AgeCost(times, log_n, parallel, many_time)


# --------------------------------------------------------------------------------------------
# The report


@dataclass
class SignResult:
    count: int
    times: list[float]
    idle_rss_mb: float
    peak_rss_mb: float

    @property
    def seconds(self) -> float:
        return statistics.median(self.times)


def _fmt_s(seconds: float) -> str:
    return f"{seconds:.3f}" if seconds < 10 else f"{seconds:.1f}"


def _status(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _print_signing(results: list[SignResult], baseline: Baseline) -> list[str]:
    header = (
        f"{'workers':>8}  {'ours (s)':>9}  {'baseline (s)':>26}  {'ratio':>7}  "
        f"{'ours certs/s':>12}  {'peak RSS (MB)':>13}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        base, extrapolated = baseline.seconds(r.count)
        how = "extrapolated" if extrapolated else "measured"
        base_text = f"{_fmt_s(base)} ({how})"
        print(
            f"{r.count:>8,}  {r.seconds:>9.3f}  {base_text:>26}  {base / r.seconds:>6.1f}x  "
            f"{r.count / r.seconds:>12,.0f}  {r.peak_rss_mb:>13.1f}"
        )
    notes = []
    extrapolated_sizes = [r.count for r in results if baseline.seconds(r.count)[1]]
    if extrapolated_sizes:
        per = baseline.checkpoints[baseline.measured] / baseline.measured
        sizes_text = ", ".join(f"{n:,}" for n in extrapolated_sizes)
        notes.append(
            f"EXTRAPOLATED: the baseline for {sizes_text} workers was not run; it is "
            f"{baseline.measured:,} measured processes scaled linearly ({per * 1000:.2f} ms each). "
            "Raise --baseline-max to measure it."
        )
    return notes


def _print_targets(results: list[SignResult], baseline: Baseline) -> bool:
    by_size = {r.count: r for r in results}
    ok = True
    print("\nTargets (issue 2, on this machine):")
    ratio_run = by_size.get(TARGET_RATIO_SIZE)
    if ratio_run is None:
        print(
            f"  SKIP  >= {TARGET_RATIO:.0f}x faster than baseline at {TARGET_RATIO_SIZE:,}: "
            "size not run"
        )
    else:
        base, extrapolated = baseline.seconds(TARGET_RATIO_SIZE)
        ratio = base / ratio_run.seconds
        passed = ratio >= TARGET_RATIO
        ok &= passed
        note = " (baseline EXTRAPOLATED)" if extrapolated else ""
        print(
            f"  {_status(passed)}  >= {TARGET_RATIO:.0f}x faster than baseline at "
            f"{TARGET_RATIO_SIZE:,} workers: {ratio:.1f}x{note}"
        )
    time_run = by_size.get(TARGET_TIME_SIZE)
    if time_run is None:
        print(f"  SKIP  {TARGET_TIME_SIZE:,} signed in < {TARGET_TIME_S:.0f} s: size not run")
        print(f"  SKIP  peak memory < {TARGET_RSS_MB:.0f} MB at {TARGET_TIME_SIZE:,}: size not run")
    else:
        passed = time_run.seconds < TARGET_TIME_S
        ok &= passed
        print(
            f"  {_status(passed)}  {TARGET_TIME_SIZE:,} workers signed in < {TARGET_TIME_S:.0f} s:"
            f" {time_run.seconds:.3f} s (median; max {max(time_run.times):.3f} s)"
        )
        passed = time_run.peak_rss_mb < TARGET_RSS_MB
        ok &= passed
        print(
            f"  {_status(passed)}  peak memory < {TARGET_RSS_MB:.0f} MB signing "
            f"{TARGET_TIME_SIZE:,}: {time_run.peak_rss_mb:.1f} MB whole process "
            f"({time_run.peak_rss_mb - time_run.idle_rss_mb:.1f} MB above the "
            f"{time_run.idle_rss_mb:.1f} MB idle interpreter)"
        )
    return ok


PHASE_ORDER = ("sign", "bundles", "tar+gzip", "age/scrypt", "write+fsync")


def _print_e2e(runs: list[dict[str, Any]], age: AgeCost | None) -> None:
    print("\nEnd-to-end keygen: create_farm into a temp dir (CA, hub, N workers, boss1;")
    print("vault + hub/workers/boss bundles tar+gzipped and age-encrypted, files fsynced)")
    header = (
        f"{'workers':>8}  {'total (s)':>9}  "
        + "  ".join(f"{p:>11}" for p in PHASE_ORDER)
        + f"  {'other':>7}  {'files':>6}  {'peak RSS (MB)':>13}"
    )
    print(header)
    print("-" * len(header))
    for run in runs:
        phases: dict[str, float] = run["phases"]
        other = run["total"] - sum(phases.values())
        cells = "  ".join(
            f"{phases[p]:>11.3f}" if p in phases else f"{'-':>11}" for p in PHASE_ORDER
        )
        print(
            f"{run['count']:>8,}  {run['total']:>9.3f}  {cells}  {other:>7.3f}  "
            f"{run['files']:>6,}  {run['peak_rss_mb']:>13.1f}"
        )
    for run in runs:
        share = run["phases"].get("age/scrypt", 0.0) / run["total"]
        sign = run["phases"].get("sign", 0.0)
        print(
            f"  {run['count']:,} workers: age/scrypt is {share:.0%} of the total "
            f"({run['encrypted']} files: vault + {run['encrypted'] - 1} bundles); "
            f"signing is {sign:.3f} s"
        )
    if age is None:
        return
    memory = ""
    if age.log_n.isdigit():
        memory = f", ~{128 * 8 * 2 ** int(age.log_n) / 2**30:.0f} GiB each"
    print(
        f"\nage on its own ({len(AGE_PAYLOAD):,}-byte payload, "
        f"scrypt log2 N = {age.log_n}{memory}):"
    )
    print(
        f"  {'one pyrage.passphrase.encrypt:':<36}{age.median:6.2f} s "
        f"(median of {len(age.times)}; min {min(age.times):.2f}, max {max(age.times):.2f})"
    )
    if age.many_time is not None and age.speedup is not None:
        print(
            f"  {f'farmhand age.encrypt_many of {age.parallel}:':<36}{age.many_time:6.2f} s "
            f"= {age.speedup:.2f}x the throughput of one at a time (ideal {age.parallel}x)"
        )
        if age.speedup < 1.3:
            print(
                "  WARNING: the parallel encryptions did not overlap; threads cannot help while "
                "the binding holds the GIL"
            )
    print("  scrypt, not signing, dominates keygen: it is a fixed cost per encrypted file.")


# --------------------------------------------------------------------------------------------
# Entry point


def _print_compare(rows: list[dict[str, Any]]) -> bool:
    """The issue-15 table; True when the targets at TARGET_COMPARE_SIZE pass (or were not run)."""
    print(
        "\nEnd to end vs the oomerfarm-style loop and the scrypt floor (all measured in this run):"
    )
    print(
        "  e2e = create_farm (CA, hub, N workers, boss1, vault + 3 bundles encrypted, fsynced);\n"
        "  loop = one `nebula-cert sign` per host, then per file tar -czf + age scrypt, in turn;\n"
        "  floor = the same number of age scrypt encryptions alone, run as parallel as farmhand "
        "runs them."
    )
    header = (
        f"{'workers':>8}  {'e2e (s)':>8}  {'loop (s)':>9}  {'floor (s)':>9}  "
        f"{'loop/e2e':>8}  {'e2e/floor':>9}  {'files':>5}  {'parallel':>8}  "
        f"{'main peak MB':>12}  {'per scrypt proc MB':>18}  {'all at once MB':>14}"
    )
    print(header)
    print("-" * len(header))
    ok = True
    for row in rows:
        e2e, loop, floor = row["e2e"], row["loop"], row["floor"]
        speedup = loop["total"] / e2e["total"]
        over_floor = e2e["total"] / floor["total"]
        together = e2e["main_rss_mb"] + e2e["parallel"] * e2e["child_rss_mb"]
        print(
            f"{row['count']:>8,}  {e2e['total']:>8.2f}  {loop['total']:>9.2f}  "
            f"{floor['total']:>9.2f}  {speedup:>7.2f}x  {over_floor:>8.2f}x  {e2e['files']:>5}  "
            f"{e2e['parallel']:>8}  {e2e['main_rss_mb']:>12.1f}  {e2e['child_rss_mb']:>18.1f}  "
            f"{together:>14.1f}"
        )
        pairs = zip(e2e["totals"], floor["totals"], strict=True)
        runs = ", ".join(f"{a:.2f}/{b:.2f}" for a, b in pairs)
        print(f"{'':>8}  e2e/floor runs, interleaved (s): {runs}")
        print(
            f"{'':>8}  scrypt log2 N of the median runs' files (rage calibrates each to "
            f"the machine's speed): e2e {e2e['log_n']}, floor {floor['log_n']}"
        )
        rest = loop["total"] - loop["sign"]
        print(
            f"{'':>8}  loop: {loop['sign']:.2f} s of nebula-cert sign, {rest:.2f} s of tar + age; "
            f"its peak {loop['main_rss_mb']:.1f} MB"
        )
        if row["count"] == TARGET_COMPARE_SIZE:
            fast = speedup >= TARGET_LOOP_RATIO
            near = over_floor <= TARGET_FLOOR_RATIO
            ok = ok and fast and near
            print(
                f"  {_status(fast)}  {row['count']:,} workers: {speedup:.2f}x faster than the "
                f"loop (target >= {TARGET_LOOP_RATIO:.1f}x)"
            )
            print(
                f"  {_status(near)}  {row['count']:,} workers: {over_floor:.2f}x the scrypt floor "
                f"(target <= {TARGET_FLOOR_RATIO:.1f}x)"
            )
    print(
        "  peak memory: 'main' is create_farm's own process; each scrypt process peaks at the "
        "figure shown, and 'all at once' is main + parallel x that (processes that overlap)."
    )
    return ok


def _median_run(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run with the median total (its memory figures with it); ``totals`` lists all."""
    ordered = sorted(runs, key=lambda r: float(r["total"]))
    return {**ordered[len(ordered) // 2], "totals": [r["total"] for r in runs]}


def run_compare(sizes: Sequence[int], nebula_cert: str, repeat: int) -> list[dict[str, Any]]:
    """Per size: end to end and the scrypt floor ``repeat`` times, interleaved (so a busy
    moment of the machine hits both alike; medians reported), then the loop once."""
    rows = []
    for size in sizes:
        print(
            f"  compare {size:,} workers: end to end and scrypt floor x{repeat}, then the loop...",
            flush=True,
        )
        e2e_runs, floor_runs = [], []
        for _ in range(repeat):
            e2e_runs.append(_child(["cmp-e2e", str(size)]))
            floor_runs.append(_child(["floor", str(e2e_runs[-1]["files"])]))
        e2e, floor = _median_run(e2e_runs), _median_run(floor_runs)
        loop = _child(["loop", str(size), str(e2e["files"]), "--nebula-cert", nebula_cert])
        rows.append({"count": size, "e2e": e2e, "floor": floor, "loop": loop})
    return rows


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part.replace("_", "")) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"not a comma-separated list of counts: {text!r}"
        ) from None
    if any(n < 1 for n in sizes):
        raise argparse.ArgumentTypeError("sizes must be positive")
    return sizes


def _e2e_sizes(text: str) -> list[int]:
    return [] if text.strip() in ("", "none") else _sizes(text)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.keygen",
        description="Batch Nebula certificate signing vs. one nebula-cert process per worker.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes for a smoke run")
    parser.add_argument(
        "--sizes", type=_sizes, help="worker counts to sign (default 1000,10000; quick 100,300)"
    )
    parser.add_argument(
        "--baseline-max",
        type=_positive,
        help="run at most this many nebula-cert processes and extrapolate linearly beyond "
        f"(default {DEFAULT_BASELINE_MAX}; quick {QUICK_BASELINE_MAX})",
    )
    parser.add_argument(
        "--e2e-sizes",
        type=_e2e_sizes,
        help="worker counts for end-to-end create_farm, 'none' to skip "
        "(default 100,10000; quick 20)",
    )
    parser.add_argument(
        "--repeat", type=_positive, help="signing runs per size (median; default 3)"
    )
    parser.add_argument("--age-runs", type=_positive, help="age encryptions to time (default 3)")
    parser.add_argument(
        "--samples", type=_positive, default=3, help="certs per size checked with nebula-cert"
    )
    parser.add_argument(
        "--compare-sizes",
        type=_e2e_sizes,
        help="worker counts for end to end vs the loop and the scrypt floor, 'none' to skip "
        "(default 100,2000; quick 20)",
    )
    parser.add_argument(
        "--compare-repeat",
        type=_positive,
        default=3,
        help="end-to-end and floor runs per compared size, interleaved (median; default 3)",
    )
    parser.add_argument(
        "--compare-only",
        action="store_true",
        help="run only the end to end vs loop vs scrypt floor comparison",
    )
    parser.add_argument("--nebula-cert", default="nebula-cert", help="the nebula-cert binary")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick: bool = args.quick
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if quick else FULL_SIZES)
    if args.baseline_max is None:
        args.baseline_max = QUICK_BASELINE_MAX if quick else DEFAULT_BASELINE_MAX
    if args.e2e_sizes is None:
        args.e2e_sizes = list(QUICK_E2E_SIZES if quick else FULL_E2E_SIZES)
    if args.compare_sizes is None:
        args.compare_sizes = list(QUICK_COMPARE_SIZES if quick else COMPARE_SIZES)
    if args.repeat is None:
        args.repeat = 1 if quick else 3
    if args.age_runs is None:
        args.age_runs = 1 if quick else 3
    return args


def run_child(args: argparse.Namespace) -> int:
    kind, *rest = args.child
    if kind == "sign":
        out = args.out or Path(tempfile.mkdtemp(prefix="farmhand-bench-sign-"))
        result = child_sign(int(rest[0]), args.repeat, out, args.samples)
    elif kind == "e2e":
        result = child_e2e(int(rest[0]), args.nebula_cert)
    elif kind == "cmp-e2e":
        result = child_compare_e2e(int(rest[0]))
    elif kind == "floor":
        result = child_floor(int(rest[0]))
    elif kind == "loop":
        result = child_loop(int(rest[0]), int(rest[1]), args.nebula_cert)
    else:
        raise SystemExit(f"unknown child {kind!r}")
    print(json.dumps(result))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.child:
        return run_child(args)
    try:
        return run(args)
    except BenchError as exc:
        print(f"\nBENCHMARK ABORTED: {exc}", file=sys.stderr)
        return 2


def run(args: argparse.Namespace) -> int:
    nebula_cert = shutil.which(args.nebula_cert)
    if nebula_cert is None:
        raise BenchError(f"{args.nebula_cert} not found: install the Debian package 'nebula'")
    sizes: list[int] = sorted(set(args.sizes))
    print(
        f"farmhand keygen benchmark{' (--quick)' if args.quick else ''}: "
        f"{os.cpu_count()} CPU(s), Python {platform.python_version()}, "
        f"nebula-cert {nebula_cert_version(nebula_cert)}, {platform.platform()}"
    )
    if args.compare_only:
        return (
            0
            if _print_compare(
                run_compare(sorted(set(args.compare_sizes)), nebula_cert, args.compare_repeat)
            )
            else 1
        )
    with tempfile.TemporaryDirectory(prefix="farmhand-bench-") as tmp_text:
        tmp = Path(tmp_text)
        results: list[SignResult] = []
        checked = 0
        for size in sizes:
            print(
                f"  signing {size:,} workers with sign_hosts ({args.repeat} run(s))...", flush=True
            )
            out = tmp / f"ours-{size}"
            data = _child(
                [
                    *("sign", str(size), "--repeat", str(args.repeat)),
                    *("--samples", str(args.samples), "--out", str(out)),
                ]
            )
            checked += verify_samples(nebula_cert, out)
            results.append(
                SignResult(size, data["times"], data["idle_rss_mb"], data["peak_rss_mb"])
            )
        run_count = max(1, min(max(sizes), args.baseline_max))
        print(f"  baseline: {run_count:,} sequential nebula-cert sign processes...", flush=True)
        baseline = run_baseline(nebula_cert, sizes, args.baseline_max, tmp / "baseline")
        if baseline.first_cert is not None:
            _nebula_verify(nebula_cert, baseline.ca, baseline.first_cert)
        sample = next(p for p in sorted((tmp / f"ours-{sizes[0]}").glob("worker*.crt")))
        negative_control(nebula_cert, sample, baseline.ca)
        e2e_runs = []
        for size in sorted(set(args.e2e_sizes)):
            print(f"  end to end: create_farm with {size:,} workers...", flush=True)
            e2e_runs.append(_child(["e2e", str(size), "--nebula-cert", nebula_cert]))
        age = None
        if e2e_runs:
            print(
                f"  age: {args.age_runs} passphrase encryption(s), then encrypt_many...", flush=True
            )
            age = age_cost(args.age_runs, max(r["encrypted"] for r in e2e_runs))

    print(
        f"\nCorrectness: {checked} of our certificates ({args.samples} per size, first to last) "
        "pass `nebula-cert verify` against our CA and `nebula-cert print -json` shows the planned "
        "name, address and groups; private keys match; a baseline cert verifies; ours is "
        "rejected under the baseline's CA (negative control)"
        + ("; every end-to-end store's hub, boss and last worker verify." if e2e_runs else ".")
    )
    print(
        "\nSigning worker certificates: ours = sign_hosts (key pair + certificate per worker), "
        f"median of {args.repeat} run(s), each size in a fresh process;\n"
        "baseline = one `nebula-cert sign` process per worker, sequential, as oomerfarm does.\n"
    )
    notes = _print_signing(results, baseline)
    for note in notes:
        print(f"\n{note}")
    ok = _print_targets(results, baseline)
    if e2e_runs:
        _print_e2e(e2e_runs, age)
    if args.compare_sizes:
        ok = (
            _print_compare(
                run_compare(sorted(set(args.compare_sizes)), nebula_cert, args.compare_repeat)
            )
            and ok
        )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
