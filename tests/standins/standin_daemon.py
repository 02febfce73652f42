#!/usr/bin/env python3
"""STAND-IN for deadlineworker, flamenco-manager and flamenco-worker (tests only).

Records its arguments and user, then stays up like the real service. The Flamenco ones read
their YAML from the working directory as the real ones do, and record what they found:
flamenco-manager listens where ``listen`` says (so the port can be probed) and writes a probe
into its local storage, which the real manager resolves next to its executable (symlinks
resolved); flamenco-worker writes its credentials file where the real one does
(``$FLAMENCO_HOME``, else ``$HOME/.local/share/flamenco``).
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from standin_common import config_value, record

HERE = os.path.dirname(os.path.realpath(__file__))


def writable(folder: str, filename: str) -> bool:
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, filename), "a", encoding="utf-8") as out:
            out.write("stand-in\n")
    except OSError:
        return False
    return True


name = os.path.basename(sys.argv[0])
if name == "flamenco-manager":
    config = os.path.abspath("flamenco-manager.yaml")
    listen = config_value(config, "listen")
    storage = os.path.join(HERE, config_value(config, "local_manager_storage_path"))
    record(
        name,
        config=config,
        listen=listen,
        storage=os.path.normpath(storage),
        storage_writable=writable(storage, "standin-task-log.txt"),
    )
    host, _, port = listen.rpartition(":")
    server = socket.create_server((host, int(port)))
    while True:
        conn, _ = server.accept()
        conn.close()
elif name == "flamenco-worker":
    config = os.path.abspath("flamenco-worker.yaml")
    home = os.environ.get("FLAMENCO_HOME") or os.path.expanduser("~/.local/share/flamenco")
    record(
        name,
        config=config,
        manager_url=config_value(config, "manager_url"),
        flamenco_home=home,
        credentials_writable=writable(home, "flamenco-worker-credentials.yaml"),
    )
else:
    record(name)
while True:
    time.sleep(3600)
