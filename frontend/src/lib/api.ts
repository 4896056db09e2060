import { CHAT_ROUTES, type ChatRoute } from "./chatApi";
import { ApiError, errorFromResponse } from "./errors";
import { authHeaders } from "./keys";
import type { ChatRequest } from "./request";
import { readChatStream, type Usage } from "./sse";

export interface ModelInfo {
  id: string;
  owned_by?: string;
  /** The surfaces it serves: "chat", "completions", "embeddings" (see lib/embeddings). */
  capabilities?: string[];
}

function networkError(error: unknown): ApiError {
  const message = error instanceof Error ? error.message : String(error);
  return new ApiError(0, { message });
}

export async function listModels(
  apiBase: string,
  key: string | null,
  signal?: AbortSignal,
): Promise<ModelInfo[]> {
  let response: Response;
  try {
    response = await fetch(`${apiBase}/models`, { headers: authHeaders(key), signal: signal ?? null });
  } catch (error) {
    throw networkError(error);
  }
  const text = await response.text();
  if (!response.ok) throw errorFromResponse(response.status, response.headers, text);
  const body = JSON.parse(text) as { data?: ModelInfo[] };
  return (body.data ?? []).filter((m) => typeof m.id === "string");
}

export interface ReplyStats {
  usage: Usage | null;
  /** Milliseconds from sending the request to the last byte. */
  latencyMs: number;
  /** Milliseconds from sending the request to the first content token. */
  ttftMs: number | null;
  /** The X-Cache header: HIT, MISS or BYPASS. */
  cache: string | null;
  requestId: string | null;
  /** Requests left this minute for the key, from `x-ratelimit-*-requests` (absent: no limit). */
  rateLimit: { remaining: number; limit: number } | null;
  finishReason: string | null;
  /** The user stopped the stream; the figures cover what arrived until then. */
  stopped: boolean;
}

export interface StreamCallbacks {
  onDelta(text: string): void;
}

/**
 * Send a streaming chat request through `route`'s API (Chat Completions unless told
 * otherwise) and feed the reply to `onDelta` as it arrives.
 * Resolves with the reply's statistics, also when `signal` stops it mid-stream; rejects with
 * ApiError, or with the abort reason when `signal` fires before the response starts.
 */
export async function streamChat(
  apiBase: string,
  key: string | null,
  request: ChatRequest,
  callbacks: StreamCallbacks,
  signal: AbortSignal,
  now: () => number = () => performance.now(),
  route: ChatRoute = CHAT_ROUTES.chat,
): Promise<ReplyStats> {
  const started = now();
  let response: Response;
  try {
    response = await fetch(`${apiBase}${route.path}`, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "text/event-stream", ...authHeaders(key) },
      body: JSON.stringify(route.body(request)),
      signal,
    });
  } catch (error) {
    if (signal.aborted) throw error;
    throw networkError(error);
  }
  if (!response.ok || !response.body) {
    throw errorFromResponse(response.status, response.headers, await response.text());
  }
  const stats: ReplyStats = {
    usage: null,
    latencyMs: 0,
    ttftMs: null,
    cache: response.headers.get("x-cache"),
    requestId: response.headers.get("x-request-id"),
    rateLimit: rateLimitOf(response.headers),
    finishReason: null,
    stopped: false,
  };
  try {
    await consume(response.body, stats, callbacks, () => now() - started, route);
  } catch (error) {
    if (!signal.aborted) throw error instanceof ApiError ? error : networkError(error);
    stats.stopped = true;
  }
  stats.latencyMs = now() - started;
  return stats;
}

async function consume(
  body: ReadableStream<Uint8Array>,
  stats: ReplyStats,
  callbacks: StreamCallbacks,
  elapsed: () => number,
  route: ChatRoute,
): Promise<void> {
  for await (const event of readChatStream(body, route.events)) {
    switch (event.kind) {
      case "delta":
        if (stats.ttftMs === null) stats.ttftMs = elapsed();
        callbacks.onDelta(event.content);
        break;
      case "finish":
        stats.finishReason = event.reason;
        break;
      case "usage":
        stats.usage = event.usage;
        break;
      case "error":
        // The status line was already 200; an error inside the stream carries its own kind.
        throw new ApiError(statusOfStreamError(event.error.code ?? null), event.error, null, stats.requestId);
      case "done":
        break;
    }
  }
}

function rateLimitOf(headers: Headers): ReplyStats["rateLimit"] {
  const limit = Number(headers.get("x-ratelimit-limit-requests"));
  const remaining = Number(headers.get("x-ratelimit-remaining-requests"));
  if (!headers.has("x-ratelimit-limit-requests") || !Number.isFinite(limit) || !Number.isFinite(remaining)) return null;
  return { remaining, limit };
}

function statusOfStreamError(code: string | null): number {
  switch (code) {
    case "rate_limit_exceeded":
    case "insufficient_quota":
      return 429;
    case "model_overloaded":
    case "service_unavailable":
      return 503;
    default:
      return 500;
  }
}
