"""Real RAUC bundles signed with throw-away keys, and a real HTTP server (with Range requests) to serve them."""

from __future__ import annotations

import http.server
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

import pytest

RAUC = shutil.which("rauc")
MKSQUASHFS = shutil.which("mksquashfs") or (Path("/usr/bin/mksquashfs") if Path("/usr/bin/mksquashfs").exists() else None)
needs_rauc = pytest.mark.skipif(not (RAUC and MKSQUASHFS), reason="needs rauc and squashfs-tools (make install)")


def make_keys(directory: Path, name: str = "dev") -> tuple[Path, Path]:
    """A self-signed signing certificate and its key (as image/build.sh makes the development pair)."""
    key, cert = directory / f"{name}.key.pem", directory / f"{name}.cert.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(cert),
                    "-days", "30", "-subj", f"/O=edgeagent tests/CN={name}"], check=True, capture_output=True)
    return key, cert


def make_bundle(directory: Path, name: str, key: Path | None, cert: Path | None, compatible: str = "edgeagent-test",
                version: str = "2.0") -> Path:
    """A verity bundle with a small ext4 root image (signed unless key is None: a bare squashfs)."""
    content = directory / f"{name}.content"
    content.mkdir()
    rootfs = content / "rootfs.ext4"
    with rootfs.open("wb") as fh:
        fh.truncate(8 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", str(rootfs)], check=True, capture_output=True)
    (content / "payload.bin").write_bytes(os.urandom(64 << 10))  # so squashfs has more than a block to sign
    (content / "manifest.raucm").write_text(f"[update]\ncompatible={compatible}\nversion={version}\n\n"
                                            "[bundle]\nformat=verity\n\n[image.rootfs]\nfilename=rootfs.ext4\n")
    bundle = directory / f"{name}.raucb"
    if key is None:
        subprocess.run([str(MKSQUASHFS), str(content), str(bundle), "-quiet", "-noappend", "-all-root"], check=True,
                       capture_output=True)
    else:
        subprocess.run([RAUC, "bundle", f"--cert={cert}", f"--key={key}", str(content), str(bundle)], check=True,
                       capture_output=True)
    return bundle


def system_conf(directory: Path, keyring: Path, compatible: str = "edgeagent-test") -> Path:
    """A RAUC system.conf for `rauc info` (the checks need only compatible and the keyring)."""
    conf = directory / "system.conf"
    conf.write_text(f"[system]\ncompatible={compatible}\nbootloader=noop\n\n[keyring]\npath={keyring}\n")
    return conf


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Files with HTTP Range support; may cut the first transfer of a file short, as a broken link would."""

    server: "FileServer"

    def log_message(self, *_args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        path = Path(self.translate_path(self.path))
        self.server.requests.append((self.path, self.headers.get("Range")))
        if not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        start = 0
        match = re.match(r"bytes=(\d+)-$", self.headers.get("Range") or "")
        if match:
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        cut = self.server.cut_after.pop(self.path, None)
        self.wfile.write(body if cut is None else body[:cut])
        if cut is not None:
            self.close_connection = True


class FileServer(http.server.ThreadingHTTPServer):
    def __init__(self, root: Path):
        self.requests: list[tuple[str, str | None]] = []
        self.cut_after: dict[str, int] = {}  # URL path -> bytes sent before the first transfer breaks
        handler = lambda *a, **kw: _Handler(*a, directory=str(root), **kw)  # noqa: E731
        super().__init__(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.serve_forever, daemon=True)

    def url(self, name: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.server_address[1]}/{name}"

    def __enter__(self) -> "FileServer":
        self.thread.start()
        return self

    def __exit__(self, *_exc) -> None:
        self.shutdown()
        self.server_close()
