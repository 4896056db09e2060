"""A small, scriptable, misbehaving OpenAI-compatible server on loopback.

It speaks real HTTP/1.1 over TCP (chunked server-sent events), so the HTTP backend's
client, timeouts and error handling run exactly as against a real upstream. Each
request takes the next behaviour from ``script`` (the last one repeats).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, Literal

Behaviour = Literal["ok", "500", "400", "garbage", "html", "drop", "slow", "hangup", "malformed"]


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass
class FakeUpstream:
    pieces: tuple[str, ...] = ("Hello", ", wor", "ld", "!")
    script: list[Behaviour] = field(default_factory=lambda: ["ok"])
    seen: list[Seen] = field(default_factory=list)
    malformed: str = "{}"
    """``malformed``: the data of the last event, in place of the usage chunk."""
    error_body: str | None = None
    """The body of a ``500`` or ``400`` answer, if not OpenAI's error."""
    port: int = 0
    _server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
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
        body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
        self.seen.append(Seen(request_line.split()[1], headers, body))
        behaviour = self.script[min(len(self.seen), len(self.script)) - 1]
        if behaviour == "hangup":
            return
        if behaviour == "slow":
            await asyncio.sleep(30)
            return
        if behaviour in ("500", "400"):
            error = (
                self.error_body or json.dumps({"error": {"message": f"scripted {behaviour}"}})
            ).encode()
            writer.write(
                f"HTTP/1.1 {behaviour} Oops\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(error)}\r\nConnection: close\r\n\r\n".encode()
                + error
            )
            await writer.drain()
            return
        content_type = "text/html" if behaviour == "html" else "text/event-stream"
        writer.write(
            f"HTTP/1.1 200 OK\r\nContent-Type: {content_type}\r\n"
            "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n".encode()
        )
        if behaviour == "html":
            self._chunk(writer, "<html>Welcome to nginx!</html>")
        elif behaviour == "garbage":
            self._chunk(writer, "data: this is not json\n\n")
        else:
            chat = self.seen[-1].path.endswith("/chat/completions")
            events = [self._event(piece, chat) for piece in self.pieces]
            if behaviour == "drop":
                for event in events[:2]:
                    self._chunk(writer, event)
                await writer.drain()
                writer.transport.abort()  # mid-stream, inside the chunked body
                return
            events.append(self._event("", chat, finish="length"))
            usage = {"prompt_tokens": 7, "completion_tokens": len(self.pieces), "total_tokens": 0}
            last = json.dumps({"choices": [], "usage": usage})
            events.append(f"data: {self.malformed if behaviour == 'malformed' else last}\n\n")
            events.append(": keep-alive comment\n\ndata: [DONE]\n\n")
            for event in events:
                self._chunk(writer, event)
        writer.write(b"0\r\n\r\n")
        await writer.drain()

    @staticmethod
    def _event(piece: str, chat: bool, finish: str | None = None) -> str:
        choice: dict[str, Any] = {"index": 0, "finish_reason": finish}
        if chat:
            choice["delta"] = {"content": piece} if piece else {}
        else:
            choice["text"] = piece
        return f"data: {json.dumps({'id': 'x', 'choices': [choice]})}\n\n"

    @staticmethod
    def _chunk(writer: asyncio.StreamWriter, text: str) -> None:
        data = text.encode()
        writer.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
