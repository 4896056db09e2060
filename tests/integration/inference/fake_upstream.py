"""A small, scriptable, misbehaving OpenAI-compatible server on loopback.

It speaks real HTTP/1.1 over TCP (chunked server-sent events, or one JSON body when the
request says ``"stream": false``), so the HTTP backend's client, timeouts and error
handling run exactly as against a real upstream. Each request takes the next behaviour
from ``script`` (the last one repeats); ``stall`` sends the head of an answer and waits
for the client to hang up. A ``GET`` (a health probe) that is ``ok`` gets an empty model
list.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any, Literal

Behaviour = Literal[
    "ok", "500", "400", "429", "garbage", "html", "drop", "slow", "stall", "hangup", "malformed"
]

Answers = Literal["as asked", "json", "sse"]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    pieces: tuple[str, ...] = ("Hello", ", wor", "ld", "!")
    other_pieces: tuple[str, ...] | None = None
    """Choices 1 to n - 1's text (a request's ``n``), when not ``pieces``."""
    script: list[Behaviour] = field(default_factory=lambda: ["ok"])
    seen: list[Seen] = field(default_factory=list)
    malformed: str = "{}"
    """``malformed``: the data of the last event, in place of the usage chunk, or the
    whole JSON answer."""
    answers: Answers = "as asked"
    """``json`` and ``sse``: answer that way whatever the request's ``stream`` says."""
    usage: bool = True
    """Whether answers say how many tokens they used."""
    cached_tokens: int | None = None
    """When set, the usage says this many prompt tokens were read from a prompt cache."""
    hung_up: int = 0
    """How many ``stall`` answers the client closed."""
    finish: str = "length"
    """The finish reason every answer gives."""
    error_body: str | None = None
    """The body of a ``500``, ``400`` or ``429`` answer, if not OpenAI's error."""
    retry_after: str = "1"
    """The ``Retry-After`` header of a ``429`` answer."""
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        await self.start_on(0)

    async def start_on(self, port: int) -> None:
        """Listens on ``port`` (0: any free one), e.g. the one it listened on before."""
        self._server = await asyncio.start_server(
            self._handle, "127.0.0.1", port, reuse_address=True
        )
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._answer(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()

    async def _answer(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        request_line, *header_lines = head.strip().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        raw = await reader.readexactly(int(headers.get("content-length", "0")))
        method, path = request_line.split()[:2]
        self.seen.append(Seen(path, headers, json.loads(raw) if raw else {}))
        body = self.seen[-1].body
        behaviour = self.script[min(len(self.seen), len(self.script)) - 1]
        if behaviour == "hangup":
            return
        if behaviour == "slow":
            await asyncio.sleep(30)
            return
        if behaviour in ("500", "400", "429"):
            error = (
                self.error_body or json.dumps({"error": {"message": f"scripted {behaviour}"}})
            ).encode()
            retry_after = f"Retry-After: {self.retry_after}\r\n" if behaviour == "429" else ""
            writer.write(
                f"HTTP/1.1 {behaviour} Oops\r\nContent-Type: application/json\r\n{retry_after}"
                f"Content-Length: {len(error)}\r\nConnection: close\r\n\r\n".encode()
                + error
            )
            await writer.drain()
            return
        if method == "GET":  # a health probe: the model list
            self._chunkless(writer, json.dumps({"object": "list", "data": []}))
            await writer.drain()
            return
        chat = self.seen[-1].path.endswith("/chat/completions")
        as_json = self.answers == "json" or (
            self.answers == "as asked" and body.get("stream") is False
        )
        if behaviour == "html":
            content_type = "text/html"
        else:
            content_type = "application/json" if as_json else "text/event-stream"
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        if behaviour == "html":
            self._chunk(writer, "<html>Welcome to nginx!</html>")
        elif behaviour == "garbage":
            self._chunk(writer, "this is not json" if as_json else "data: this is not json\n\n")
        elif as_json:
            whole = self._whole(chat, body.get("n") or 1)
            if behaviour in ("drop", "stall"):
                self._chunk(writer, whole[:20])
                await self._cut(reader, writer, behaviour)
                return
            self._chunk(writer, self.malformed if behaviour == "malformed" else whole)
        else:
            n = body.get("n") or 1
            events = [
                self._event(piece, chat, index=i)
                for i in range(n)
                for piece in (self.pieces if i == 0 else self.other_pieces or self.pieces)
            ]
            if behaviour in ("drop", "stall"):
                for event in events[:2]:
                    self._chunk(writer, event)
                await self._cut(reader, writer, behaviour)
                return
            events += [self._event("", chat, finish=self.finish, index=i) for i in range(n)]
            last = json.dumps({"choices": [], **self._usage()})
            events.append(f"data: {self.malformed if behaviour == 'malformed' else last}\n\n")
            events.append(": keep-alive comment\n\ndata: [DONE]\n\n")
            for event in events:
                self._chunk(writer, event)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    async def _cut(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, behaviour: Behaviour
    ) -> None:
        """End an answer inside its chunked body: ``drop`` by hanging up, ``stall`` by
        waiting until the client does."""
        await writer.drain()
        if behaviour == "drop":
            writer.transport.abort()
            return
        await reader.read()  # returns once the client has closed the connection
        self.hung_up += 1

    def _usage(self) -> dict[str, Any]:
        if not self.usage:
            return {}
        usage: dict[str, Any] = {"prompt_tokens": 7, "completion_tokens": len(self.pieces)}
        if self.cached_tokens is not None:
            usage["prompt_tokens_details"] = {"cached_tokens": self.cached_tokens}
        return {"usage": usage}

    def _whole(self, chat: bool, n: int) -> str:
        choices = []
        for i in range(n):
            text = "".join(self.pieces if i == 0 else self.other_pieces or self.pieces)
            choice: dict[str, Any] = {"index": i, "finish_reason": self.finish}
            if chat:
                choice["message"] = {"role": "assistant", "content": text}
            else:
                choice["text"] = text
            choices.append(choice)
        return json.dumps({"id": "x", "choices": choices, **self._usage()})

    @staticmethod
    def _event(piece: str, chat: bool, finish: str | None = None, index: int = 0) -> str:
        choice: dict[str, Any] = {"index": index, "finish_reason": finish}
        if chat:
            choice["delta"] = {"content": piece} if piece else {}
        else:
            choice["text"] = piece
        return f"data: {json.dumps({'id': 'x', 'choices': [choice]})}\n\n"

    @staticmethod
    def _chunkless(writer: asyncio.StreamWriter, text: str) -> None:
        data = text.encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\nConnection: close\r\n\r\n%s" % (len(data), data)
        )

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, text: str) -> None:
        data = text.encode()
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")


class ThreadedUpstream:
    """A ``FakeUpstream`` on an event loop of its own thread: for tests that drive live
    server processes with blocking clients (the openai SDK, threads of httpx calls)."""

    def __init__(self, upstream: FakeUpstream | None = None) -> None:
        self.fake = upstream or FakeUpstream()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return self.fake.url

    def start(self) -> None:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self._loop).result(10)

    def stop(self) -> None:
        async def close() -> None:
            await self.fake.stop()
            # Answers still going (a ``slow`` one sleeps 30 s) end here, not with the loop.
            answers = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in answers:
                task.cancel()
            await asyncio.gather(*answers, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()
