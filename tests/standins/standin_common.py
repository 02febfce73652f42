"""Shared by the stand-ins: record how we were called (no secret values, only their names)."""

import json
import os
import sys

RECORDS = "/var/lib/farmhand-standin"


def record(name: str, **extra: object) -> None:
    """One JSON line; ``extra`` adds what a stand-in found (the config it read, where it wrote)."""
    os.makedirs(RECORDS, mode=0o755, exist_ok=True)
    entry = {
        "standin": name,
        "argv": sys.argv[1:],
        "uid": os.getuid(),
        "cwd": os.getcwd(),
        "env_names": sorted(k for k in os.environ if k.startswith("FARMHAND_")),
        **extra,
    }
    with open(f"{RECORDS}/{name}.jsonl", "a", encoding="utf-8") as out:
        out.write(json.dumps(entry) + "\n")


def option(flag: str, default: str = "") -> str:
    args = sys.argv[1:]
    return args[args.index(flag) + 1] if flag in args else default


def config_value(path: str, key: str) -> str:
    """``key: value`` from a flat or nested YAML file (enough for our rendered configs)."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            name, _, value = line.strip().partition(":")
            if name == key:
                return value.strip()
    return ""
