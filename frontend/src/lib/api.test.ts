import { afterEach, describe, expect, it, vi } from "vitest";
import { streamChat } from "./api";
import { ApiError } from "./errors";
import { buildChatRequest, DEFAULT_PARAMS } from "./request";

const request = buildChatRequest("demo", "", [{ role: "user", content: "hi" }], DEFAULT_PARAMS);
const encoder = new TextEncoder();

function sse(...payloads: unknown[]): string {
  return payloads.map((p) => `data: ${typeof p === "string" ? p : JSON.stringify(p)}\n\n`).join("");
}

function delta(content: string) {
  return { choices: [{ index: 0, delta: { content }, finish_reason: null }] };
}

/** A response whose body the test feeds piece by piece. */
function controllable(headers: Record<string, string> = {}) {
  let controller!: ReadableStreamDefaultController<Uint8Array>;
  const body = new ReadableStream<Uint8Array>({ start: (c) => void (controller = c) });
  const response = new Response(body, { status: 200, headers: { "content-type": "text/event-stream", ...headers } });
  return {
    response,
    send: (text: string) => controller.enqueue(encoder.encode(text)),
    fail: (reason: unknown) => controller.error(reason),
  };
}

afterEach(() => vi.unstubAllGlobals());

describe("streamChat", () => {
  it("streams deltas and reports usage, timings and the cache header", async () => {
    const body = sse(delta("Hel"), delta("lo"), { choices: [{ delta: {}, finish_reason: "stop" }] }, { choices: [], usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 } }, "[DONE]");
    const fetchMock = vi.fn(async () => new Response(body, {
        headers: { "x-cache": "MISS", "x-request-id": "r1", "x-ratelimit-limit-requests": "60", "x-ratelimit-remaining-requests": "59" },
      }));
    vi.stubGlobal("fetch", fetchMock);
    let clock = 0;
    const seen: string[] = [];
    const stats = await streamChat("/v1", "llms_abcdefghij12_x", request, { onDelta: (t) => seen.push(t) }, new AbortController().signal, () => (clock += 10));
    expect(seen).toEqual(["Hel", "lo"]);
    expect(stats).toEqual({
      usage: { prompt_tokens: 5, completion_tokens: 2, total_tokens: 7 },
      latencyMs: 20,
      ttftMs: 10,
      cache: "MISS",
      requestId: "r1",
      rateLimit: { remaining: 59, limit: 60 },
      finishReason: "stop",
      stopped: false,
    });
    const [url, init] = fetchMock.mock.calls[0] as unknown as [string, RequestInit];
    expect(url).toBe("/v1/chat/completions");
    expect((init.headers as Record<string, string>).Authorization).toBe("Bearer llms_abcdefghij12_x");
    expect(JSON.parse(init.body as string)).toEqual(request);
  });

  it("maps an error status to ApiError with retry-after", async () => {
    const body = JSON.stringify({ error: { message: "Slow down", type: "rate_limit_error", param: null, code: "rate_limit_exceeded" } });
    vi.stubGlobal("fetch", async () => new Response(body, { status: 429, headers: { "retry-after": "7" } }));
    const error = await streamChat("/v1", "k", request, { onDelta: () => {} }, new AbortController().signal).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(ApiError);
    expect(error).toMatchObject({ status: 429, retryAfter: 7, code: "rate_limit_exceeded", message: "Slow down" });
  });

  it("maps an error inside the stream by its code", async () => {
    const body = sse(delta("a"), { error: { message: "busy", type: "server_error", param: null, code: "model_overloaded" } });
    vi.stubGlobal("fetch", async () => new Response(body));
    const error = await streamChat("/v1", "k", request, { onDelta: () => {} }, new AbortController().signal).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 503, message: "busy" });
  });

  it("keeps what arrived when stopped mid-stream", async () => {
    const stream = controllable({ "x-cache": "BYPASS" });
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      // A real fetch errors its body when the signal aborts; the fake body does the same.
      init.signal?.addEventListener("abort", () => stream.fail(new DOMException("aborted", "AbortError")));
      return stream.response;
    });
    const abort = new AbortController();
    const seen: string[] = [];
    const pending = streamChat("/v1", "k", request, {
      onDelta: (t) => {
        seen.push(t);
        abort.abort();
      },
    }, abort.signal);
    stream.send(sse(delta("first")));
    const stats = await pending;
    expect(seen).toEqual(["first"]);
    expect(stats.stopped).toBe(true);
    expect(stats.cache).toBe("BYPASS");
    expect(stats.usage).toBeNull();
    expect(stats.rateLimit).toBeNull();
  });

  it("rejects with the abort when stopped before the response", async () => {
    vi.stubGlobal("fetch", async (_url: string, init: RequestInit) => {
      init.signal?.throwIfAborted();
      return new Response("");
    });
    const abort = new AbortController();
    abort.abort();
    await expect(streamChat("/v1", "k", request, { onDelta: () => {} }, abort.signal)).rejects.toMatchObject({ name: "AbortError" });
  });

  it("reports an unreachable server as a network error", async () => {
    vi.stubGlobal("fetch", async () => {
      throw new TypeError("Failed to fetch");
    });
    const error = await streamChat("/v1", "k", request, { onDelta: () => {} }, new AbortController().signal).catch((e: unknown) => e);
    expect(error).toMatchObject({ status: 0, message: "Failed to fetch" });
  });
});
