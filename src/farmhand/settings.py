"""farm.toml's settings, each declared once: its name, type, default, check and meaning.

Modelled on mkosi's ``ConfigSetting``/``SETTINGS`` (mkosi/config.py): one frozen
:class:`ConfigSetting` per key in :data:`SETTINGS`, and everything else is derived from that
list: reading and checking farm.toml (and the copy of the plan inside every keybundle), the
typed :class:`FarmSettings` the rest of farmhand reads, ``farmhand keys settings`` and the
settings table in README.md (:func:`markdown`).

farm.toml is checked whenever it is read. An unknown key or a bad value is one line that names
the key, the value and what is allowed, with "did you mean" for a near miss::

    lease_tll = "3m": unknown setting; did you mean lease_ttl?
    lease_ssh_port = 0: expected a port number from 1 to 65535

The file itself is never rewritten differently: :class:`FarmSettings` keeps what farm.toml says
as it says it (``given``), and that is what goes back into farm.toml and the bundles.
"""

from __future__ import annotations

import difflib
import json
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum
from ipaddress import AddressValueError, IPv4Address
from typing import Any

from farmhand.durations import format_duration, parse_duration
from farmhand.errors import UsageError

# The plan's values and checks (a leaf); keystore/plan.py reads farm.toml through this module.
from farmhand.keystore import plan_fields as p


class RenderManager(str, Enum):
    SLURM = "slurm"
    DEADLINE = "deadline"
    FLAMENCO = "flamenco"


class Renderer(str, Enum):
    BLENDER = "blender"
    BELLA = "bella"


DEFAULT_RENDER_PROCESSES = (
    "blender",  # Blender, also as flamenco-worker's and Deadline's child
    "bella_cli",  # Bella (oomerfarm's renderer)
    "deadlinesandbox",  # Deadline 10.1+: one per task being rendered (deadlineworker idles)
    "kick",  # Arnold
    "husk",  # Houdini/USD
    "hython",
    "vray",
    "ffmpeg",  # Flamenco's video-encoding tasks
    "slurmstepd",  # Slurm: one per job step running on the node (slurmd idles)
)
"""Names that mean a render is running. Long-lived agents (deadlineworker, flamenco-worker,
slurmd) are deliberately absent: they run while idle too, and would keep a worker up forever."""

ARTIFACT_KEYS = ("deadline", "mongodb", "mongosh", "flamenco", "blender", "bella")
"""What ``KEY`` in ``[artifacts.KEY]`` may be: the keys of farmhand/artifacts.py's artifacts."""

MINUTES_TOP = 60 * 24 * 365
"""The longest idle setting: a year of minutes."""


# ---------------------------------------------------------------------------------------------
# Kinds: how a value is spelt in farm.toml and how it is read


class Invalid(ValueError):
    """A value a kind refuses. ``str()`` is the reason; empty means "expected ALLOWED"."""


@dataclass(frozen=True)
class Kind:
    """A setting's type: ``name`` for tables, ``allowed`` for errors, ``parse`` to read it.

    ``parse`` takes the value as TOML gives it and returns the typed value, or raises
    :class:`Invalid`. It never converts between TOML types: ``"22"`` is not a port."""

    name: str
    allowed: str
    parse: Callable[[Any], Any]


def integer(low: int, high: int, name: str = "", what: str = "a whole number") -> Kind:
    def parse(value: Any) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
            raise Invalid
        return value

    return Kind(name or f"integer {low}-{high}", f"{what} from {low} to {high}", parse)


def boolean() -> Kind:
    def parse(value: Any) -> bool:
        if not isinstance(value, bool):
            raise Invalid
        return value

    return Kind("true or false", "true or false", parse)


