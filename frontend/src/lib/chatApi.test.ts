import { describe, expect, it } from "vitest";
import { messagesEvents, messagesRequest, MESSAGES_MAX_TOKENS } from "./chatApi";
import { buildChatRequest, DEFAULT_PARAMS } from "./request";
import { SseParser } from "./sse";

describe("messagesRequest", () => {
  it("moves the system prompt out of the turns and renames the limits", () => {
    const chat = buildChatRequest(
      "demo",
      "Be brief.",
      [
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello" },
        { role: "user", content: "more" },
      ],
      { ...DEFAULT_PARAMS, temperature: 1.5, stop: ["END"], seed: 3 },
    );
    expect(messagesRequest(chat)).toEqual({
      model: "demo",
      system: "Be brief.",
      messages: [
        { role: "user", content: "hi" },
        { role: "assistant", content: "hello" },
        { role: "user", content: "more" },
      ],
      max_tokens: 256,
      stream: true,
      temperature: 1,
      top_p: 1,
      stop_sequences: ["END"],
    });
  });

  it("always sends max_tokens, which the Messages API requires", () => {
    const chat = buildChatRequest("demo", "", [{ role: "user", content: "hi" }], { ...DEFAULT_PARAMS, max_tokens: null });
    const body = messagesRequest(chat);
    expect(body.max_tokens).toBe(MESSAGES_MAX_TOKENS);
    expect("system" in body).toBe(false);
  });
});

describe("messagesEvents", () => {
  it("turns Anthropic's event stream into deltas, the finish, the usage and the end", () => {
    const wire = [
      'event: message_start\ndata: {"type":"message_start","message":{"usage":{"input_tokens":5,"output_tokens":0}}}\n\n',
      'event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}\n\n',
      'event: ping\ndata: {"type":"ping"}\n\n',
      'event: content_block_delta\ndata: {"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}\n\n',
      'event: content_block_stop\ndata: {"type":"content_block_stop","index":0}\n\n',
      'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"input_tokens":5,"output_tokens":1}}\n\n',
      'event: message_stop\ndata: {"type":"message_stop"}\n\n',
    ].join("");
    const events = new SseParser().push(wire).flatMap(messagesEvents);
    expect(events).toEqual([
      { kind: "delta", content: "Hi" },
      { kind: "finish", reason: "max_tokens" },
      { kind: "usage", usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 } },
      { kind: "done" },
    ]);
  });

  it("reports an error event with its message", () => {
    const [event] = new SseParser().push(
      'event: error\ndata: {"type":"error","error":{"type":"overloaded_error","message":"Busy."}}\n\n',
    );
    expect(messagesEvents(event!)).toEqual([{ kind: "error", error: { message: "Busy.", type: "overloaded_error" } }]);
  });
});
