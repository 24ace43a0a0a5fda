"""The collector's tunables, apart from the collector so the CLI can show defaults without
importing paho, psycopg or prometheus_client."""

from __future__ import annotations

import socket
from dataclasses import dataclass


@dataclass(frozen=True)
class CollectorSettings:
    group: str = "edgeagent-collectors"
    client_id: str = f"collector-{socket.gethostname()}"  # the CLI prefixes the operator's login: "<login>:collector-host"
    session_expiry_s: int = 7 * 86400  # how long the broker keeps our queue while we are away
    batch_size: int = 500  # messages per transaction at most
    batch_wait_s: float = 0.05  # after the first message of a batch, wait this long for more
    receive_maximum: int = 2000  # unacknowledged messages the broker may send us
    retry_max_s: float = 30.0  # back-off cap while the database is unreachable