def number(low: float) -> Kind:
    def parse(value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= low:
            raise Invalid
        return float(value)

    return Kind(f"number, at least {low:g}", f"a number of at least {low:g}", parse)


def duration(minimum: int, examples: str) -> Kind:
    shortest = format_duration(minimum)
    least = f" of at least {shortest}" if minimum > 1 else ""
    allowed = f"a duration{least} such as {examples} (units y, w, d, h, m, s)"

    def parse(value: Any) -> int:
        if not isinstance(value, str):
            raise Invalid
        try:
            seconds = parse_duration(value)
        except UsageError:
            raise Invalid from None
        if seconds < minimum:
            raise Invalid
        return seconds

    return Kind(f"duration, at least {shortest}" if least else "duration", allowed, parse)


def choice(enum: type[Enum]) -> Kind:
    values = [str(member.value) for member in enum]
    allowed = "one of " + ", ".join(f'"{v}"' for v in values)

    def parse(value: Any) -> Enum:
        if isinstance(value, str) and value in values:
            return enum(value)
        close = difflib.get_close_matches(str(value).lower(), values, n=1)
        raise Invalid(f"expected {allowed}" + (f'; did you mean "{close[0]}"?' if close else ""))

    return Kind(" or ".join(f'"{v}"' for v in values), allowed, parse)


def matching(pattern: str, name: str, allowed: str, *, lower: bool = False) -> Kind:
    """A string the whole of which matches ``pattern`` (``re.fullmatch``: no stray newline)."""
    compiled = re.compile(pattern)

    def parse(value: Any) -> str:
        if not isinstance(value, str) or not compiled.fullmatch(value):
            raise Invalid
        return value.lower() if lower else value

    return Kind(name, allowed, parse)


def names(pattern: str, name: str, allowed: str) -> Kind:
    """A list of names, or one string of names separated by spaces, each matching whole."""
    compiled = re.compile(pattern)

    def parse(value: Any) -> tuple[str, ...]:
        # Spaces separate names; any other whitespace (a newline, a tab) is refused with them.
        items = [i for i in value.split(" ") if i] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(
            isinstance(item, str) and compiled.fullmatch(item) for item in items
        ):
            raise Invalid
        return tuple(items)

    return Kind(name, allowed, parse)


def checked(check: Callable[[str], Any], name: str, allowed: str) -> Kind:
    """A string read by one of the plan's own checks; its message is the reason."""

    def parse(value: Any) -> Any:
        if not isinstance(value, str):
            raise Invalid
        try:
            return check(value)
        except UsageError as exc:
            raise Invalid(str(exc)) from None

    return Kind(name, allowed, parse)


def _plan_format(value: Any) -> int:
    if isinstance(value, bool) or value != p.PLAN_FORMAT:
        raise Invalid(f"unsupported farm plan format (this farmhand reads format {p.PLAN_FORMAT})")
    return p.PLAN_FORMAT


def _ipv4(text: str) -> IPv4Address:
    try:
        return IPv4Address(text)
    except AddressValueError:
        raise UsageError(f"invalid address {text!r}: not an IPv4 address") from None


def _range(what: str) -> Callable[[str], p.AddressRange]:
    return lambda text: p.AddressRange.parse(text, what)


PORT = integer(*p.PORT_RANGE, name="port", what="a port number")
SHA256 = matching(r"[0-9A-Fa-f]{64}", "sha256", "a sha256: 64 hex digits", lower=True)
RANGE = "address range"
RANGE_ALLOWED = "FIRST-LAST, two addresses of the network"


# ---------------------------------------------------------------------------------------------
# The declarations


class Group(str, Enum):
    """Where a setting is documented; the plan's own keys are read into FarmPlan."""

    PLAN = "plan"
    ADDRESSES = "addresses"
    LEASES = "leases"
    IDLE = "idle"
    QUEUE = "queue"
    ARTIFACTS = "artifacts"
    NEBULA = "nebula"
    STATUS = "status"

    @property
    def heading(self) -> str:
        return _GROUP_TITLES[self]


_GROUP_TITLES = {
    Group.PLAN: "The farm plan, written by `farmhand keygen`",
    Group.ADDRESSES: "`[addresses]`: overlay address ranges, inclusive (keygen scales the "
    "defaults to the network)",
    Group.LEASES: "Worker certificate leases (see Cloning workers)",
    Group.IDLE: "Idle shutdown of workers (see Idle shutdown; `0` turns a rule off)",
    Group.QUEUE: "The render queue",
    Group.ARTIFACTS: "`[artifacts.KEY]`: checksums of the render queue's installers",
    Group.NEBULA: "Nebula",
    Group.STATUS: "`farmhand status`",
}
PLAN_GROUPS = (Group.PLAN, Group.ADDRESSES)


@dataclass(frozen=True)
class ConfigSetting:
    """One farm.toml key.

    ``dest`` is the attribute it is read into: a field of FarmPlan (group PLAN), of AddressPlan
    (ADDRESSES) or of :class:`FarmSettings` (every other group); empty for a key that is only
    checked. ``default`` is spelt as in farm.toml, ``None`` for "not set"; a ``required`` key
    has no default in the file (keygen writes it) and ``default`` is keygen's. ``table`` is
    the TOML table the key is in (``""`` for the top level); its ``KEY`` part may be any of
    ``keys``.
    """

    dest: str
    group: Group
    kind: Kind
    help: str
    default: Any = None
    key: str = ""
    table: str = ""
    required: bool = False
    keys: tuple[str, ...] = ()
    default_text: str = ""

    def __post_init__(self) -> None:
        if not self.key:
            object.__setattr__(self, "key", self.dest)

    @property
    def name(self) -> str:
        """The dotted name: ``lease_ttl``, ``addresses.hub``, ``artifacts.KEY.sha256``."""
        return f"{self.table}.{self.key}" if self.table else self.key

    @property
    def names(self) -> tuple[str, ...]:
        """Every name it stands for, ``KEY`` filled in."""
        if not self.keys:
            return (self.name,)
        return tuple(self.name.replace("KEY", key) for key in self.keys)

    @property
    def shown_default(self) -> str:
        """The default for people: as farm.toml spells it, or in words."""
        if self.default_text:
            return self.default_text
        return "not set" if self.default is None else toml_value(self.default, limit=0)

    def default_value(self) -> Any:
        """The default, typed (``{}`` for a table of ``KEY``\\s)."""
        if self.keys:
            return {}
        return None if self.default is None else self.kind.parse(self.default)


_DEFAULT_ADDRESSES = p.default_addresses(p.parse_network(p.DEFAULT_NETWORK))

SETTINGS: tuple[ConfigSetting, ...] = (
    # --- the plan's own keys, in farm.toml's order -------------------------------------------
    ConfigSetting(
        "",
        Group.PLAN,
        Kind("integer", f"{p.PLAN_FORMAT}", _plan_format),
        "The version of farm.toml's layout.",
        p.PLAN_FORMAT,
        key="format",
        required=True,
    ),
    ConfigSetting(
        "name",
        Group.PLAN,
        checked(p.validate_farm_name, "farm name", "letters, digits, '.', '_' or '-' (at most 63)"),
        "The farm's name, in its CA's name.",
        p.DEFAULT_NAME,
        required=True,
    ),
    ConfigSetting(
        "network",
        Group.PLAN,
        checked(p.parse_network, "IPv4 network", f"an IPv4 CIDR of /{p.SMALLEST_PREFIX} or larger"),
        f"The overlay network (a /{p.SMALLEST_PREFIX} or larger); the CA signs only addresses "
        "inside it.",
        p.DEFAULT_NETWORK,
        required=True,
    ),
    ConfigSetting(
        "port", Group.PLAN, PORT, "The hub's public Nebula UDP port.", p.DEFAULT_PORT, required=True
    ),
    ConfigSetting(
        "hub_address",
        Group.PLAN,
        checked(
            p.validate_hub_address, "host name or IPv4", "a DNS host name or IPv4 address, or empty"
        ),
        "The hub's public DNS host name or IPv4 address, no port (empty: given at deploy time).",
        "",
    ),
    ConfigSetting(
        "ca_lifetime",
        Group.PLAN,
        duration(1, '"5y" or "90d"'),
        "How long the CA is valid.",
        format_duration(p.DEFAULT_CA_LIFETIME),
        required=True,
    ),
    ConfigSetting(
        "cert_lifetime",
        Group.PLAN,
        duration(1, '"1y" or "90d"'),
        "How long host certificates are valid (they never outlive the CA).",
        format_duration(p.DEFAULT_CA_LIFETIME),
        required=True,
        default_text="the CA's lifetime",
    ),
    ConfigSetting(
        "mtu",
        Group.PLAN,
        integer(*p.MTU_RANGE),
        "The overlay MTU. Raise it (e.g. to 1440) only when every host's path carries more.",
        p.DEFAULT_MTU,
    ),
    ConfigSetting(
        "farm_user",
        Group.PLAN,
        checked(p.validate_user, "Unix user name", "a lowercase Unix user name"),
        "The user that owns the shares and runs the renders, the same on every host.",
        p.DEFAULT_FARM_USER,
    ),
    ConfigSetting(
        "farm_uid",
        Group.PLAN,
        integer(*p.UID_RANGE),
        "The farm user's uid and gid, the same on every host.",
        p.DEFAULT_FARM_UID,
    ),
    ConfigSetting(
        "hub",
        Group.ADDRESSES,
        checked(_ipv4, "IPv4 address", "an IPv4 address in the lighthouses range"),
        "The hub's overlay address (in the lighthouses range).",
        str(_DEFAULT_ADDRESSES.hub),
        table="addresses",
        required=True,
    ),
    ConfigSetting(
        "lighthouses",
        Group.ADDRESSES,
        checked(_range("lighthouses"), RANGE, RANGE_ALLOWED),
        "Lighthouses: the hub, and room for more.",
        str(_DEFAULT_ADDRESSES.lighthouses),
        table="addresses",
        required=True,
    ),
    ConfigSetting(
        "servers",
        Group.ADDRESSES,
        checked(_range("servers"), RANGE, RANGE_ALLOWED),
        "Reserved for servers.",
        str(_DEFAULT_ADDRESSES.servers),
        table="addresses",
        required=True,
    ),
    ConfigSetting(
        "bosses",
        Group.ADDRESSES,
        checked(_range("bosses"), RANGE, RANGE_ALLOWED),
        "Bosses: people's machines.",
        str(_DEFAULT_ADDRESSES.bosses),
        table="addresses",
        required=True,
    ),
    ConfigSetting(
        "workers",
        Group.ADDRESSES,
        checked(_range("workers"), RANGE, RANGE_ALLOWED),
        "Workers: `worker0001`, `worker0002`, ...",
        str(_DEFAULT_ADDRESSES.workers),
        table="addresses",
        required=True,
    ),
    # --- leases --------------------------------------------------------------------------------
    ConfigSetting(
        "lease_ttl",
        Group.LEASES,
        duration(6, '"90s" or "3m"'),
        "How long a worker's certificate lease lasts unless renewed; workers renew it three "
        "times per lease.",
        "3m",
    ),
    ConfigSetting(
        "lease_ssh_port",
        Group.LEASES,
        PORT,
        "The hub's SSH port that workers claim their certificates on.",
        22,
    ),
    ConfigSetting(
        "lease_per_source",
        Group.LEASES,
        integer(0, 100_000),
        "How many worker certificates one source address may hold at once (0: half the pool, "
        "rounded up). Raise it when many workers share one NAT address.",
        0,
    ),
    # --- idle shutdown -------------------------------------------------------------------------
    ConfigSetting(
        "idle_after_minutes",
        Group.IDLE,
        integer(0, MINUTES_TOP),
        "Power off after this long idle: CPU below the threshold **and** no render process.",
        20,
    ),
    ConfigSetting(
        "idle_boot_grace_minutes",
        Group.IDLE,
        integer(0, MINUTES_TOP),
        "Never power off this soon after boot.",
        15,
    ),
    ConfigSetting(
        "idle_max_uptime_minutes",
        Group.IDLE,
        integer(0, MINUTES_TOP),
        "Cost cap: power off after this long up, busy or not (e.g. 720 for rentals).",
        0,
    ),
    ConfigSetting(
        "idle_cap_grace_minutes",
        Group.IDLE,
        integer(0, MINUTES_TOP),
        "Past the cap, wait this long for a running render to finish (`0`: the cap is hard).",
        60,
    ),
    ConfigSetting(
        "idle_cpu_percent",
        Group.IDLE,
        integer(0, 100),
        "CPU use (all cores) at or above this counts as busy.",
        10,
    ),
    ConfigSetting(
        "idle_render_processes",
        Group.IDLE,
        names(
            r"[A-Za-z0-9._+-]{1,64}",
            "list of process names",
            "a list of process names (letters, digits, . _ + -), or one string of them",
        ),
        "Process names that mean a render is running.",
        list(DEFAULT_RENDER_PROCESSES),
    ),
    # --- the render queue ----------------------------------------------------------------------
    ConfigSetting(
        "render_manager",
        Group.QUEUE,
        choice(RenderManager),
        "The render manager the hub runs and workers serve.",
        RenderManager.SLURM.value,
    ),
    ConfigSetting(
        "deadline_web_service",
        Group.QUEUE,
        matching(
            r"https?://[A-Za-z0-9.-]{1,253}(:[0-9]{1,5})?",
            "URL",
            'an http:// URL with a host and an optional port, like "http://127.0.0.1:8081"',
        ),
        'With `render_manager = "deadline"`: the Deadline Web Service the job commands use, '
        "by default the one the boss's own Deadline Client runs (`deadlinewebservice`).",
        "http://127.0.0.1:8081",
    ),
    ConfigSetting(
        "renderer",
        Group.QUEUE,
        choice(Renderer),
        "The renderer workers get.",
        Renderer.BLENDER.value,
    ),
    ConfigSetting(
        "blender_autorun",
        Group.QUEUE,
        boolean(),
        "Let Blender run the Python scripts inside scenes (`--enable-autoexec`). Off: every "
        "Blender farmhand starts gets `--disable-autoexec`. See the warning below.",
        False,
    ),
    ConfigSetting(
        "artifact_sha256",
        Group.ARTIFACTS,
        SHA256,
        "The sha256 of the installer KEY (" + ", ".join(ARTIFACT_KEYS) + "), from the vendor's "
        "published checksum (it overrides one farmhand ships: Blender's). A deploy that needs "
        "the file stops without it.",
        key="sha256",
        table="artifacts.KEY",
        keys=ARTIFACT_KEYS,
    ),
    # --- nebula, status ------------------------------------------------------------------------
    ConfigSetting(
        "nebula_sha256",
        Group.NEBULA,
        SHA256,
        "The sha256 of your own nebula-linux-amd64.tar.gz (given with --artifacts), for hosts "
        "with no nebula package.",
        default_text="the pinned release's",
    ),
    ConfigSetting(
        "worker_hourly_price",
        Group.STATUS,
        number(0),
        "What one worker costs per hour: status shows the running workers' cost.",
        default_text="not set (no cost shown)",
    ),
    ConfigSetting(
        "currency",
        Group.STATUS,
        matching(
            r"[^\s\x00-\x1f\x7f-\x9f]{1,8}",
            "currency",
            'a currency such as "EUR" (1-8 characters, no spaces)',
        ),
        "The currency of worker_hourly_price.",
        "USD",
    ),
)

BY_NAME = {setting.name: setting for setting in SETTINGS}
_PLAN_SETTINGS = tuple(s for s in SETTINGS if s.group in PLAN_GROUPS)
_FARM_SETTINGS = tuple(s for s in SETTINGS if s.group not in PLAN_GROUPS)
PLAN_KEYS = frozenset(s.name.split(".")[0] for s in _PLAN_SETTINGS)
"""farm.toml's top-level keys that belong to the plan itself; the rest are FarmSettings'."""


# ---------------------------------------------------------------------------------------------
# The typed settings


@dataclass(frozen=True)
class FarmSettings:
    """farm.toml's settings beyond the plan's own keys, checked and typed.

    ``given`` is what farm.toml says, as it says it and in its order: it goes back into
    farm.toml and the bundles unchanged. Every other field is read from it (or is the
    declared default), so a FarmSettings is always valid: a bad ``given`` is refused here.
    """

    given: Mapping[str, Any] = field(default_factory=dict)
    lease_ttl: int = field(init=False)
    lease_ssh_port: int = field(init=False)
    lease_per_source: int = field(init=False)
    idle_after_minutes: int = field(init=False)
    idle_boot_grace_minutes: int = field(init=False)
    idle_max_uptime_minutes: int = field(init=False)
    idle_cap_grace_minutes: int = field(init=False)
    idle_cpu_percent: int = field(init=False)
    idle_render_processes: tuple[str, ...] = field(init=False)
    render_manager: RenderManager = field(init=False)
    deadline_web_service: str = field(init=False)
    renderer: Renderer = field(init=False)
    blender_autorun: bool = field(init=False)
    artifact_sha256: Mapping[str, str] = field(init=False)
    """``[artifacts.KEY] sha256`` by KEY, lowercase."""
    nebula_sha256: str | None = field(init=False)
    worker_hourly_price: float | None = field(init=False)
    currency: str = field(init=False)

    def __post_init__(self) -> None:
        given = dict(self.given)
        object.__setattr__(self, "given", given)
        values = {s.dest: s.default_value() for s in _FARM_SETTINGS}
        for setting, key, value in _read(given, _FARM_SETTINGS):
            if setting.keys:
                values[setting.dest][key] = value
            else:
                values[setting.dest] = value
        for dest, value in values.items():
            object.__setattr__(self, dest, value)


def read_plan(data: Any) -> dict[str, Any]:
    """FarmPlan's arguments from farm.toml (or a bundle's copy of it), every key checked.

    Raises UsageError, one line, for the first problem: an unsupported format, an unknown key,
    a bad value or a missing key."""
    if not isinstance(data, Mapping):
        raise UsageError("the farm plan is not a table of settings")
    if "format" not in data:  # first: another format may well have other keys
        raise UsageError("the farm plan is incomplete: format is missing")
    _read({"format": data["format"]}, _PLAN_SETTINGS)
    ours = {k: v for k, v in data.items() if k in PLAN_KEYS}
    rest = {k: v for k, v in data.items() if k not in PLAN_KEYS}
    _read(rest, ())  # an unknown key is reported before a missing one
    values: dict[str, Any] = {}
    addresses: dict[str, Any] = {}
    for setting, _, value in _read(ours, _PLAN_SETTINGS):
        if setting.dest:
            (addresses if setting.group is Group.ADDRESSES else values)[setting.dest] = value
    for setting in _PLAN_SETTINGS:
        into = addresses if setting.group is Group.ADDRESSES else values
        if not setting.dest or setting.dest in into:
            continue
        if setting.required:
            raise UsageError(
                f"the farm plan is incomplete: {setting.name} is missing "
                f"(expected {setting.kind.allowed})"
            )
        into[setting.dest] = setting.default_value()
    return {**values, "addresses": p.AddressPlan(**addresses), "settings": FarmSettings(rest)}


def _read(
    data: Mapping[str, Any], settings: Sequence[ConfigSetting]
) -> list[tuple[ConfigSetting, str, Any]]:
    """(setting, its KEY, typed value) for every key of ``data``; a key or value that is not
    one of ``settings`` is refused in one line."""
    out = []
    for name, value in _leaves(data):
        setting, key = _find(name)
        if setting is None:
            if name in _TABLES:
                raise UsageError(f"{name} = {toml_value(value)}: expected a table ([{name}])")
            raise UsageError(f"{name} = {toml_value(value)}: unknown setting{_suggest(name)}")
        if setting not in settings:
            if settings:  # not a FarmSettings key: the plan's own (FarmPlan's fields)
                raise UsageError(f"{name} is a key of the farm plan, not a farm setting")
            continue  # checking for unknown keys only
        try:
            typed = setting.kind.parse(value)
        except Invalid as exc:
            reason = str(exc) or f"expected {setting.kind.allowed}"
            raise UsageError(f"{name} = {toml_value(value)}: {reason}") from None
        out.append((setting, key, typed))
    return out


def _leaves(data: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    """Every (dotted name, value) in ``data``: tables are walked, arrays are values."""
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and (value or name in _TABLES) and not _find(name)[0]:
            yield from _leaves(value, f"{name}.")
        else:
            yield name, value


def _find(name: str) -> tuple[ConfigSetting | None, str]:
    """The setting a dotted name is, and what its ``KEY`` part says."""
    if name in BY_NAME:
        return BY_NAME[name], ""
    parts = name.split(".")
    for setting in SETTINGS:
        pattern = setting.name.split(".")
        if setting.keys and len(parts) == len(pattern):
            picked = [part for part, want in zip(parts, pattern, strict=True) if want == "KEY"]
            rest_ok = all(
                part == want for part, want in zip(parts, pattern, strict=True) if want != "KEY"
            )
            if rest_ok and all(key in setting.keys for key in picked):
                return setting, picked[0]
    return None, ""


def _tables() -> frozenset[str]:
    out: set[str] = set()
    for setting in SETTINGS:
        for name in setting.names:
            parts = name.split(".")
            out.update(".".join(parts[:end]) for end in range(1, len(parts)))
    return frozenset(out)


_TABLES = _tables()
_EVERY_NAME = tuple(name for setting in SETTINGS for name in setting.names) + tuple(_TABLES)


def _suggest(name: str) -> str:
    close = difflib.get_close_matches(name.lower(), _EVERY_NAME, n=1)
    if close:
        return f"; did you mean {close[0]}?"
    return " ('farmhand keys settings' lists every setting)"


def toml_value(value: Any, limit: int = 60) -> str:
    """``value`` as farm.toml would spell it, on one line (control characters escaped)."""
    if isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = "".join(
            c if c.isprintable() else json.dumps(c)[1:-1]
            for c in json.dumps(value, ensure_ascii=False)
        )
    elif isinstance(value, int | float):
        text = repr(value)
    elif isinstance(value, list | tuple):
        text = "[" + ", ".join(toml_value(item, 0) for item in value) + "]"
    elif isinstance(value, Mapping):
        text = "{" + ", ".join(f"{k} = {toml_value(v, 0)}" for k, v in value.items()) + "}"
    else:
        text = toml_value(str(value), 0)
    return text if not limit or len(text) <= limit else text[: limit - 1] + "…"


# ---------------------------------------------------------------------------------------------
# Documentation: `farmhand keys settings` and README.md


def describe() -> list[dict[str, Any]]:
    """Every setting as data (``farmhand keys settings --json``)."""
    return [
        {
            "name": s.name,
            "group": s.group.value,
            "type": s.kind.name,
            "allowed": s.kind.allowed,
            "default": s.default,
            "default_text": s.shown_default,
            "required": s.required,
            "help": s.help,
            **({"keys": list(s.keys)} if s.keys else {}),
        }
        for s in SETTINGS
    ]


README_BEGIN = (
    "<!-- farm.toml settings: made by farmhand.settings.markdown() "
    "('farmhand keys settings --markdown'); tests/test_settings.py checks it -->"
)
README_END = "<!-- end of the farm.toml settings -->"
"""README.md holds :func:`markdown`'s tables between these lines."""


def markdown() -> str:
    """README.md's settings tables, one per group, from the declarations."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    lines: list[str] = []
    for group in Group:
        lines += [f"**{group.heading}**", "", "| setting | type | default | meaning |"]
        lines.append("| --- | --- | --- | --- |")
        for s in SETTINGS:
            if s.group is group:
                default = (
                    s.shown_default
                    if s.default_text or s.default is None
                    else (f"`{s.shown_default}`")
                )
                lines.append(
                    f"| `{s.name}` | {cell(s.kind.name)} | {cell(default)} | {cell(s.help)} |"
                )
        lines.append("")
    return "\n".join(lines)
