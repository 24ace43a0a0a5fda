"""Logging: structured fields to journald under systemd, plain lines to stderr elsewhere, and no
secret ever written to either."""

from __future__ import annotations

import logging
import os
import sys
from typing import Iterable

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class RedactSecrets(logging.Filter):
    """Replaces any secret value in a log message with ***."""

    def __init__(self, secrets: Iterable[str]):
        super().__init__()
        self._secrets = [s for s in secrets if s]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(s in message for s in self._secrets):
            for s in self._secrets:
                message = message.replace(s, "***")
            record.msg, record.args = message, ()
        return True


def under_journald(stream=None) -> bool:
    """systemd sets JOURNAL_STREAM=<dev>:<inode> when stderr is connected to the journal."""
    value = os.environ.get("JOURNAL_STREAM", "")
    try:
        device, inode = (int(part) for part in value.split(":"))
        stat = os.fstat((stream or sys.stderr).fileno())
    except (ValueError, OSError):
        return False
    return (stat.st_dev, stat.st_ino) == (device, inode)


def make_handler(stream=None, sender=None) -> logging.Handler:
    """A JournalHandler (fields such as TURN_ID and STAGE from ``extra=`` become journal fields)
    when stderr is the journal and systemd-python is installed; a stderr handler otherwise."""
    if under_journald(stream):
        try:
            from systemd.journal import JournalHandler

            kwargs = {"sender_function": sender} if sender else {}
            return JournalHandler(SYSLOG_IDENTIFIER="edgeagent", **kwargs)
        except ImportError:
            pass
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(logging.Formatter(FORMAT))
    return handler


def setup_logging(level: int = logging.INFO) -> None:
    root = logging.getLogger()
    root.handlers[:] = [make_handler()]
    root.setLevel(level)


def redact_secrets(secrets: Iterable[str]) -> None:
    """Install the secret filter on every root handler (called once the config is loaded)."""
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactSecrets(secrets))
