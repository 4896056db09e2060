import type { ErrorBody } from "./sse";

/** An API failure, with what the page needs to explain it and say when to retry. */
export class ApiError extends Error {
  readonly status: number;
  readonly type: string | null;
  readonly code: string | null;
  /** Seconds, from the `retry-after` header (or the body when the header is absent). */
  readonly retryAfter: number | null;
  readonly requestId: string | null;

  constructor(
    status: number,
    body: ErrorBody,
    retryAfter: number | null = null,
    requestId: string | null = null,
  ) {
    super(body.message);
    this.name = "ApiError";
    this.status = status;
    this.type = body.type ?? null;
    this.code = body.code ?? null;
    this.retryAfter = retryAfter;
    this.requestId = requestId;
  }
}

/** `retry-after` as seconds: either delta-seconds or an HTTP date. */
export function parseRetryAfter(value: string | null, now: number = Date.now()): number | null {
  if (value === null || value.trim() === "") return null;
  const seconds = Number(value);
  if (Number.isFinite(seconds)) return Math.max(0, seconds);
  const date = Date.parse(value);
  if (Number.isNaN(date)) return null;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

const FALLBACK_MESSAGES: Record<number, string> = {
  401: "The API key is missing or invalid.",
  403: "This key is not allowed to do that.",
  404: "Not found.",
  429: "Too many requests.",
  503: "The server is unavailable or overloaded.",
};

/** Build an ApiError from a non-2xx response, whatever shape its body has. */
export function errorFromResponse(status: number, headers: Headers, bodyText: string): ApiError {
  let body: ErrorBody = { message: FALLBACK_MESSAGES[status] ?? `HTTP ${status}` };
  try {
    const parsed = JSON.parse(bodyText) as { error?: ErrorBody | string; detail?: string };
    if (parsed.error && typeof parsed.error === "object" && parsed.error.message) body = parsed.error;
    else if (typeof parsed.error === "string") body = { message: parsed.error };
    else if (typeof parsed.detail === "string") body = { message: parsed.detail };
  } catch {
    if (bodyText.trim() && !bodyText.trimStart().startsWith("<")) body = { message: bodyText.trim().slice(0, 300) };
  }
  return new ApiError(
    status,
    body,
    parseRetryAfter(headers.get("retry-after")),
    headers.get("x-request-id"),
  );
}

export interface ErrorView {
  title: string;
  hint: string;
}

/**
 * What to tell the user, per status: the server message is shown as well, and the page
 * counts `retryAfter` down next to it.
 */
export function describeError(error: ApiError): ErrorView {
  switch (error.status) {
    case 401:
      return { title: "Not authenticated (401)", hint: "Check the API key in Settings: it is missing, mistyped, expired or revoked." };
    case 403:
      return { title: "Forbidden (403)", hint: "This key may not use this model or endpoint. Ask an admin to widen its permissions." };
    case 429:
      return error.code === "insufficient_quota"
        ? { title: "Quota exhausted (429)", hint: "This key has used its token quota for the period." }
        : { title: "Rate limited (429)", hint: "Too many requests for this key: wait, then retry." };
    case 503:
      return { title: "Service unavailable (503)", hint: "The model is loading or the server is overloaded." };
    case 0:
      return { title: "Network error", hint: "The server could not be reached." };
    default:
      return { title: `Request failed (${error.status})`, hint: "" };
  }
}

export function formatSeconds(seconds: number): string {
  if (seconds < 60) return `${Math.ceil(seconds)} s`;
  const minutes = Math.floor(seconds / 60);
  const rest = Math.ceil(seconds % 60);
  return rest ? `${minutes} min ${rest} s` : `${minutes} min`;
}
