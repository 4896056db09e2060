import { useCallback, useEffect, useMemo, useRef, useState } from "react";
import { ApiSwitch } from "./components/ApiSwitch";
import { EmbeddingsPanel } from "./components/EmbeddingsPanel";
import { KeyPanel } from "./components/KeyPanel";
import { Message, type Turn } from "./components/Message";
import { ParamsPanel } from "./components/ParamsPanel";
import { listModels, streamChat, type ModelInfo } from "./lib/api";
import { CHAT_ROUTES, type ChatApi } from "./lib/chatApi";
import type { UiConfig } from "./lib/config";
import { isEmbeddingModel } from "./lib/embeddings";
import { ApiError, describeError } from "./lib/errors";
import { activeKey, forgetUserKey, loadUserKey, saveUserKey, sessionStore } from "./lib/keys";
import {
  buildChatRequest,
  curlCommand,
  DEFAULT_PARAMS,
  parseStopSequences,
  type ChatMessage,
  type Params,
} from "./lib/request";

type ModelsState =
  | { state: "idle" }
  | { state: "loading" }
  | { state: "ready"; models: ModelInfo[] }
  | { state: "error"; error: ApiError };

const SUGGESTIONS = [
  "Explain server-sent events in two sentences.",
  "Write a haiku about caching.",
  "List three uses of a rate limiter.",
];

/** The turns a new request carries: everything except failed exchanges. */
function history(turns: Turn[]): ChatMessage[] {
  const messages: ChatMessage[] = [];
  for (let i = 0; i < turns.length; i++) {
    const turn = turns[i]!;
    const reply = turns[i + 1];
    if (turn.role === "user" && reply?.status === "error") {
      i++;
      continue;
    }
    if (turn.status === "error" || !turn.content) continue;
    messages.push({ role: turn.role, content: turn.content });
  }
  return messages;
}

