"""Resumable HTTP(S) download of an update bundle, checked against the sha256 the operator gave.

The bytes go to ``<dest>.part``; a broken transfer (the network drops, the device reboots) goes on
from the bytes already there with an HTTP Range request, so a slow link never starts over.  A
``.part`` left by a download of another bundle (another sha256) is discarded.  The finished file
is renamed to ``dest`` only when its sha256 matches.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import time
from pathlib import Path
from typing import Callable

import httpx

CHUNK = 1 << 16
ATTEMPTS = 6  # transfers begun (each resumes the last); back-off 2, 4, ... 32 s between them
SHA256 = re.compile(r"^[0-9a-f]{64}$")

Progress = Callable[[int, "int | None"], None]  # bytes so far, total (None while unknown)


class DownloadError(RuntimeError):
    """The bundle could not be fetched or is not the one asked for; the message says why."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(url: str, dest: Path, sha256: str, progress: Progress = lambda _n, _t: None, *,
             attempts: int = ATTEMPTS, timeout_s: float = 30.0, backoff_s: float = 2.0,
             reserve_bytes: int = 32 << 20) -> Path:
    """Fetch ``url`` into ``dest``; returns ``dest`` once its sha256 is ``sha256``.  DownloadError otherwise
    (after ``attempts`` transfers, at once for an HTTP error, a file that does not fit or a wrong sha256)."""
    sha256 = sha256.lower()
    if not SHA256.match(sha256):
        raise DownloadError(f"sha256 must be 64 hex digits, got {sha256[:80]!r}")
    if not url.startswith(("http://", "https://")):
        raise DownloadError(f"only http:// and https:// URLs are supported, got {url[:80]!r}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    stamp = dest.with_name(dest.name + ".sha256")  # which bundle the .part belongs to
    if not stamp.exists() or stamp.read_text().strip() != sha256:
        part.unlink(missing_ok=True)
        stamp.write_text(sha256 + "\n")
    error = "no attempt made"
    for attempt in range(attempts):
        if attempt:
            time.sleep(min(backoff_s * 2 ** (attempt - 1), 32.0))
        try:
            if _transfer(url, part, progress, timeout_s, reserve_bytes):
                break
            error = "the server closed the connection early"
        except httpx.TransportError as exc:
            error = f"{type(exc).__name__}: {exc}"
    else:
        raise DownloadError(f"download failed after {attempts} attempts: {error}")
    actual, size = sha256_file(part), part.stat().st_size
    if actual != sha256:
        part.unlink(missing_ok=True)
        stamp.unlink(missing_ok=True)
        raise DownloadError(f"sha256 mismatch: expected {sha256}, got {actual} ({size} bytes)")
    part.replace(dest)
    stamp.unlink(missing_ok=True)
    return dest


def _transfer(url: str, part: Path, progress: Progress, timeout_s: float, reserve_bytes: int) -> bool:
    """One request from the bytes already in ``part``; True when the file is complete."""
    have = part.stat().st_size if part.exists() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with httpx.stream("GET", url, headers=headers, timeout=timeout_s, follow_redirects=True) as response:
        if response.status_code == 416 and have:  # nothing after what we have: it is complete
            return True
        if response.status_code not in (200, 206):
            raise DownloadError(f"HTTP {response.status_code} {response.reason_phrase} from {url}")
        if response.status_code == 200 or not _resumes_at(response.headers.get("content-range", ""), have):
            have = 0  # the server sent the whole file (no Range support): start over
        length = response.headers.get("content-length")
        total = have + int(length) if length and length.isdigit() else None
        if total is not None:
            free = shutil.disk_usage(part.parent).free + (part.stat().st_size if part.exists() else 0)
            if total + reserve_bytes > free:
                raise DownloadError(f"the bundle ({total >> 20} MiB) does not fit: {free >> 20} MiB free in {part.parent}")
        with part.open("r+b" if have else "wb") as fh:
            fh.seek(have)
            fh.truncate()
            got = have
            progress(got, total)
            for block in response.iter_bytes(CHUNK):
                fh.write(block)
                got += len(block)
                progress(got, total)
    return total is None or got >= total


def _resumes_at(content_range: str, offset: int) -> bool:
    """``bytes 100-199/200`` resumes at 100."""
    match = re.match(r"bytes (\d+)-\d+/(\d+|\*)", content_range)
    return bool(match) and int(match.group(1)) == offset
