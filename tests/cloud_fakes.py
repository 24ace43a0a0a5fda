"""A real OpenAI-compatible HTTP endpoint on loopback that records what it was sent: the stand-in
for "a host the key was not provisioned for" and for a cloud whose error body quotes the prompt."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class RecordingCloud:
    """Each chat request takes the next of ``modes`` (the last one repeats): "ok" streams one token;
    "echo_400" answers HTTP 400 quoting the last user message; "echo_stream_error" streams an SSE
    error event quoting it."""

    def __init__(self, *modes: str):
        self.modes = list(modes or ["ok"])
        self.requests: list[dict] = []  # {"path", "headers"}
        cloud = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *_args) -> None:
                pass

            def do_GET(self) -> None:
                cloud.requests.append({"path": self.path, "headers": dict(self.headers)})
                self._send(200, b'{"data": []}', "application/json")

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")
                cloud.requests.append({"path": self.path, "headers": dict(self.headers)})
                prompt = next((m["content"] for m in reversed(body.get("messages", [])) if m["role"] == "user"), "")
                mode = cloud.modes.pop(0) if len(cloud.modes) > 1 else cloud.modes[0]
                if mode == "echo_400":
                    error = {"error": {"message": f"flagged input: {prompt}"}}
                    self._send(400, json.dumps(error).encode(), "application/json")
                elif mode == "echo_stream_error":
                    event = {"error": {"message": f"content policy: {prompt}"}}
                    self._send(200, f"data: {json.dumps(event)}\n\n".encode(), "text/event-stream")
                else:
                    token = {"choices": [{"delta": {"content": "Paris."}}]}
                    self._send(200, f"data: {json.dumps(token)}\n\ndata: [DONE]\n\n".encode(), "text/event-stream")

            def _send(self, status: int, body: bytes, kind: str) -> None:
                self.send_response(status)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def authorizations(self) -> list[str | None]:
        return [r["headers"].get("Authorization") for r in self.requests]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
