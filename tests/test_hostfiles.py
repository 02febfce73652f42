"""`farmhand files` (issue #3): every file a host gets, checked with its real parser.

The session farm's hub, a worker (worker0002 chosen) and boss are rendered once through the real
CLI and once through the library; both must agree byte for byte. Then each file goes through the
program that will read it on the host: ``nebula -test``, ``testparm``, ``systemd-analyze verify``,
``sshd -t``, ``nft -c`` and ``sh -n``, and each check is shown to fail on a broken copy, so a
passing check means something. The Nebula firewall is compared, as nebula itself parsed it, with
least privilege by group (``NEBULA_RULES``). Tests whose tool is missing skip, naming the Debian
package that has it.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import shutil
import stat
import subprocess
import tempfile
import xml.etree.ElementTree as ET  # our own rendered file, not untrusted input
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest

from farmhand.errors import BundleError, UsageError
from farmhand.hostfiles import host_files
from farmhand.hostfiles.base import HostFile, write_tree
from farmhand.keystore.bundle import Bundle, bundle_from_tar, pack
from farmhand.model.distro import distro_from_os_release
from farmhand.model.host import NEBULA_DEV, host_model
from farmhand.model.paths import (
    DEFAULT_SSH_HOST_KEYS,
    FARMHAND_ETC,
    NEBULA_CA,
    NEBULA_CERT,
    NEBULA_CONFIG,
    NEBULA_DIR,
    NEBULA_KEY,
    NEBULA_POOL,
)
from farmhand.model.smb import worker_account, worker_accounts
from farmhand.nebula.cert import certificate_from_pem
from farmhand.onhost import leases
from support.cli import WITH_PASSPHRASE, assert_cli_error, decrypt_tars, run_cli, snapshot
from support.session import BUNDLES, WORKER_NAMES, Farm

HUB_ADDRESS = "198.51.100.7"
HUB_OVERLAY = "10.87.0.1"
PORT = 42042
CHOSEN = "worker0002"
ROLES = ("hub", "worker", "boss")
BUNDLE_OF = dict(zip(ROLES, BUNDLES, strict=True))
SYSTEM_UNITS = Path("/usr/lib/systemd/system")

# The Nebula firewall: outbound anything; inbound ICMP, and on the hub SMB and the queue from
# workers and bosses and SSH from bosses, on workers SSH from bosses; bosses nothing more.
# As nebula reports the rules it loaded:
# (direction, protocol number, first port, last port, groups, host); 0 means any.
Rule = tuple[str, int, int, int, tuple[str, ...], str]
OUT_ANY: Rule = ("outgoing", 0, 0, 0, (), "any")
ICMP_IN: Rule = ("incoming", 1, 0, 0, (), "any")


def tcp_from(port: int, group: str) -> Rule:
    return ("incoming", 6, port, port, (group,), "")


NEBULA_RULES: dict[str, list[Rule]] = {
    "hub": [
        OUT_ANY,
        ICMP_IN,
        tcp_from(445, "worker"),
        tcp_from(445, "boss"),
        tcp_from(22, "boss"),
        # The render queue (slurmctld by default): workers only (bosses never reach it).
        tcp_from(6817, "worker"),
    ],
    # slurmd: from the hub only (workers never reach each other's).
    "worker": [OUT_ANY, ICMP_IN, tcp_from(22, "boss"), tcp_from(6818, "hub")],
    "boss": [OUT_ANY, ICMP_IN],
}
# The same rules as the config file spells them.
INBOUND = {
    "hub": [
        {"port": "any", "proto": "icmp", "host": "any"},
        {"port": 445, "proto": "tcp", "group": "worker"},
        {"port": 445, "proto": "tcp", "group": "boss"},
        {"port": 22, "proto": "tcp", "group": "boss"},
        {"port": 6817, "proto": "tcp", "group": "worker"},
    ],
    "worker": [
        {"port": "any", "proto": "icmp", "host": "any"},
        {"port": 22, "proto": "tcp", "group": "boss"},
        {"port": 6818, "proto": "tcp", "group": "hub"},
    ],
    "boss": [{"port": "any", "proto": "icmp", "host": "any"}],
}
MUNGE_KEY = "/etc/munge/munge.key"
"""Slurm's (the default manager's) one secret: munge's own, 0400, munge:munge."""
QUEUE_SECRETS = {MUNGE_KEY}
GROUP_READABLE = {f"{FARMHAND_ETC}/smb-credentials"}
"""Secrets a service user reads (Deadline's farm user, mongodb): mode 0640, its group; with
Slurm, a worker's share login, for the render tasks' user (test_queue_facts covers Deadline's)."""
SECRETS_OF = {
    "hub": {
        NEBULA_KEY,
        f"{FARMHAND_ETC}/smb.password",
        f"{FARMHAND_ETC}/smb-workers.passwords",
        leases.HUB_HOST_KEY,
        *QUEUE_SECRETS,
    },
    "worker": {
        NEBULA_KEY,
        MUNGE_KEY,
        f"{FARMHAND_ETC}/smb-credentials",
        leases.CLAIM_KEY,
        *(f"{NEBULA_POOL}/{name}.key" for name in WORKER_NAMES),
        *(f"{NEBULA_POOL}/{name}.smb" for name in WORKER_NAMES),
    },
    "boss": {NEBULA_KEY},
}


# ------------------------------------------------------------------------------------------------
# Tools
# ------------------------------------------------------------------------------------------------


def tool(name: str, package: str) -> str:
    """The path of a system tool, or skip naming the Debian package that has it."""
    found = shutil.which(name, path=f"{os.environ.get('PATH', '')}:/usr/sbin:/sbin")
    if found is None:
        pytest.skip(f"{name} is not installed (Debian package '{package}'; CI installs it)")
    return found


