/**
 * The two APIs a playground chat can go through: OpenAI's Chat Completions and Anthropic's
 * Messages. Both reach the same gateway (same key, limits, cache and logs); each has its
 * path, its request body and its stream of events, mapped here onto the chat's own events.
 */
import type { ChatRequest } from "./request";
import type { SseEvent, StreamEvent } from "./sse";
import { chatEvents } from "./sse";

export type ChatApi = "chat" | "messages";

export interface ChatRoute {
  /** The path under the API base. */
  path: string;
  /** The body this API takes for the chat's request. */
  body(request: ChatRequest): object;
  /** One server-sent event as the chat's stream events. */
  events(event: SseEvent): StreamEvent[];
}

/** Anthropic's Messages API needs `max_tokens`; this stands in when the chat sets none. */
export const MESSAGES_MAX_TOKENS = 1024;

export interface MessagesRequest {
  model: string;
  system?: string;
  messages: { role: "user" | "assistant"; content: string }[];
  max_tokens: number;
  stream: true;
  temperature: number;
  top_p: number;
  stop_sequences?: string[];
}

export function messagesRequest(request: ChatRequest): MessagesRequest {
  const system = request.messages.filter((m) => m.role === "system").map((m) => m.content);
  const body: MessagesRequest = {
    model: request.model,
    messages: request.messages.flatMap((m) => (m.role === "system" ? [] : [{ role: m.role, content: m.content }])),
    max_tokens: request.max_tokens ?? MESSAGES_MAX_TOKENS,
    stream: true,
    // The Messages API takes temperatures from 0 to 1.
    temperature: Math.min(request.temperature, 1),
    top_p: request.top_p,
  };
  if (system.length) body.system = system.join("\n\n");
  if (request.stop?.length) body.stop_sequences = request.stop;
  return body;
}

interface MessagesEvent {
  type?: string;
  delta?: { type?: string; text?: string; stop_reason?: string | null };
  usage?: { input_tokens?: number; output_tokens?: number };
  error?: { type?: string; message?: string };
}

/** One Messages API event as the chat's stream events. */
export function messagesEvents(event: SseEvent): StreamEvent[] {
  let data: MessagesEvent;
  try {
    data = JSON.parse(event.data) as MessagesEvent;
  } catch {
    return [{ kind: "error", error: { message: `Malformed stream event: ${event.data.slice(0, 200)}` } }];
  }
  switch (data.type) {
    case "content_block_delta":
      return data.delta?.type === "text_delta" && data.delta.text ? [{ kind: "delta", content: data.delta.text }] : [];
    case "message_delta": {
      const events: StreamEvent[] = [];
      if (data.delta?.stop_reason) events.push({ kind: "finish", reason: data.delta.stop_reason });
      const input = data.usage?.input_tokens ?? 0;
      const output = data.usage?.output_tokens ?? 0;
      events.push({ kind: "usage", usage: { prompt_tokens: input, completion_tokens: output, total_tokens: input + output } });
      return events;
    }
    case "message_stop":
      return [{ kind: "done" }];
    case "error":
      return [{ kind: "error", error: { message: data.error?.message ?? "The stream failed.", type: data.error?.type ?? null } }];
    default:
      return [];
  }
}

export const CHAT_ROUTES: Record<ChatApi, ChatRoute> = {
  chat: { path: "/chat/completions", body: (request) => request, events: (event) => chatEvents(event.data) },
  messages: { path: "/messages", body: messagesRequest, events: messagesEvents },
};
