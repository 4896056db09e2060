import { useState } from "react";
import { compareTexts, type Similarity } from "../lib/embeddings";
import { ApiError, describeError } from "../lib/errors";

type State =
  | { state: "idle" }
  | { state: "running" }
  | { state: "done"; result: Similarity }
  | { state: "error"; error: ApiError };

/** The Embeddings tab: embed two texts with an embedding model and show their cosine similarity. */
export function EmbeddingsPanel({
  apiBase,
  apiKey,
  models,
}: {
  apiBase: string;
  apiKey: string | null;
  models: string[];
}) {
  const [model, setModel] = useState("");
  const [first, setFirst] = useState("A man is playing a guitar.");
  const [second, setSecond] = useState("Someone is performing music.");
  const [run, setRun] = useState<State>({ state: "idle" });
  const chosen = models.includes(model) ? model : (models[0] ?? "");

  async function compare() {
    setRun({ state: "running" });
    try {
      setRun({ state: "done", result: await compareTexts(apiBase, apiKey, chosen, first, second) });
    } catch (error) {
      setRun({ state: "error", error: error instanceof ApiError ? error : new ApiError(0, { message: String(error) }) });
    }
  }

  const error = run.state === "error" ? describeError(run.error) : null;
  return (
    <main className="embeddings" data-testid="embeddings-panel">
      <h1>Compare two texts</h1>
      <p className="muted">Each text becomes a vector; the closer their directions, the nearer the similarity is to 1.</p>
      <label>
        Embedding model
        <select value={chosen} onChange={(e) => setModel(e.target.value)} disabled={models.length === 0} data-testid="embedding-model">
          {models.length > 0 ? models.map((m) => <option key={m} value={m}>{m}</option>) : <option value="">No embedding models</option>}
        </select>
      </label>
      <div className="embedding-texts">
        <label>
          First text
          <textarea rows={3} value={first} onChange={(e) => setFirst(e.target.value)} data-testid="embedding-first" />
        </label>
        <label>
          Second text
          <textarea rows={3} value={second} onChange={(e) => setSecond(e.target.value)} data-testid="embedding-second" />
        </label>
      </div>
      <button
        type="button"
        className="primary"
        onClick={() => void compare()}
        disabled={!chosen || !first.trim() || !second.trim() || run.state === "running"}
        data-testid="compare"
      >
        {run.state === "running" ? "Comparing…" : "Compare"}
      </button>
      {run.state === "done" && (
        <div className="similarity" data-testid="similarity">
          <strong data-testid="similarity-value">{run.result.similarity.toFixed(3)}</strong>
          <span className="muted">
            cosine similarity · {run.result.dimensions} dimensions · {run.result.promptTokens} tokens · cache{" "}
            {run.result.cache ?? "?"}
          </span>
        </div>
      )}
      {error && run.state === "error" && (
        <div className="error-card" role="alert" data-testid="embedding-error">
          <strong>{error.title}</strong>
          <p>{run.error.message}</p>
          {error.hint && <p className="hint">{error.hint}</p>}
        </div>
      )}
    </main>
  );
}