def run(*argv: str | os.PathLike[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [os.fspath(a) for a in argv], capture_output=True, text=True, timeout=60, **kwargs
    )


def output(result: subprocess.CompletedProcess[str]) -> str:
    return f"exit {result.returncode}\nstdout:\n{result.stdout}\nstderr:\n{result.stderr}"


def parse_yaml(text: str) -> Any:
    """The YAML subset our Nebula template and ``nebula -test`` write: block maps and lists,
    flow lists, ``{}`` and plain, double-quoted, boolean or integer scalars."""
    lines = []
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped and not stripped.startswith("#"):
            lines.append((len(raw) - len(raw.lstrip(" ")), stripped))
    value, end = _yaml_block(lines, 0, lines[0][0])
    assert end == len(lines), f"unparsed YAML from line {end}: {lines[end]}"
    return value


_KEY = re.compile(r'("[^"]*"|[^\s"\-][^:]*?):(?:\s+|$)')


def _yaml_block(lines: list[tuple[int, str]], i: int, indent: int) -> tuple[Any, int]:
    if lines[i][1].startswith("- "):
        items = []
        while i < len(lines) and lines[i][0] == indent and lines[i][1].startswith("- "):
            body = lines[i][1][2:]
            if _KEY.match(body):  # a map that starts on the dash's line
                lines[i] = (indent + 2, body)
                item, i = _yaml_block(lines, i, indent + 2)
            else:
                item, i = _yaml_scalar(body), i + 1
            items.append(item)
        return items, i
    if not _KEY.match(lines[i][1]):  # a flow value on its own line, like "{}"
        return _yaml_scalar(lines[i][1]), i + 1
    mapping: dict[str, Any] = {}
    while i < len(lines) and lines[i][0] == indent:
        match = _KEY.match(lines[i][1])
        assert match, f"not a YAML key: {lines[i][1]!r}"
        key = _yaml_scalar(match.group(1))
        rest = lines[i][1][match.end() :].strip()
        i += 1
        if rest:
            mapping[key] = _yaml_scalar(rest)
        elif i < len(lines) and (
            lines[i][0] > indent or (lines[i][0] == indent and lines[i][1].startswith("- "))
        ):
            mapping[key], i = _yaml_block(lines, i, lines[i][0])
        else:
            mapping[key] = None
    return mapping, i


def _yaml_scalar(text: str) -> Any:
    if text == "{}":
        return {}
    if text.startswith("[") and text.endswith("]"):
        inner = text[1:-1].strip()
        return [_yaml_scalar(part.strip()) for part in inner.split(",")] if inner else []
    if text.startswith('"'):
        return json.loads(text)
    if text in ("true", "false"):
        return text == "true"
    if re.fullmatch(r"-?\d+", text):
        return int(text)
    return text


# ------------------------------------------------------------------------------------------------
# Renders
# ------------------------------------------------------------------------------------------------


def cli_files(bundle: Path, role: str, out: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    """The whole review tree, keys included (nebula -test below needs them)."""
    argv = ("files", role, "--bundle", bundle, "--out", out, "--with-secrets", *extra)
    return run_cli(*argv, env=WITH_PASSPHRASE)


def render_args(role: str) -> tuple[str, ...]:
    chosen = ("--host", CHOSEN) if role == "worker" else ()
    return (*chosen, "--hub-address", HUB_ADDRESS)


# Runs of the real CLI that fail before writing anything: (role, bundle role, extra arguments).
REFUSALS = {
    "worker bundle for hub": ("hub", "worker", ("--hub-address", HUB_ADDRESS)),
    "worker without hub address": ("worker", "worker", ()),
    "unknown worker": ("worker", "worker", ("--host", "gpu-box", "--hub-address", HUB_ADDRESS)),
}


@dataclass
class CliRuns:
    trees: dict[str, Path]
    refusals: dict[str, tuple[subprocess.CompletedProcess[str], Path]]


@pytest.fixture(scope="module")
def cli(farm: Farm, tmp_path_factory: pytest.TempPathFactory) -> CliRuns:
    """The session farm's hub, worker0002 and boss written by ``farmhand files``, and the
    refused runs, in parallel."""
    out = tmp_path_factory.mktemp("cli-render")
    jobs: dict[str, tuple[Any, ...]] = {
        role: (farm.root / BUNDLE_OF[role], role, out / role, *render_args(role)) for role in ROLES
    }
    for name, (role, bundle, extra) in REFUSALS.items():
        jobs[name] = (farm.root / BUNDLE_OF[bundle], role, out / name.replace(" ", "-"), *extra)
    # No more at once than there are cores: scrypt is memory-hard, so more only slow each other
    # down (and with 8 at once, one run here once failed to decrypt a good bundle).
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        results = dict(
            zip(jobs, pool.map(lambda args: cli_files(*args), jobs.values()), strict=True)
        )
    for role in ROLES:
        assert results[role].returncode == 0, output(results[role])
    return CliRuns(
        trees={role: out / role for role in ROLES},
        refusals={name: (results[name], jobs[name][2]) for name in REFUSALS},
    )


@pytest.fixture(scope="module")
def cli_trees(cli: CliRuns) -> dict[str, Path]:
    return cli.trees


def open_bundles(store: Path, names: dict[str, str], farm: Farm | None = None) -> dict[str, Bundle]:
    """Bundles opened by farmhand from tars decrypted at once, in processes (pyrage holds the
    GIL); for the session ``farm``, through its cache of decrypted tars."""
    cache: dict[str, Any] = farm._tars if farm is not None else {}
    missing = [name for name in names.values() if name not in cache]
    if missing:
        tars = decrypt_tars([store / name for name in missing])
        cache.update(zip(missing, tars, strict=True))
    opened = {}
    for role, name in names.items():
        members = cache[name].items()
        data = pack([(n, content, mode) for n, (content, mode) in members], 0)
        opened[role] = bundle_from_tar(data, name)
    return opened


@pytest.fixture(scope="module")
def bundles(farm: Farm, cli: CliRuns) -> dict[str, Bundle]:
    """The session farm's three bundles (after ``cli``: scrypt runs are not to overlap)."""
    return open_bundles(farm.root, BUNDLE_OF, farm)


def library_render(bundle: Bundle, distro: str = "debian-12") -> list[HostFile]:
    distro_id, _, version = distro.partition("-")
    model = host_model(
        bundle,
        host=CHOSEN if bundle.role.value == "worker" else "",
        hub_address=HUB_ADDRESS,
        distro=distro_from_os_release({"ID": distro_id, "VERSION_ID": version}),
        key_logins_work=True,
    )
    return host_files(model)


@pytest.fixture(scope="module")
def rendered(bundles: dict[str, Bundle]) -> dict[str, list[HostFile]]:
    return {role: library_render(bundles[role]) for role in ROLES}


def files_only(root: Path) -> dict[str, tuple[bytes | None, int]]:
    return {path: entry for path, entry in snapshot(root).items() if entry[0] is not None}


def under(tree: Path, path: str) -> Path:
    return tree / path.lstrip("/")


# ------------------------------------------------------------------------------------------------
# The CLI and the library agree; the layout and modes are as on the host
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("role", ROLES)
def test_cli_and_library_render_the_same_files(
    role: str,
    cli_trees: dict[str, Path],
    rendered: dict[str, list[HostFile]],
    tmp_path: Path,
) -> None:
    write_tree(rendered[role], tmp_path, with_secrets=True)
    assert files_only(cli_trees[role]) == files_only(tmp_path)
    expected = {f.path.lstrip("/") for f in rendered[role]}
    assert set(files_only(tmp_path)) == expected
    assert len(expected) == len(rendered[role]), "two rendered files share a path"


def test_render_lays_out_each_role(rendered: dict[str, list[HostFile]]) -> None:
    paths = {role: {f.path for f in files} for role, files in rendered.items()}
    common = {NEBULA_CONFIG, NEBULA_CA, NEBULA_CERT, NEBULA_KEY, "/etc/farmhand/farm.json"}
    assert common | {"/etc/systemd/system/farmhand-nebula.service"} == paths["boss"]
    assert common < paths["hub"]
    assert common < paths["worker"]
    assert "/etc/samba/smb.conf" in paths["hub"]
    assert "/etc/systemd/system/smbd.service.d/farmhand.conf" in paths["hub"]
    assert {f"{NEBULA_POOL}/{n}.crt" for n in WORKER_NAMES} < paths["worker"]
    assert "/etc/systemd/system/mnt-farmhand-farm.automount" in paths["worker"]
    assert "/etc/systemd/system/mnt-farmhand-queue.mount" in paths["worker"]
    assert not any("samba" in p for p in paths["worker"] | paths["boss"])
    at_boot = {f.path for f in rendered["worker"] if f.at_boot}
    assert at_boot == {NEBULA_CERT, NEBULA_KEY, f"{FARMHAND_ETC}/smb-credentials"}, (
        "a worker chooses its certificate, and its share login with it, at boot"
    )
    assert not any(f.at_boot for f in rendered["hub"] + rendered["boss"])


def test_farm_json_names_who_besides_root_reads_a_workers_share_login(
    rendered: dict[str, list[HostFile]],
) -> None:
    """farmhand verify checks the login's owner against it: the render tasks' group under the
    default manager (Slurm); only a worker has the login."""
    meta = {
        role: json.loads(next(f for f in files if f.path == "/etc/farmhand/farm.json").content)
        for role, files in rendered.items()
    }
    assert meta["worker"]["smb_credentials_group"] == "farmhand-jobs"
    assert "smb_credentials_group" not in meta["hub"]
    assert "smb_credentials_group" not in meta["boss"]


@pytest.mark.parametrize("role", ROLES)
def test_modes_secrets_and_no_key_outside_secret_files(
    role: str,
    rendered: dict[str, list[HostFile]],
    bundles: dict[str, Bundle],
    cli_trees: dict[str, Path],
) -> None:
    files = rendered[role]
    assert {f.path for f in files if f.secret} == SECRETS_OF[role]
    for item in files:
        on_disk = stat.S_IMODE(under(cli_trees[role], item.path).stat().st_mode)
        assert on_disk == item.mode, item.path
        name = item.path.rsplit("/", 1)[-1]
        if name.endswith((".key", ".smb")) or name in (
            "smb.password",
            "smb-credentials",
            "smb-workers.passwords",
        ):
            assert item.secret, f"{item.path} holds a secret but is not flagged"
        if item.path == MUNGE_KEY:
            assert (item.mode, item.owner, item.group) == (0o400, "munge", "munge")
        elif item.secret:
            # Group-readable only for the service that must read it (its group, not root's).
            wanted = 0o640 if item.group != "root" else 0o600
            assert item.mode == wanted, f"{item.path} is {item.mode:04o}"
            assert (item.group != "root") == (item.path in GROUP_READABLE), item.path
        elif item.mode & 0o111:
            assert item.mode == 0o755, item.path
    # No private key and no SMB password outside the files flagged secret, for any host.
    keys = [b.key_pem.strip() for bundle in bundles.values() for b in bundle.hosts]
    key_bodies = [key.splitlines()[1] for key in keys]
    passwords = [bundles["hub"].smb_password.encode()]
    passwords += [a.password.encode() for a in worker_accounts(bundles["hub"])]
    for item in files:
        if item.secret:
            continue
        assert b"PRIVATE KEY" not in item.content, item.path
        for password in passwords:
            assert password not in item.content, item.path
        for body in key_bodies:  # not even the base64 line of a key
            assert body not in item.content, item.path


def test_secret_files_hold_what_they_should(
    rendered: dict[str, list[HostFile]], bundles: dict[str, Bundle]
) -> None:
    by_path = {role: {f.path: f for f in files} for role, files in rendered.items()}
    password = bundles["hub"].smb_password
    assert len(password) >= 24, "the SMB password is generated and long"
    assert by_path["hub"][f"{FARMHAND_ETC}/smb.password"].text == password + "\n"
    # A worker logs in with its own certificate's account, never the bosses' (model/smb.py).
    credentials = by_path["worker"][f"{FARMHAND_ETC}/smb-credentials"]
    own = worker_account(bundles["hub"], CHOSEN)
    assert credentials.text == f"username={CHOSEN}\npassword={own.password}\n"
    assert credentials.at_boot, "chosen at boot with the certificate"
    assert by_path["worker"][f"{NEBULA_POOL}/{CHOSEN}.smb"].content == credentials.content
    assert not any(password.encode() in f.content for f in rendered["worker"])
    assert by_path["worker"][NEBULA_KEY].content == bundles["worker"].host(CHOSEN).key_pem
    cert = certificate_from_pem(by_path["worker"][NEBULA_CERT].content)
    assert cert.name == CHOSEN


def test_render_twice_into_the_same_folder_gives_the_same_bytes(
    farm: Farm, cli_trees: dict[str, Path], bundles: dict[str, Bundle], tmp_path: Path
) -> None:
    out = tmp_path / "worker"
    shutil.copytree(cli_trees["worker"], out)
    before = snapshot(out)
    result = cli_files(farm.root / BUNDLE_OF["worker"], "worker", out, *render_args("worker"))
    assert result.returncode == 0, output(result)
    assert snapshot(out) == before
    assert files_only(out) == files_only(cli_trees["worker"])
    # It lists every file it wrote, and never a secret.
    for path in files_only(out):
        assert f"/{path}" in result.stdout
    assert bundles["hub"].smb_password not in result.stdout + result.stderr
    assert "PRIVATE KEY" not in result.stdout + result.stderr


def test_render_is_the_hidden_old_name_of_files(
    farm: Farm, cli_trees: dict[str, Path], tmp_path: Path
) -> None:
    """Scripts that still run ``farmhand render`` get exactly what ``farmhand files`` writes."""
    bundle = farm.root / BUNDLE_OF["worker"]
    args = ("worker", "--bundle", bundle, "--out", tmp_path, "--with-secrets")
    result = run_cli("render", *args, *render_args("worker"), env=WITH_PASSPHRASE)
    assert result.returncode == 0, output(result)
    assert files_only(tmp_path) == files_only(cli_trees["worker"])
    listed = run_cli("--help").stdout
    assert re.search(r"^\W*files\s", listed, re.M), listed
    assert not re.search(r"^\W*render\s", listed, re.M), listed


@pytest.mark.parametrize(
    ("refusal", "fragments"),
    [
        ("worker bundle for hub", ("worker bundle", "not a hub one")),
        ("worker without hub address", ("hub's public address", "--hub-address")),
        ("unknown worker", ("gpu-box",)),
    ],
)
def test_render_refuses_clearly_and_writes_nothing(
    refusal: str, fragments: tuple[str, ...], cli: CliRuns
) -> None:
    result, out = cli.refusals[refusal]
    assert_cli_error(result, *fragments)
    assert not out.exists()


# ------------------------------------------------------------------------------------------------
# Nebula: nebula -test, and the config as nebula parsed it
# ------------------------------------------------------------------------------------------------


def nebula_test(tree: Path, work: Path, config: bytes | None = None) -> tuple[Any, list[Any]]:
    """Run ``nebula -test`` on the tree's config (pki paths pointed into the tree).

    Returns the config as nebula printed it (parsed) and the firewall rules it loaded."""
    nebula = tool("nebula", "nebula")
    text = (config or under(tree, NEBULA_CONFIG).read_bytes()).decode()
    text = text.replace(f"{NEBULA_DIR}/", f"{under(tree, NEBULA_DIR)}/")
    path = work / "nebula-config.yml"
    path.write_text(text)
    result = run(nebula, "-test", "-config", path)
    log = result.stdout + result.stderr
    assert result.returncode == 0, output(result)
    assert "level=error" not in log, log
    assert "level=fatal" not in log, log
    printed = None
    rules = []
    for line in log.splitlines():
        msg = re.search(r'msg=("(?:[^"\\]|\\.)*")', line)
        if printed is None and msg and json.loads(msg.group(1)).startswith("firewall:"):
            printed = parse_yaml(json.loads(msg.group(1)))
        if "Firewall rule added" in line:
            rule = dict(re.findall(r"(\w+):(\[[^\]]*\]|\S*?)(?=[ \]])", line.split("map[", 1)[1]))
            groups = tuple(rule["groups"].strip("[]").split())
            rules.append(
                (
                    rule["direction"],
                    int(rule["proto"]),
                    int(rule["startPort"]),
                    int(rule["endPort"]),
                    groups,
                    rule["host"],
                )
            )
    assert printed is not None, f"nebula did not print its config:\n{log}"
    return printed, rules


@pytest.mark.parametrize("role", ROLES)
def test_nebula_accepts_the_config_with_the_designed_firewall(
    role: str, cli_trees: dict[str, Path], tmp_path: Path
) -> None:
    printed, rules = nebula_test(cli_trees[role], tmp_path)
    assert sorted(rules) == sorted(NEBULA_RULES[role])
    assert len(rules) == len(NEBULA_RULES[role]), "a rule is duplicated"
    # What nebula read is exactly what we wrote (our reader agrees with nebula's).
    ours = parse_yaml(
        under(cli_trees[role], NEBULA_CONFIG)
        .read_text()
        .replace(f"{NEBULA_DIR}/", f"{under(cli_trees[role], NEBULA_DIR)}/")
    )
    assert ours == printed


@pytest.mark.parametrize("role", ROLES)
def test_nebula_config_content(role: str, cli_trees: dict[str, Path], tmp_path: Path) -> None:
    printed, _ = nebula_test(cli_trees[role], tmp_path)
    config = parse_yaml(under(cli_trees[role], NEBULA_CONFIG).read_text())
    assert {k: v for k, v in printed.items() if k != "pki"} == {
        k: v for k, v in config.items() if k != "pki"
    }
    assert config["pki"] == {
        "ca": NEBULA_CA,
        "cert": NEBULA_CERT,
        "key": NEBULA_KEY,
        "disconnect_invalid": True,
    }, "no blocklist before any revocation"
    hub = role == "hub"
    assert config["lighthouse"]["am_lighthouse"] is hub
    assert config["relay"]["am_relay"] is hub
    assert config["relay"]["use_relays"] is True
    if hub:
        assert config["static_host_map"] == {}
        assert config["lighthouse"]["hosts"] == []
        assert "relays" not in config["relay"]
        assert config["listen"]["port"] == PORT
    else:
        assert config["static_host_map"] == {HUB_OVERLAY: [f"{HUB_ADDRESS}:{PORT}"]}
        assert config["lighthouse"]["hosts"] == [HUB_OVERLAY]
        assert config["relay"]["relays"] == [HUB_OVERLAY]
        assert config["listen"]["port"] == 0
    assert config["tun"]["dev"] == NEBULA_DEV
    assert config["tun"]["mtu"] == 1380
    assert config["firewall"]["inbound_action"] == "drop"
    assert config["firewall"]["outbound"] == [{"port": "any", "proto": "any", "host": "any"}]
    assert config["firewall"]["inbound"] == INBOUND[role]


def test_nebula_test_catches_a_broken_config(cli_trees: dict[str, Path], tmp_path: Path) -> None:
    tool("nebula", "nebula")
    good = under(cli_trees["worker"], NEBULA_CONFIG).read_bytes()
    broken = good.replace(b"proto: tcp", b"proto: tcpp", 1)
    assert broken != good
    with pytest.raises(AssertionError):
        nebula_test(cli_trees["worker"], tmp_path, broken)
    wrong_key = good.replace(b"host.key", b"pool/worker0001.key")
    with pytest.raises(AssertionError):
        nebula_test(cli_trees["worker"], tmp_path, wrong_key)


# ------------------------------------------------------------------------------------------------
# Samba
# ------------------------------------------------------------------------------------------------


def run_testparm(path: Path) -> tuple[dict[str, dict[str, str]], str]:
    """``testparm -s -v``: every parameter by section, and what testparm complained about."""
    result = run(tool("testparm", "samba-common-bin"), "-s", "-v", "--suppress-prompt", path)
    assert result.returncode == 0, output(result)
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in result.stdout.splitlines():
        line = line.strip()
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif " = " in line:
            key, _, value = line.partition(" = ")
            current[key] = value
    complaints = [
        line
        for line in result.stderr.splitlines()
        if re.search(r"unknown parameter|error|warning|invalid", line, re.IGNORECASE)
    ]
    return sections, "\n".join(complaints)


def test_smb_conf_passes_testparm(cli_trees: dict[str, Path]) -> None:
    sections, complaints = run_testparm(under(cli_trees["hub"], "/etc/samba/smb.conf"))
    assert complaints == ""
    glob = sections["global"]
    interfaces = glob["interfaces"].split()
    assert len(interfaces) == 1, "Samba listens on the overlay address only"
    assert interfaces[0].split("/")[0] == HUB_OVERLAY
    assert glob["bind interfaces only"] == "Yes"
    assert glob["server min protocol"] == "SMB3"
    assert glob["map to guest"] == "Never"
    assert glob["restrict anonymous"] == "2"
    assert glob["smb ports"] == "445"
    assert glob["disable netbios"] == "Yes"
    assert set(sections) == {"global", "farm", "queue", "installers"}
    for name, params in sections.items():
        assert params.get("guest ok", "No") == "No", name
    for share in ("farm", "queue", "installers"):
        assert sections[share]["path"] == f"/srv/farmhand/{share}"
        assert sections[share]["valid users"] == "farmhand @farmhand-workers"
        assert "force user" not in sections[share], "each account writes as itself"
        assert sections[share].get("read only", "Yes") == ("Yes" if share == "installers" else "No")


def test_testparm_reports_a_typo(cli_trees: dict[str, Path], tmp_path: Path) -> None:
    text = under(cli_trees["hub"], "/etc/samba/smb.conf").read_text()
    broken = tmp_path / "smb.conf"
    broken.write_text(text.replace("bind interfaces only", "bind interfacs only"))
    sections, complaints = run_testparm(broken)
    assert "bind interfacs only" in complaints
    assert sections["global"]["bind interfaces only"] == "No"


# ------------------------------------------------------------------------------------------------
# systemd units and drop-ins
# ------------------------------------------------------------------------------------------------

# What the distribution packages bring, stubbed in the verify root (the rest must be rendered).
PACKAGED_BINARIES = {
    "/usr/bin/nebula",
    "/usr/local/bin/nebula",
    "/bin/kill",
    "/usr/sbin/nft",
    "/usr/bin/python3",
    "/usr/bin/unshare",  # util-linux: slurmctld's own UTS namespace
}
# Installed from the render queue's pinned artifacts (tests/test_lab_queue.py runs them).
PACKAGED_BINARIES |= {
    "/opt/farmhand/mongodb/bin/mongod",
    "/opt/Thinkbox/Deadline10/bin/deadlineworker",
    "/opt/farmhand/flamenco/flamenco-manager",
    "/opt/farmhand/flamenco/flamenco-worker",
}
EXEC_LINE = re.compile(r"^Exec\w+=[-@:+!]*(\S+)", re.MULTILINE)


def unit_files(tree: Path) -> list[Path]:
    systemd = tree / "etc/systemd/system"
    return sorted(p for p in systemd.rglob("*") if p.is_file())


def verify_root(tree: Path, root: Path, samba_service: str = "smbd") -> Path:
    """A copy of ``tree`` with systemd's own units, a stand-in for the distribution's Samba unit
    and stubs for packaged binaries, for ``systemd-analyze verify --root``."""
    if not SYSTEM_UNITS.is_dir():
        pytest.skip("systemd's units are not installed (Debian package 'systemd')")
    shutil.copytree(tree, root, symlinks=True)
    for d in ("bin", "sbin", "lib"):
        (root / "usr" / d).mkdir(parents=True, exist_ok=True)
        (root / d).symlink_to(f"usr/{d}")
    shutil.copytree(SYSTEM_UNITS, root / "usr/lib/systemd/system", symlinks=True)
    (root / f"usr/lib/systemd/system/{samba_service}.service").write_text(
        "[Unit]\nDescription=Samba SMB daemon (stand-in for the distribution's unit)\n\n"
        "[Service]\nType=notify\nExecStart=/usr/sbin/smbd --foreground --no-process-group\n"
        "ExecReload=/bin/kill -HUP $MAINPID\n\n[Install]\nWantedBy=multi-user.target\n"
    )
    for binary in (*PACKAGED_BINARIES, "/usr/sbin/smbd"):
        stub = root / binary.lstrip("/")
        stub.parent.mkdir(parents=True, exist_ok=True)
        if not stub.exists():
            stub.write_text("#!/bin/sh\nexit 0\n")
            stub.chmod(0o755)
    return root


def systemd_verify(root: Path, *units: Path) -> subprocess.CompletedProcess[str]:
    analyze = tool("systemd-analyze", "systemd")
    env = {**os.environ, "SYSTEMD_LOG_COLOR": "0", "SYSTEMD_PAGER": "cat"}
    return run(analyze, "verify", "--man=no", f"--root={root}", *units, env=env)


def check_units(tree: Path, work: Path, samba_service: str = "smbd") -> None:
    root = verify_root(tree, work / "root", samba_service)
    units = unit_files(root)
    assert units
    # Every command a unit runs is either rendered with it (and executable) or packaged.
    for unit in units:
        for command in EXEC_LINE.findall(unit.read_text()):
            assert command.startswith("/"), f"{unit.name}: {command} is not an absolute path"
            if command not in PACKAGED_BINARIES:
                assert os.access(under(tree, command), os.X_OK), f"{unit.name}: {command}"
    main_units = [u for u in units if u.parent.name == "system"]
    dropins = [u for u in units if u.parent.name.endswith(".d")]
    # A drop-in is checked by verifying the unit it extends.
    extended = [root / "usr/lib/systemd/system" / d.parent.name[: -len(".d")] for d in dropins]
    for path in extended:
        assert path.is_file(), f"no unit for the drop-in {path.name}.d"
    result = systemd_verify(root, *main_units, *extended)
    assert result.returncode == 0, output(result)
    assert result.stdout + result.stderr == "", output(result)


@pytest.mark.parametrize("role", ROLES)
def test_units_pass_systemd_analyze_verify(
    role: str, cli_trees: dict[str, Path], tmp_path: Path
) -> None:
    check_units(cli_trees[role], tmp_path)


def test_systemd_analyze_verify_catches_broken_units(
    cli_trees: dict[str, Path], tmp_path: Path
) -> None:
    root = verify_root(cli_trees["hub"], tmp_path / "root")
    systemd = root / "etc/systemd/system"
    good = (systemd / "farmhand-nebula.service").read_text()
    no_exec = systemd / "broken-nebula.service"
    no_exec.write_text(re.sub(r"^ExecStart=.*$", "", good, flags=re.MULTILINE))
    result = systemd_verify(root, no_exec)
    assert result.returncode != 0, output(result)
    assert "ExecStart" in result.stderr
    missing = systemd / "missing-nebula.service"
    missing.write_text(good.replace("/usr/bin/nebula", "/usr/bin/nebula-not-installed"))
    result = systemd_verify(root, missing)
    assert result.returncode != 0, output(result)
    # A typo in a drop-in: systemd only warns, which check_units treats as a failure.
    dropin = systemd / "smbd.service.d/farmhand.conf"
    dropin.write_text(dropin.read_text().replace("PartOf=", "PartOff="))
    result = systemd_verify(root, root / "usr/lib/systemd/system/smbd.service")
    assert "Unknown key 'PartOff'" in result.stderr, output(result)


# ------------------------------------------------------------------------------------------------
# sshd, nftables and shell scripts
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def sshd_check() -> Iterator[Any]:
    """``check(dropin_text) -> (result, effective config)``: ``sshd -t`` then ``sshd -T`` on a
    minimal sshd_config that Includes the drop-in. As root, sshd runs as nobody: the test mode
    of a root sshd insists on /run/sshd, which this machine need not have."""
    sshd = tool("sshd", "openssh-server")
    keygen = tool("ssh-keygen", "openssh-client")
    with tempfile.TemporaryDirectory(prefix="farmhand-sshd-") as name:
        work = Path(name)
        work.chmod(0o755)
        run(keygen, "-q", "-t", "ed25519", "-N", "", "-f", work / "host_key", check=True)
        kwargs: dict[str, Any] = {}
        if os.geteuid() == 0:
            nobody = pwd.getpwnam("nobody")
            os.chown(work / "host_key", nobody.pw_uid, nobody.pw_gid)
            kwargs = {"user": nobody.pw_uid, "group": nobody.pw_gid, "extra_groups": []}
        config = work / "sshd_config"
        config.write_text(
            f"HostKey {work / 'host_key'}\nInclude {work / 'dropin.conf'}\nPidFile none\n"
        )

        def check(dropin: str) -> tuple[subprocess.CompletedProcess[str], str]:
            (work / "dropin.conf").write_text(dropin)
            tested = run(sshd, "-t", "-f", config, **kwargs)
            effective = (
                run(sshd, "-T", "-f", config, **kwargs).stdout if not tested.returncode else ""
            )
            return tested, effective

        yield check


@pytest.mark.parametrize("role", ["hub", "worker"])
def test_sshd_accepts_the_dropin(role: str, cli_trees: dict[str, Path], sshd_check: Any) -> None:
    dropin = under(cli_trees[role], "/etc/ssh/sshd_config.d/00-farmhand.conf").read_text()
    result, effective = sshd_check(dropin)
    assert result.returncode == 0, output(result)
    assert "passwordauthentication no" in effective.splitlines()
    assert "kbdinteractiveauthentication no" in effective.splitlines()
    result, _ = sshd_check(dropin.replace("PasswordAuthentication", "PasswordAuthenticaton"))
    assert result.returncode != 0, output(result)
    assert "Bad configuration option" in result.stderr


def test_sshd_dropin_only_where_a_key_login_works(bundles: dict[str, Bundle]) -> None:
    for role in ("hub", "worker"):
        model = host_model(bundles[role], hub_address=HUB_ADDRESS, key_logins_work=False)
        assert not any("00-farmhand.conf" in f.path for f in host_files(model))


@pytest.mark.parametrize("role", ["hub", "worker"])
def test_nft_accepts_the_ruleset(role: str, cli_trees: dict[str, Path], tmp_path: Path) -> None:
    nft = tool("nft", "nftables")
    if os.geteuid() != 0:
        pytest.skip("nft -c needs root (CAP_NET_ADMIN) even to check a ruleset")
    ruleset = under(cli_trees[role], "/etc/farmhand/nftables.conf")
    result = run(nft, "-c", "-f", ruleset)
    assert result.returncode == 0, output(result)
    broken = tmp_path / "broken.nft"
    broken.write_text(ruleset.read_text().replace("policy drop;", "policy dorp;"))
    result = run(nft, "-c", "-f", broken)
    assert result.returncode != 0, output(result)
    # Publicly only SSH, and on the hub the Nebula port; the overlay is Nebula's to filter.
    text = ruleset.read_text()
    assert "policy drop;" in text
    assert re.findall(r"^\s*(tcp|udp) dport (.*) accept$", text, re.MULTILINE) == [
        ("tcp", "{ 22 }"),
        *([("udp", str(PORT))] if role == "hub" else []),
    ]
    assert f'iifname "{NEBULA_DEV}" accept' in text
    unit = under(cli_trees[role], "/etc/systemd/system/farmhand-firewall.service").read_text()
    assert "ExecStart=/usr/sbin/nft -f /etc/farmhand/nftables.conf" in unit


@pytest.mark.parametrize(
    ("role", "unit"), [("hub", "farmhand-slurmctld.service"), ("worker", "farmhand-slurmd.service")]
)
def test_slurms_daemons_stop_and_start_with_nebula(
    role: str, unit: str, cli_trees: dict[str, Path]
) -> None:
    """A worker that lost its lease stops Nebula, then starts it: Slurm is pulled up with it."""
    text = under(cli_trees[role], f"/etc/systemd/system/{unit}").read_text()
    assert "BindsTo=farmhand-nebula.service" in text.splitlines()
    install = text.split("[Install]", 1)[1].split()
    assert install == ["WantedBy=multi-user.target", "farmhand-nebula.service"]


def shell_scripts(tree: Path) -> list[Path]:
    return [
        p
        for p in sorted(tree.rglob("*"))
        if p.is_file() and p.read_bytes().startswith((b"#!/bin/sh", b"#!/bin/bash"))
    ]


@pytest.mark.parametrize("role", ["hub", "worker"])
def test_shell_scripts_parse(role: str, cli_trees: dict[str, Path], tmp_path: Path) -> None:
    scripts = shell_scripts(cli_trees[role])
    names = {p.name for p in scripts}
    assert names == ({"wait-overlay"} if role == "hub" else {"farmhand-idle", "slurmd-start"})
    for script in scripts:
        result = run("sh", "-n", script)
        assert result.returncode == 0, output(result)
        broken = tmp_path / script.name
        broken.write_text(script.read_text().replace("done", "", 1).replace("esac", "", 1))
        assert run("sh", "-n", broken).returncode != 0


# ------------------------------------------------------------------------------------------------
# Certificate leases: the hub's sshd entry (the picker itself: tests/test_leases*.py)
# ------------------------------------------------------------------------------------------------


def test_lease_dropin_keeps_the_default_host_keys_first(
    cli_trees: dict[str, Path], sshd_check: Any
) -> None:
    dropin = under(cli_trees["hub"], "/etc/ssh/sshd_config.d/40-farmhand-lease.conf").read_text()
    listed = re.findall(r"^HostKey (\S+)$", dropin, re.MULTILINE)
    assert listed == [*DEFAULT_SSH_HOST_KEYS, leases.HUB_HOST_KEY]
    result, effective = sshd_check(dropin)
    assert result.returncode == 0, output(result)
    assert f"hostkey {leases.HUB_HOST_KEY}" in effective.splitlines()
    authorized = under(cli_trees["hub"], leases.LEASE_AUTHORIZED_KEYS).read_text()
    entries = [ln for ln in authorized.splitlines() if ln and not ln.startswith("#")]
    assert len(entries) == 1
    assert entries[0].startswith(f'restrict,command="/usr/bin/python3 {leases.LIB} serve" ')
    pub = under(cli_trees["hub"], leases.HUB_HOST_KEY + ".pub").read_text().split()
    assert pub[0] == "ecdsa-sha2-nistp384"
    # Workers pin exactly that key, under a fixed alias, and hold the claim key 0600.
    known = under(cli_trees["worker"], leases.KNOWN_HOSTS).read_text().split()
    assert known == [leases.HOST_KEY_ALIAS, pub[0], pub[1]]
    claim = under(cli_trees["worker"], leases.CLAIM_KEY)
    assert stat.S_IMODE(claim.stat().st_mode) == 0o600
    assert entries[0].split()[-2] != "", "the hub authorises the claim key's public half"
    # Hub and workers run this very module (stdlib only) as the lease service and the picker.
    source = Path(leases.__file__).read_bytes()
    for role in ("hub", "worker"):
        script = under(cli_trees[role], leases.LIB)
        assert script.read_bytes() == b"#!/usr/bin/python3\n" + source
        assert stat.S_IMODE(script.stat().st_mode) == 0o755
    config = json.loads(under(cli_trees["worker"], leases.WORKER_CONFIG).read_text())
    assert (config["hub"], config["hub_port"], config["ttl"]) == (HUB_ADDRESS, 22, 180)
    pool = json.loads(under(cli_trees["hub"], leases.HUB_POOL).read_text())
    assert [p["name"] for p in pool["pool"]] == list(WORKER_NAMES)
    assert pool["per_source"] == leases.default_per_source(len(WORKER_NAMES))


def test_lease_per_source_from_farm_toml_reaches_the_hubs_pool(bundles: dict[str, Bundle]) -> None:
    hub = bundles["hub"]

    def pool_with(value: object) -> dict[str, Any]:
        plan = hub.plan.with_settings(lease_per_source=value)
        files = {f.path: f for f in library_render(replace(hub, plan=plan))}
        return dict(json.loads(files[leases.HUB_POOL].content))

    assert pool_with(20)["per_source"] == 20, "workers behind one NAT address"
    with pytest.raises(UsageError, match=r'lease_per_source = "lots": expected a whole number'):
        pool_with("lots")


# ------------------------------------------------------------------------------------------------
# Other distributions (library render)
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("distro", ["almalinux-8", "rocky-9"])
def test_el_hub_files(distro: str, bundles: dict[str, Bundle], tmp_path: Path) -> None:
    files = {f.path: f for f in library_render(bundles["hub"], distro)}
    assert not any("nftables" in p or "farmhand-firewall" in p for p in files)
    zone = ET.fromstring(files["/etc/firewalld/zones/farmhand-overlay.xml"].content)  # noqa: S314
    assert zone.tag == "zone"
    assert zone.get("target") == "ACCEPT"
    assert [i.get("name") for i in zone.iter("interface")] == [NEBULA_DEV]
    assert "/etc/systemd/system/smb.service.d/farmhand.conf" in files
    unit = files["/etc/systemd/system/farmhand-nebula.service"].text
    assert "ExecStart=/usr/local/bin/nebula -config" in unit
    tree = tmp_path / "tree"
    write_tree(list(files.values()), tree, with_secrets=True)
    check_units(tree, tmp_path, samba_service="smb")


@pytest.mark.parametrize(
    ("distro", "binary"),
    [
        ("debian-12", "/usr/bin/nebula"),
        ("ubuntu-24.04", "/usr/bin/nebula"),
        ("ubuntu-22.04", "/usr/local/bin/nebula"),  # jammy has no nebula package
        ("almalinux-9", "/usr/local/bin/nebula"),
    ],
)
def test_nebula_binary_per_distribution(
    distro: str, binary: str, bundles: dict[str, Bundle]
) -> None:
    files = {f.path: f for f in library_render(bundles["boss"], distro)}
    assert (
        f"ExecStart={binary} -config" in files["/etc/systemd/system/farmhand-nebula.service"].text
    )


# ------------------------------------------------------------------------------------------------
# A revoked worker
# ------------------------------------------------------------------------------------------------


def test_a_revoked_worker_is_blocklisted_everywhere_and_left_out_of_the_pool(
    store: Path, tmp_path: Path
) -> None:
    revoked = "worker0004"
    result = run_cli("keys", "revoke", revoked, "--dir", store, env=WITH_PASSPHRASE)
    assert result.returncode == 0, output(result)
    register = json.loads((store / "register.json").read_text())
    fingerprint = next(c["fingerprint"] for c in register["certificates"] if c["name"] == revoked)
    reissued = open_bundles(store, {r: BUNDLE_OF[r] for r in ("hub", "worker")})
    with pytest.raises(BundleError, match=revoked):
        host_model(reissued["worker"], host=revoked, hub_address=HUB_ADDRESS)
    trees = {}
    for role, bundle in reissued.items():
        trees[role] = tmp_path / role
        write_tree(library_render(bundle), trees[role], with_secrets=True)
        config = parse_yaml(under(trees[role], NEBULA_CONFIG).read_text())
        assert fingerprint in config["pki"]["blocklist"], role
        printed, _ = nebula_test(trees[role], tmp_path)
        assert printed["pki"]["blocklist"] == config["pki"]["blocklist"], role
    pool_files = {p.name for p in under(trees["worker"], NEBULA_POOL).iterdir()}
    assert pool_files == {
        f"{n}.{kind}" for n in WORKER_NAMES if n != revoked for kind in ("crt", "key", "smb")
    }
    # Nor does the hub's lease pool: its certificate is never handed out again.
    pool = json.loads(under(trees["hub"], leases.HUB_POOL).read_text())
    assert revoked not in {p["name"] for p in pool["pool"]}
    # And the hub sets no share account for it (its deploy removes the old one from Samba).
    listed = under(trees["hub"], f"{FARMHAND_ETC}/smb-workers.passwords").read_text()
    assert revoked not in {line.split()[0] for line in listed.splitlines()}


def test_the_hub_lets_each_live_boss_run_the_job_service_and_nothing_else(
    rendered: dict[str, list[HostFile]],
) -> None:
    """One forced-command line per boss, naming that boss (the service takes the name from
    the key line, never from the client); workers get the task's config, bosses nothing."""
    hub = {f.path: f for f in rendered["hub"]}
    text = hub["/var/lib/farmhand-jobs/.ssh/authorized_keys"].text
    lines = [line for line in text.splitlines() if line and not line.startswith("#")]
    assert len(lines) == 1, lines
    assert re.fullmatch(
        r'restrict,command="/usr/bin/python3 /usr/local/lib/farmhand/jobs\.py serve alice" '
        r"ssh-ed25519 [A-Za-z0-9+/]+=* farmhand-jobs-alice",
        lines[0],
    ), lines[0]
    config = json.loads(hub["/etc/farmhand/jobs.json"].text)
    assert config["share_root"] == "/srv/farmhand/farm"
    worker = {f.path: f for f in rendered["worker"]}
    task = json.loads(worker["/etc/farmhand/jobs-worker.json"].text)
    assert task["hub"] == "10.87.0.1"
    assert task["credentials"] == "/etc/farmhand/smb-credentials"
    assert task["autoexec"] is False
    assert not any("jobs" in f.path for f in rendered["boss"])
