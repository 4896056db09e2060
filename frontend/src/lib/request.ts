/** The chat completion request the playground sends, and the same request as a curl command. */

export interface ChatMessage {
  role: "system" | "user" | "assistant";
  content: string;
}

export interface Params {
  temperature: number;
  top_p: number;
  max_tokens: number | null;
  /** Up to four stop sequences, as OpenAI allows. */
  stop: string[];
  seed: number | null;
}

export const DEFAULT_PARAMS: Params = {
  temperature: 0.7,
  top_p: 1,
  max_tokens: 256,
  stop: [],
  seed: null,
};

export interface ChatRequest {
  model: string;
  messages: ChatMessage[];
  stream: true;
  stream_options: { include_usage: true };
  temperature: number;
  top_p: number;
  max_tokens?: number;
  stop?: string[];
  seed?: number;
}

export function buildChatRequest(
  model: string,
  systemPrompt: string,
  history: ChatMessage[],
  params: Params,
): ChatRequest {
  const messages: ChatMessage[] = systemPrompt.trim()
    ? [{ role: "system", content: systemPrompt }, ...history]
    : [...history];
  const request: ChatRequest = {
    model,
    messages,
    stream: true,
    stream_options: { include_usage: true },
    temperature: params.temperature,
    top_p: params.top_p,
  };
  if (params.max_tokens !== null) request.max_tokens = params.max_tokens;
  const stop = params.stop.filter((s) => s !== "").slice(0, 4);
  if (stop.length) request.stop = stop;
  if (params.seed !== null) request.seed = params.seed;
  return request;
}

/** One stop sequence per line; `\n` and `\t` typed literally stand for the characters. */
export function parseStopSequences(text: string): string[] {
  return text
    .split("\n")
    .filter((line) => line !== "")
    .map((line) => line.replace(/\\n/g, "\n").replace(/\\t/g, "\t"))
    .slice(0, 4);
}

function shellQuote(text: string): string {
  return `'${text.replace(/'/g, `'\\''`)}'`;
}

/**
 * The request as a shell command. The key is always the `$LLMSERVER_API_KEY` variable,
 * never the real key, so the command can be pasted into chats and tickets.
 */
export function curlCommand(url: string, request: object): string {
  return [
    `curl -N ${shellQuote(url)}`,
    `  -H "Authorization: Bearer $LLMSERVER_API_KEY"`,
    `  -H 'Content-Type: application/json'`,
    `  -d ${shellQuote(JSON.stringify(request, null, 2))}`,
  ].join(" \\\n");
}
