/**
 * Server-sent events, as the OpenAI-compatible API streams them.
 *
 * Network chunks arrive at arbitrary byte offsets: a line (even a UTF-8 character) can be
 * split across two reads, so the parser buffers until a line terminator and dispatches an
 * event on each blank line, per the WHATWG EventSource rules (multi-line `data:` joined
 * with "\n", comments skipped, CR/LF/CRLF all accepted).
 */

export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

export class SseParser {
  private buffer = "";
  private data: string[] = [];
  private eventName = "";
  private id: string | undefined;
  // A CR at the end of one chunk may be the first half of a CRLF split across two chunks.
  private pendingCr = false;

  /** Feed decoded text; returns the events completed by it. */
  push(text: string): SseEvent[] {
    if (this.pendingCr && text.startsWith("\n")) text = text.slice(1);
    this.pendingCr = false;
    this.buffer += text;
    const events: SseEvent[] = [];
    let start = 0;
    for (let i = 0; i < this.buffer.length; i++) {
      const ch = this.buffer[i];
      if (ch !== "\n" && ch !== "\r") continue;
      const line = this.buffer.slice(start, i);
      if (ch === "\r") {
        if (i + 1 === this.buffer.length) this.pendingCr = true;
        else if (this.buffer[i + 1] === "\n") i++;
      }
      start = i + 1;
      const event = this.line(line);
      if (event) events.push(event);
    }
    this.buffer = this.buffer.slice(start);
    return events;
  }

  /** End of stream: a final event without its blank line still counts. */
  end(): SseEvent[] {
    const events: SseEvent[] = [];
    if (this.buffer) {
      const event = this.line(this.buffer);
      this.buffer = "";
      if (event) events.push(event);
    }
    const last = this.dispatch();
    if (last) events.push(last);
    return events;
  }

  private line(line: string): SseEvent | null {
    if (line === "") return this.dispatch();
    if (line.startsWith(":")) return null;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") this.data.push(value);
    else if (field === "event") this.eventName = value;
    else if (field === "id") this.id = value;
    return null;
  }

  private dispatch(): SseEvent | null {
    if (this.data.length === 0) {
      this.eventName = "";
      return null;
    }
    const event: SseEvent = { event: this.eventName || "message", data: this.data.join("\n") };
    if (this.id !== undefined) event.id = this.id;
    this.data = [];
    this.eventName = "";
    return event;
  }
}

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ErrorBody {
  message: string;
  type?: string | null;
  param?: string | null;
  code?: string | null;
}

export type StreamEvent =
  | { kind: "delta"; content: string; role?: string }
  | { kind: "finish"; reason: string }
  | { kind: "usage"; usage: Usage }
  | { kind: "error"; error: ErrorBody }
  | { kind: "done" };

interface ChunkChoice {
  delta?: { content?: string | null; role?: string };
  finish_reason?: string | null;
}

interface Chunk {
  choices?: ChunkChoice[];
  usage?: Usage | null;
  error?: ErrorBody;
}

/** Turn one SSE `data` payload of a chat completion stream into stream events. */
export function chatEvents(data: string): StreamEvent[] {
  if (data.trim() === "[DONE]") return [{ kind: "done" }];
  let chunk: Chunk;
  try {
    chunk = JSON.parse(data) as Chunk;
  } catch {
    return [{ kind: "error", error: { message: `Malformed stream chunk: ${data.slice(0, 200)}` } }];
  }
  if (chunk.error) return [{ kind: "error", error: chunk.error }];
  const events: StreamEvent[] = [];
  const choice = chunk.choices?.[0];
  const content = choice?.delta?.content;
  if (content) events.push({ kind: "delta", content });
  if (choice?.finish_reason) events.push({ kind: "finish", reason: choice.finish_reason });
  if (chunk.usage) events.push({ kind: "usage", usage: chunk.usage });
  return events;
}

/**
 * Read a fetch body as chat stream events, decoding UTF-8 across chunk boundaries;
 * `toEvents` maps each server-sent event (a chat completion chunk unless told otherwise).
 */
export async function* readChatStream(
  body: ReadableStream<Uint8Array>,
  toEvents: (event: SseEvent) => StreamEvent[] = (event) => chatEvents(event.data),
): AsyncGenerator<StreamEvent, void, undefined> {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  const parser = new SseParser();
  try {
    for (;;) {
      const { done, value } = await reader.read();
      const events = done
        ? parser.push(decoder.decode()).concat(parser.end())
        : parser.push(decoder.decode(value, { stream: true }));
      for (const event of events) {
        for (const streamEvent of toEvents(event)) {
          yield streamEvent;
          if (streamEvent.kind === "done") return;
        }
      }
      if (done) return;
    }
  } finally {
    // Stops the download when the consumer leaves early; a no-op after a clean end.
    reader.cancel().catch(() => undefined);
  }
}
