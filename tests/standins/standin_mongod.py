#!/usr/bin/env python3
"""STAND-IN for mongod (tests only): records its arguments and user, and listens where the
rendered mongod.conf says — TCP on net.bindIp:net.port, and root's local socket."""

import os
import socket
import sys

sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))
from standin_common import config_value, option, record

record("mongod")
config = option("--config")
port = int(config_value(config, "port"))
tcp = socket.create_server((config_value(config, "bindIp"), port))
local = socket.socket(socket.AF_UNIX)
path = f"{config_value(config, 'pathPrefix')}/mongodb-{port}.sock"
if os.path.exists(path):
    os.unlink(path)
local.bind(path)
local.listen()
while True:
    conn, _ = tcp.accept()
    conn.close()