export function App({ config }: { config: UiConfig }) {
  const storage = useMemo(sessionStore, []);
  const [userKey, setUserKey] = useState<string | null>(() => loadUserKey(storage));
  const key = activeKey(userKey, config.uiKey);
  const [models, setModels] = useState<ModelsState>({ state: "idle" });
  const [model, setModel] = useState("");
  const [systemPrompt, setSystemPrompt] = useState("");
  const [params, setParams] = useState<Params>(DEFAULT_PARAMS);
  const [api, setApi] = useState<ChatApi>("chat");
  const [stopText, setStopText] = useState("");
  const [turns, setTurns] = useState<Turn[]>([]);
  const [prompt, setPrompt] = useState("");
  const [settingsOpen, setSettingsOpen] = useState(false);
  const [tab, setTab] = useState<"chat" | "embeddings">("chat");
  const abortRef = useRef<AbortController | null>(null);
  const nextId = useRef(1);
  const endRef = useRef<HTMLDivElement>(null);
  const streaming = turns.some((t) => t.status === "streaming");

  const loadModels = useCallback(
    (signal?: AbortSignal) => {
      if (!key.key) {
        setModels({ state: "idle" });
        return;
      }
      setModels({ state: "loading" });
      listModels(config.apiBase, key.key, signal)
        .then((all) => {
          setModels({ state: "ready", models: all });
          const list = all.filter((m) => !isEmbeddingModel(m));
          setModel((current) => (list.some((m) => m.id === current) ? current : (list[0]?.id ?? "")));
        })
        .catch((error: unknown) => {
          if (signal?.aborted) return;
          setModels({ state: "error", error: error instanceof ApiError ? error : new ApiError(0, { message: String(error) }) });
        });
    },
    [config.apiBase, key.key],
  );

  useEffect(() => {
    const controller = new AbortController();
    loadModels(controller.signal);
    return () => controller.abort();
  }, [loadModels]);

  useEffect(() => {
    endRef.current?.scrollIntoView({ block: "end" });
  }, [turns]);

  const update = (id: number, change: (turn: Turn) => Turn) =>
    setTurns((all) => all.map((t) => (t.id === id ? change(t) : t)));

  async function send(text: string, base: Turn[]) {
    if (!text.trim() || !model || streaming) return;
    const userTurn: Turn = { id: nextId.current++, role: "user", content: text, status: "done" };
    const replyId = nextId.current++;
    const request = buildChatRequest(
      model,
      systemPrompt,
      [...history(base), { role: "user", content: text }],
      { ...params, stop: parseStopSequences(stopText) },
    );
    const route = CHAT_ROUTES[api];
    const curl = curlCommand(new URL(`${config.apiBase}${route.path}`, window.location.href).href, route.body(request));
    setTurns([...base, userTurn, { id: replyId, role: "assistant", content: "", status: "streaming", curl }]);
    setPrompt("");
    const controller = new AbortController();
    abortRef.current = controller;
    try {
      const stats = await streamChat(
        config.apiBase,
        key.key,
        request,
        { onDelta: (delta) => update(replyId, (t) => ({ ...t, content: t.content + delta })) },
        controller.signal,
        undefined,
        route,
      );
      update(replyId, (t) => ({ ...t, status: stats.stopped ? "stopped" : "done", stats }));
    } catch (error) {
      if (controller.signal.aborted) {
        update(replyId, (t) => ({ ...t, status: "stopped" }));
      } else {
        const apiError = error instanceof ApiError ? error : new ApiError(0, { message: String(error) });
        update(replyId, (t) => ({ ...t, status: "error", error: apiError, errorAt: Date.now() }));
      }
    } finally {
      abortRef.current = null;
    }
  }

  function retry(replyId: number) {
    const index = turns.findIndex((t) => t.id === replyId);
    const userTurn = turns[index - 1];
    if (index < 1 || !userTurn) return;
    void send(userTurn.content, turns.slice(0, index - 1));
  }

  function reset() {
    abortRef.current?.abort();
    setTurns([]);
  }

  const modelsError = models.state === "error" ? describeError(models.error) : null;
  const listed = models.state === "ready" ? models.models : [];
  const chatModels = listed.filter((m) => !isEmbeddingModel(m));
  const embeddingModels = listed.filter(isEmbeddingModel).map((m) => m.id);
  const lastTurn = turns[turns.length - 1];

  return (
    <div className="app">
      <header className="topbar">
        <div className="brand">
          <img src={`${import.meta.env.BASE_URL}favicon.svg`} alt="" width={24} height={24} />
          <span>
            LLM Server <span className="muted">Playground</span>
          </span>
        </div>
        <div className="model-picker">
          <label htmlFor="model" className="sr-only">
            Model
          </label>
          <select
            id="model"
            value={model}
            onChange={(e) => setModel(e.target.value)}
            disabled={chatModels.length === 0}
            data-testid="model-select"
          >
            {chatModels.length > 0 ? (
              chatModels.map((m) => (
                <option key={m.id} value={m.id}>
                  {m.id}
                </option>
              ))
            ) : (
              <option value="">
                {models.state === "loading" ? "Loading models…" : key.key ? "No models" : "Enter a key to list models"}
              </option>
            )}
          </select>
          <button type="button" className="ghost icon" title="Reload models" aria-label="Reload models" onClick={() => loadModels()} disabled={!key.key}>
            ↻
          </button>
        </div>
        <div className="tabs" role="tablist">
          {(["chat", "embeddings"] as const).map((name) => (
            <button key={name} type="button" role="tab" className="ghost" aria-selected={tab === name} onClick={() => setTab(name)} data-testid={`tab-${name}`}>
              {name === "chat" ? "Chat" : "Embeddings"}
            </button>
          ))}
        </div>
        <button
          type="button"
          className="ghost settings-toggle"
          aria-expanded={settingsOpen}
          onClick={() => setSettingsOpen(!settingsOpen)}
        >
          {settingsOpen ? "Done" : "Settings"}
        </button>
      </header>
      <div className="layout">
        <aside className={`sidebar ${settingsOpen ? "open" : ""}`}>
          <KeyPanel
            active={key}
            rejected={models.state === "error" && (models.error.status === 401 || models.error.status === 403)}
            onSave={(value) => setUserKey(saveUserKey(storage, value))}
            onForget={() => {
              forgetUserKey(storage);
              setUserKey(null);
            }}
          />
          {models.state === "error" && modelsError && (
            <div className="error-card compact" role="alert" data-testid="models-error">
              <strong>Could not list models: {modelsError.title}</strong>
              <p>{models.error.message}</p>
              {modelsError.hint && <p className="hint">{modelsError.hint}</p>}
            </div>
          )}
          <ApiSwitch api={api} onApi={setApi} />
          <ParamsPanel
            systemPrompt={systemPrompt}
            onSystemPrompt={setSystemPrompt}
            params={params}
            stopText={stopText}
            onParams={setParams}
            onStopText={setStopText}
          />
        </aside>
        {tab === "embeddings" && <EmbeddingsPanel apiBase={config.apiBase} apiKey={key.key} models={embeddingModels} />}
        <main className="chat" hidden={tab !== "chat"}>
          <div className="messages" aria-live="polite">
            {turns.length === 0 ? (
              <div className="empty">
                <h1>Try a model</h1>
                <p>
                  {key.key
                    ? "Pick a model above, write a message below and watch the reply stream in."
                    : "Paste an API key, pick a model, and send a message."}
                </p>
                <div className="suggestions">
                  {SUGGESTIONS.map((text) => (
                    <button key={text} type="button" onClick={() => setPrompt(text)}>
                      {text}
                    </button>
                  ))}
                </div>
              </div>
            ) : (
              turns.map((turn) => (
                <Message
                  key={turn.id}
                  turn={turn}
                  onRetry={turn.status === "error" && turn === lastTurn && !streaming ? () => retry(turn.id) : undefined}
                />
              ))
            )}
            <div ref={endRef} />
          </div>
          <form
            className="composer"
            onSubmit={(e) => {
              e.preventDefault();
              void send(prompt, turns);
            }}
          >
            <textarea
              aria-label="Message"
              placeholder={model ? `Message ${model}…  (Enter to send, Shift+Enter for a new line)` : "Message…"}
              rows={2}
              value={prompt}
              onChange={(e) => setPrompt(e.target.value)}
              onKeyDown={(e) => {
                if (e.key === "Enter" && !e.shiftKey && !e.nativeEvent.isComposing) {
                  e.preventDefault();
                  void send(prompt, turns);
                }
              }}
              data-testid="prompt"
            />
            <div className="composer-actions">
              <button type="button" className="ghost" onClick={reset} disabled={turns.length === 0} data-testid="reset">
                New chat
              </button>
              {streaming ? (
                <button type="button" className="danger" onClick={() => abortRef.current?.abort()} data-testid="stop">
                  Stop
                </button>
              ) : (
                <button type="submit" className="primary" disabled={!prompt.trim() || !model} data-testid="send">
                  Send
                </button>
              )}
            </div>
          </form>
        </main>
      </div>
    </div>
  );
}
