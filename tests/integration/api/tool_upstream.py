"""An OpenAI-compatible upstream that calls tools, run as a process of its own:
``python tool_upstream.py PORT``.

It plays a model that knows how to use tools: given tools and a conversation whose last
message is the user's, it calls a function (the one ``tool_choice`` names, else the first)
with ``{"city": <the user's text>}``; given a conversation whose last message is a tool's
result, it answers in text quoting that result. It checks what OpenAI checks of what
reaches it (the tools' shape, a ``tool_call_id`` on every tool message, answering a call
of an earlier assistant message) and answers a 400 otherwise, so a gateway that passes the
conversation on wrongly fails the test. Streams send the call as OpenAI does: the id and
name first, then the arguments in fragments. Standard library only.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

CALL_ID = "call_upstream0001"


def check(body: dict[str, Any]) -> str | None:
    """What is wrong with the request, as OpenAI would say it, or ``None``."""
    for tool in body.get("tools") or []:
        function = tool.get("function") or {}
        if tool.get("type") != "function" or not isinstance(function.get("name"), str):
            return "tools: each needs type 'function' and a function name"
        if "parameters" in function and not isinstance(function["parameters"], dict):
            return "tools: parameters must be an object"
    called: set[str] = set()
    for message in body["messages"]:
        for call in message.get("tool_calls") or []:
            if not isinstance(call["function"]["arguments"], str):
                return "tool_calls: arguments must be a string"
            called.add(call["id"])
        if message["role"] == "tool" and message.get("tool_call_id") not in called:
            return "messages: a tool message must answer an earlier tool call"
    return None


def answer(body: dict[str, Any]) -> tuple[str | None, list[dict[str, Any]]]:
    """The text and the calls of the answer."""
    last = body["messages"][-1]
    tools = body.get("tools") or []
    if last["role"] == "tool" or not tools or body.get("tool_choice") == "none":
        return f"The weather service says: {last['content']}", []
    choice = body.get("tool_choice")
    name = choice["function"]["name"] if isinstance(choice, dict) else tools[0]["function"]["name"]
    arguments = json.dumps({"city": last["content"]})
    return None, [
        {"id": CALL_ID, "type": "function", "function": {"name": name, "arguments": arguments}}
    ]


def of_choice(calls: list[dict[str, Any]], index: int) -> list[dict[str, Any]]:
    """The calls as choice ``index`` makes them: choice 0's ids are ``CALL_ID``, the
    others' their own."""
    return [{**c, "id": c["id"] + (f"_{index}" if index else "")} for c in calls]


def chunk(delta: dict[str, Any], finish: str | None = None, index: int = 0) -> bytes:
    data = {
        "id": "chatcmpl-up",
        "object": "chat.completion.chunk",
        "created": 0,
        "model": "tool-upstream",
        "choices": [{"index": index, "delta": delta, "finish_reason": finish}],
    }
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def events(text: str | None, calls: list[dict[str, Any]], n: int = 1) -> list[bytes]:
    """Each of the ``n`` choices in turn (choice ``c`` calling with ids of its own)."""
    out = []
    for c in range(n):
        out.append(chunk({"role": "assistant", "content": ""}, index=c))
        if text:
            out += [chunk({"content": text[i : i + 8]}, index=c) for i in range(0, len(text), 8)]
        for index, call in enumerate(of_choice(calls, c)):
            head = {"index": index, "id": call["id"], "type": "function"}
            function = {"name": call["function"]["name"], "arguments": ""}
            out.append(chunk({"tool_calls": [{**head, "function": function}]}, index=c))
            arguments = call["function"]["arguments"]
            for i in range(0, len(arguments), 5):
                piece = {"index": index, "function": {"arguments": arguments[i : i + 5]}}
                out.append(chunk({"tool_calls": [piece]}, index=c))
        out.append(chunk({}, "tool_calls" if calls else "stop", index=c))
    usage = {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30}
    out.append(b"data: " + json.dumps({"choices": [], "usage": usage}).encode() + b"\n\n")
    return [*out, b"data: [DONE]\n\n"]


def whole(text: str | None, calls: list[dict[str, Any]], n: int = 1) -> bytes:
    choices = []
    for c in range(n):
        message: dict[str, Any] = {"role": "assistant", "content": text}
        if calls:
            message["tool_calls"] = of_choice(calls, c)
        finish = "tool_calls" if calls else "stop"
        choices.append({"index": c, "message": message, "finish_reason": finish})
    return json.dumps(
        {
            "id": "chatcmpl-up",
            "object": "chat.completion",
            "created": 0,
            "model": "tool-upstream",
            "choices": choices,
            "usage": {"prompt_tokens": 20, "completion_tokens": 10, "total_tokens": 30},
        }
    ).encode()


async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = (await reader.readuntil(b"\r\n\r\n")).decode()
            headers = {
                k.strip().lower(): v.strip()
                for k, v in (line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
            }
            body = json.loads(await reader.readexactly(int(headers.get("content-length", "0"))))
            problem = check(body)
            if problem is not None:
                refusal = json.dumps(
                    {"error": {"message": problem, "type": "invalid_request_error"}}
                ).encode()
                writer.write(
                    b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(refusal)}\r\n\r\n".encode()
                    + refusal
                )
            elif body.get("stream"):
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                for event in events(*answer(body), body.get("n") or 1):
                    writer.write(b"%x\r\n%s\r\n" % (len(event), event))
                writer.write(b"0\r\n\r\n")
            else:
                data = whole(*answer(body), body.get("n") or 1)
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + f"Content-Length: {len(data)}\r\n\r\n".encode()
                    + data
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def main(port: int) -> None:
    server = await asyncio.start_server(handle, "127.0.0.1", port)
    print("ready", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
