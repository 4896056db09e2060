import { describe, expect, it } from "vitest";
import { SseParser, chatEvents, readChatStream, type StreamEvent } from "./sse";

function chunk(content: string): string {
  return JSON.stringify({ choices: [{ index: 0, delta: { content }, finish_reason: null }] });
}

const usageChunk = JSON.stringify({
  choices: [],
  usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 },
});

function streamOf(parts: (string | Uint8Array)[]): ReadableStream<Uint8Array> {
  const encoder = new TextEncoder();
  return new ReadableStream({
    start(controller) {
      for (const part of parts) controller.enqueue(typeof part === "string" ? encoder.encode(part) : part);
      controller.close();
    },
  });
}

async function collect(stream: ReadableStream<Uint8Array>): Promise<StreamEvent[]> {
  const events: StreamEvent[] = [];
  for await (const event of readChatStream(stream)) events.push(event);
  return events;
}

describe("SseParser", () => {
  it("dispatches an event per blank line", () => {
    const parser = new SseParser();
    expect(parser.push("data: one\n\ndata: two\n\n").map((e) => e.data)).toEqual(["one", "two"]);
  });

  it("buffers a line split mid-way across chunks", () => {
    const parser = new SseParser();
    const text = `data: ${chunk("Hello")}\n\n`;
    const events = [];
    for (const piece of [text.slice(0, 3), text.slice(3, 17), text.slice(17, -1), text.slice(-1)]) {
      events.push(...parser.push(piece));
    }
    expect(events).toHaveLength(1);
    expect(chatEvents(events[0]!.data)).toEqual([{ kind: "delta", content: "Hello" }]);
  });

  it("emits nothing until the blank line arrives", () => {
    const parser = new SseParser();
    expect(parser.push("data: x\n")).toEqual([]);
    expect(parser.push("\n")).toEqual([{ event: "message", data: "x" }]);
  });

  it("joins multi-line data with newlines", () => {
    const parser = new SseParser();
    expect(parser.push("data: {\"a\":\ndata: 1}\n\n")).toEqual([{ event: "message", data: '{"a":\n1}' }]);
  });

  it("accepts CRLF, including a CRLF split between chunks", () => {
    const parser = new SseParser();
    expect(parser.push("data: a\r")).toEqual([]);
    expect(parser.push("\n\r\n")).toEqual([{ event: "message", data: "a" }]);
    expect(parser.push("data: b\r\rdata: c\n\n")).toEqual([
      { event: "message", data: "b" },
      { event: "message", data: "c" },
    ]);
  });

  it("skips comments and reads event and id fields", () => {
    const parser = new SseParser();
    expect(parser.push(": keep-alive\n\nevent: ping\nid: 4\ndata:x\n\n")).toEqual([
      { event: "ping", data: "x", id: "4" },
    ]);
  });

  it("flushes a final event that lacks its blank line", () => {
    const parser = new SseParser();
    expect(parser.push("data: [DONE]")).toEqual([]);
    expect(parser.end()).toEqual([{ event: "message", data: "[DONE]" }]);
  });
});

describe("chatEvents", () => {
  it("reads content, finish reason and usage", () => {
    expect(chatEvents(chunk("Hi"))).toEqual([{ kind: "delta", content: "Hi" }]);
    expect(chatEvents(JSON.stringify({ choices: [{ delta: {}, finish_reason: "stop" }] }))).toEqual([
      { kind: "finish", reason: "stop" },
    ]);
    expect(chatEvents(usageChunk)).toEqual([
      { kind: "usage", usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } },
    ]);
  });

  it("ignores the role-only first chunk", () => {
    expect(chatEvents(JSON.stringify({ choices: [{ delta: { role: "assistant", content: "" } }] }))).toEqual([]);
  });

  it("recognises [DONE]", () => {
    expect(chatEvents("[DONE]")).toEqual([{ kind: "done" }]);
  });

  it("turns an error body into an error event", () => {
    const body = { error: { message: "overloaded", type: "server_error", param: null, code: "model_overloaded" } };
    expect(chatEvents(JSON.stringify(body))).toEqual([{ kind: "error", error: body.error }]);
  });

  it("reports malformed JSON instead of throwing", () => {
    const [event] = chatEvents("{not json");
    expect(event?.kind).toBe("error");
  });
});

describe("readChatStream", () => {
  it("yields deltas, usage and done across arbitrary byte splits", async () => {
    const text = [chunk("Hel"), chunk("lo, wörld"), usageChunk, "[DONE]"].map((d) => `data: ${d}\n\n`).join("");
    const bytes = new TextEncoder().encode(text);
    // Every 5 bytes: splits lines, JSON and the two-byte "ö" alike.
    const parts: Uint8Array[] = [];
    for (let i = 0; i < bytes.length; i += 5) parts.push(bytes.slice(i, i + 5));
    const events = await collect(streamOf(parts));
    expect(events).toEqual([
      { kind: "delta", content: "Hel" },
      { kind: "delta", content: "lo, wörld" },
      { kind: "usage", usage: { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 } },
      { kind: "done" },
    ]);
  });

  it("stops at [DONE] and ignores anything after it", async () => {
    const events = await collect(streamOf([`data: [DONE]\n\ndata: ${chunk("late")}\n\n`]));
    expect(events).toEqual([{ kind: "done" }]);
  });

  it("ends cleanly when the stream closes without [DONE]", async () => {
    const events = await collect(streamOf([`data: ${chunk("a")}`]));
    expect(events).toEqual([{ kind: "delta", content: "a" }]);
  });

  it("surfaces an error sent inside the stream", async () => {
    const error = { message: "Rate limit reached", type: "rate_limit_error", code: "rate_limit_exceeded" };
    const events = await collect(streamOf([`data: ${chunk("a")}\n\n`, `data: ${JSON.stringify({ error })}\n\n`]));
    expect(events).toEqual([{ kind: "delta", content: "a" }, { kind: "error", error }]);
  });
});
