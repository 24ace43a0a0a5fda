"""The kiosk's page, served by the daemon: static files, one event stream, the controls.

aiohttp, because it is an asyncio server that runs inside the daemon's own event loop (no thread,
no process, no second loop to hand events across; uvicorn wants to own the loop and the signals),
and its server-sent events are a plain streamed response.  Server-sent events rather than a
WebSocket: the page only listens, and the browser's EventSource reconnects by itself and names the
last message it saw (``Last-Event-ID``), which is exactly what resuming needs.  The controls are
small JSON POSTs that act through the fleet's own ``DeviceControl`` (``VoiceRemote``), so a mute
pressed on the page is the fleet's mute and shows in the MQTT state.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

from aiohttp import web

from edgeagent.config import UiConfig
from edgeagent.fleet.control import CommandFailed, DeviceControl
from edgeagent.ui.access import Viewer, same_origin, viewer
from edgeagent.ui.feed import Feed, Message
from edgeagent.ui.kiosk import page_url

log = logging.getLogger("edgeagent.ui")

STATIC = Path(__file__).resolve().parent / "static"
KEEPALIVE_S = 15.0
RETRY_MS = 1000  # how soon a page reconnects after the stream broke
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class UiServer:
    """``start()`` binds ``ui.listen:ui.port`` on the running loop; ``close()`` ends every stream and stops."""

    def __init__(self, ui: UiConfig, feed: Feed, controls: DeviceControl, *, include_text: Callable[[], bool],
                 hello: Callable[[], dict[str, Any]] = dict):
        self.ui = ui
        self.feed = feed
        self.controls = controls
        self.include_text = include_text  # read per viewer: telemetry.include_text is live config
        self.hello = hello  # fixed facts for the page (device name, wake words)
        self.port = ui.port
        self._runner: web.AppRunner | None = None
        app = web.Application(middlewares=[_headers])
        app.router.add_get("/", self._index)
        app.router.add_static("/static/", STATIC, append_version=False)
        app.router.add_get("/events", self._events)
        app.router.add_get("/api/state", self._state)
        for name, action in (("mute", self._mute), ("volume", self._volume), ("listen", self._listen),
                             ("cancel", self._cancel)):
            app.router.add_post(f"/api/{name}", self._control(action))
        self.app = app

    @property
    def url(self) -> str:
        return page_url(dataclasses.replace(self.ui, port=self.port))

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False, shutdown_timeout=2.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.ui.listen, self.ui.port)
        await site.start()
        if self.ui.port == 0:  # tests: the port the system picked
            self.port = self._runner.addresses[0][1]
        log.info("kiosk page on %s", self.url)

    async def close(self) -> None:
        self.feed.close()
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------ who asks

    def _viewer(self, request: web.Request) -> Viewer:
        return viewer(request.remote, request.host, request.headers.get("Authorization"), self.ui.token,
                      self.include_text())

    # ------------------------------------------------------------ pages and the stream

    async def _index(self, request: web.Request) -> web.StreamResponse:
        return web.FileResponse(STATIC / "index.html")

    async def _state(self, request: web.Request) -> web.Response:
        """The device's state document and what this viewer may do (also: "is the page up?")."""
        who = self._viewer(request)
        return web.json_response({**await self.controls.state(), "controls": who.may_control, "text": who.sees_text})

    async def _events(self, request: web.Request) -> web.StreamResponse:
        who = self._viewer(request)
        last_id = request.headers.get("Last-Event-ID") or request.query.get("last_id")
        subscription, first, resumed = self.feed.subscribe(last_id, who.sees_text)
        response = web.StreamResponse(headers={**HEADERS, "Content-Type": "text/event-stream",
                                               "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            hello = {"type": "hello", "epoch": self.feed.epoch, "seq": self.feed.seq, "resumed": resumed,
                     "server_time": time.time(), "controls": who.may_control, "text": who.sees_text,
                     "token_set": bool(self.ui.token), **self.hello()}
            await response.write(f"retry: {RETRY_MS}\ndata: {json.dumps(hello)}\n\n".encode())
            for message in first:
                await response.write(self._frame(message, subscription.text))
            while True:
                try:  # asyncio.timeout, not wait_for: no extra task, so an event is one loop step from the page
                    async with asyncio.timeout(KEEPALIVE_S):
                        message = await subscription.queue.get()
                except TimeoutError:
                    await response.write(b": keep-alive\n\n")  # finds dead connections, keeps proxies open
                    continue
                if message is None:
                    break
                await response.write(self._frame(message, subscription.text))
            await response.write_eof()
        except ConnectionResetError:
            pass  # the page went away: it reconnects and resumes
        finally:
            self.feed.unsubscribe(subscription)
        return response

    def _frame(self, message: Message, text: bool) -> bytes:
        data = message.full if text else message.redacted
        return f"id: {self.feed.message_id(message)}\ndata: {data}\n\n".encode()

    # ------------------------------------------------------------ controls

    def _control(self, action: Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]):
        async def handle(request: web.Request) -> web.Response:
            who = self._viewer(request)
            if not same_origin(request.headers.get("Origin"), request.host) or request.content_type != "application/json":
                return _error(403, "controls take a JSON request from this page")
            if not who.may_control:
                reason = "the access token is needed for the controls" if self.ui.token else \
                    "the controls work on the device's own screen only (no ui.token is set)"
                return _error(401, reason)
            try:
                args = await request.json() if request.can_read_body else {}
            except ValueError:
                return _error(400, "the body is not JSON")
            if not isinstance(args, dict):
                return _error(400, "expected a JSON object")
            try:
                return web.json_response({"ok": True, **await action(args)})
            except (CommandFailed, ValueError) as exc:
                return _error(409 if isinstance(exc, CommandFailed) else 400, str(exc))
        return handle

    async def _mute(self, args: dict[str, Any]) -> dict[str, Any]:
        mute = args.get("mute")
        if not isinstance(mute, bool):
            raise ValueError("'mute' must be true or false")
        return await self.controls.set_mute(mute)

    async def _volume(self, args: dict[str, Any]) -> dict[str, Any]:
        volume = args.get("volume")
        if isinstance(volume, bool) or not isinstance(volume, (int, float)) or not 0.0 <= volume <= 1.0:
            raise ValueError("'volume' must be a number from 0 to 1")
        return await self.controls.set_volume(float(volume))

    async def _listen(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.controls.listen()

    async def _cancel(self, args: dict[str, Any]) -> dict[str, Any]:
        return await self.controls.cancel()


def _error(status: int, error: str) -> web.Response:
    return web.json_response({"ok": False, "error": error}, status=status)


@web.middleware
async def _headers(request: web.Request, handler) -> web.StreamResponse:
    response = await handler(request)
    if not response.prepared:  # a stream has sent its headers already
        for name, value in HEADERS.items():
            response.headers.setdefault(name, value)
    return response
