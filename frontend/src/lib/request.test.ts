import { execFileSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { buildChatRequest, curlCommand, DEFAULT_PARAMS, parseStopSequences } from "./request";
import { describeError, errorFromResponse, formatSeconds, parseRetryAfter } from "./errors";

describe("buildChatRequest", () => {
  it("streams with usage and puts the system prompt first", () => {
    const request = buildChatRequest("demo", "Be brief.", [{ role: "user", content: "hi" }], DEFAULT_PARAMS);
    expect(request).toEqual({
      model: "demo",
      messages: [
        { role: "system", content: "Be brief." },
        { role: "user", content: "hi" },
      ],
      stream: true,
      stream_options: { include_usage: true },
      temperature: 0.7,
      top_p: 1,
      max_tokens: 256,
    });
  });

  it("sends stop and seed only when set", () => {
    const request = buildChatRequest("demo", " ", [], { ...DEFAULT_PARAMS, stop: ["\n\n", "END"], seed: 42, max_tokens: null });
    expect(request.messages).toEqual([]);
    expect(request.stop).toEqual(["\n\n", "END"]);
    expect(request.seed).toBe(42);
    expect("max_tokens" in request).toBe(false);
  });

  it("reads stop sequences one per line with escapes", () => {
    expect(parseStopSequences("END\n\\n\\n\n\na\nb\nc")).toEqual(["END", "\n\n", "a", "b"]);
  });
});

describe("curlCommand", () => {
  it("is a shell command that sends exactly the request", () => {
    const request = buildChatRequest("demo", "It's \"quoted\" $HOME `x`", [{ role: "user", content: "a'b" }], DEFAULT_PARAMS);
    const command = curlCommand("http://127.0.0.1:8000/v1/chat/completions", request);
    // Let a real shell parse it, with curl replaced by printing its arguments.
    const args = execFileSync("bash", ["--norc", "--noprofile", "-c", `curl() { printf '%s\\0' "$@"; }; ${command}`], {
      env: { LLMSERVER_API_KEY: "k" },
      encoding: "utf8",
    }).split("\0");
    expect(args).toContain("Authorization: Bearer k");
    expect(JSON.parse(args[args.indexOf("-d") + 1]!)).toEqual(request);
  });
});

describe("errors", () => {
  it("reads the OpenAI error body and retry-after", () => {
    const headers = new Headers({ "retry-after": "12", "x-request-id": "req-1" });
    const body = JSON.stringify({ error: { message: "Slow down", type: "rate_limit_error", param: null, code: "rate_limit_exceeded" } });
    const error = errorFromResponse(429, headers, body);
    expect(error).toMatchObject({ status: 429, message: "Slow down", code: "rate_limit_exceeded", retryAfter: 12, requestId: "req-1" });
    expect(describeError(error).title).toBe("Rate limited (429)");
  });

  it("explains a quota 429 differently from a rate limit", () => {
    const error = errorFromResponse(429, new Headers(), JSON.stringify({ error: { message: "Quota", code: "insufficient_quota" } }));
    expect(describeError(error).title).toBe("Quota exhausted (429)");
  });

  it("falls back to a status message for non-JSON bodies", () => {
    expect(errorFromResponse(503, new Headers(), "<html>Bad gateway</html>").message).toBe("The server is unavailable or overloaded.");
    expect(errorFromResponse(401, new Headers(), "").message).toBe("The API key is missing or invalid.");
  });

  it("formats retry times for people", () => {
    expect(formatSeconds(12)).toBe("12 s");
    expect(formatSeconds(0.2)).toBe("1 s");
    expect(formatSeconds(90)).toBe("1 min 30 s");
    expect(formatSeconds(120)).toBe("2 min");
  });

  it("parses retry-after as seconds or an HTTP date", () => {
    expect(parseRetryAfter("3")).toBe(3);
    expect(parseRetryAfter(null)).toBeNull();
    const now = Date.parse("2026-01-01T00:00:00Z");
    expect(parseRetryAfter("Thu, 01 Jan 2026 00:00:30 GMT", now)).toBe(30);
  });
});
