import { ApiError, errorFromResponse } from "./errors";
import { authHeaders } from "./keys";

/** The surfaces a model serves, from `/v1/models` (`capabilities`); absent: a chat model. */
export function capabilitiesOf(model: { capabilities?: string[] }): string[] {
  return model.capabilities ?? ["chat", "completions"];
}

export function isEmbeddingModel(model: { capabilities?: string[] }): boolean {
  return capabilitiesOf(model).includes("embeddings");
}

/** Cosine similarity of two vectors of the same length (0 when either is all zeros). */
export function cosine(a: readonly number[], b: readonly number[]): number {
  if (a.length !== b.length) throw new Error(`vectors of different lengths: ${a.length} and ${b.length}`);
  let dot = 0;
  let normA = 0;
  let normB = 0;
  for (let i = 0; i < a.length; i++) {
    dot += a[i]! * b[i]!;
    normA += a[i]! * a[i]!;
    normB += b[i]! * b[i]!;
  }
  return normA === 0 || normB === 0 ? 0 : dot / Math.sqrt(normA * normB);
}

export interface Similarity {
  similarity: number;
  dimensions: number;
  promptTokens: number;
  /** The X-Cache header: HIT, MISS or BYPASS. */
  cache: string | null;
}

/** Embed two texts in one request and compare them. Rejects with ApiError. */
export async function compareTexts(
  apiBase: string,
  key: string | null,
  model: string,
  first: string,
  second: string,
  signal?: AbortSignal,
): Promise<Similarity> {
  let response: Response;
  try {
    response = await fetch(`${apiBase}/embeddings`, {
      method: "POST",
      headers: { "Content-Type": "application/json", ...authHeaders(key) },
      body: JSON.stringify({ model, input: [first, second], encoding_format: "float" }),
      signal: signal ?? null,
    });
  } catch (error) {
    throw new ApiError(0, { message: error instanceof Error ? error.message : String(error) });
  }
  const text = await response.text();
  if (!response.ok) throw errorFromResponse(response.status, response.headers, text);
  const body = JSON.parse(text) as {
    data: { index: number; embedding: number[] }[];
    usage: { prompt_tokens: number };
  };
  const [a, b] = [...body.data].sort((x, y) => x.index - y.index).map((d) => d.embedding);
  if (!a || !b) throw new ApiError(response.status, { message: "The answer holds fewer than two embeddings." });
  return {
    similarity: cosine(a, b),
    dimensions: a.length,
    promptTokens: body.usage.prompt_tokens,
    cache: response.headers.get("x-cache"),
  };
}
