#!/usr/bin/env python3
"""STAND-IN for deadlineworker, flamenco-manager and flamenco-worker (tests only).

Records its arguments and user, then stays up like the real service. As flamenco-manager it
listens where flamenco-manager.yaml says (``listen``), so the port can be probed.
"""

import os
import socket
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from standin_common import config_value, record

name = os.path.basename(sys.argv[0])
record(name)
if name == "flamenco-manager":
    host, _, port = config_value("flamenco-manager.yaml", "listen").rpartition(":")
    server = socket.create_server((host, int(port)))
    while True:
        conn, _ = server.accept()
        conn.close()
while True:
    time.sleep(3600)
