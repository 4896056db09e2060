import { useEffect, useState } from "react";
import type { ReplyStats } from "../lib/api";
import { copyText } from "../lib/clipboard";
import { describeError, formatSeconds, type ApiError } from "../lib/errors";
import { formatMs } from "../lib/format";

export type TurnStatus = "streaming" | "done" | "stopped" | "error";

export interface Turn {
  id: number;
  role: "user" | "assistant";
  content: string;
  status: TurnStatus;
  stats?: ReplyStats;
  error?: ApiError;
  /** When the error arrived, to count its retry-after down. */
  errorAt?: number;
  curl?: string;
}

function CopyButton({ text, label, testId }: { text: string; label: string; testId?: string }) {
  const [copied, setCopied] = useState(false);
  return (
    <button
      type="button"
      className="ghost small"
      data-testid={testId}
      onClick={async () => {
        if (await copyText(text)) {
          setCopied(true);
          setTimeout(() => setCopied(false), 1500);
        }
      }}
    >
      {copied ? "Copied" : label}
    </button>
  );
}

function RetryCountdown({ seconds, since }: { seconds: number; since: number }) {
  const [now, setNow] = useState(() => Date.now());
  const left = Math.max(0, seconds - (now - since) / 1000);
  useEffect(() => {
    if (left <= 0) return;
    const timer = setInterval(() => setNow(Date.now()), 500);
    return () => clearInterval(timer);
  }, [left]);
  return (
    <p className="retry" data-testid="retry-after">
      {left > 0 ? `You can retry in ${formatSeconds(left)}.` : "You can retry now."}
    </p>
  );
}

function Usage({ stats, status }: { stats: ReplyStats; status: TurnStatus }) {
  const items: [string, string][] = [];
  if (stats.usage) {
    items.push(["prompt", `${stats.usage.prompt_tokens} tok`]);
    items.push(["completion", `${stats.usage.completion_tokens} tok`]);
  }
  if (stats.ttftMs !== null) items.push(["first token", formatMs(stats.ttftMs)]);
  items.push(["latency", formatMs(stats.latencyMs)]);
  if (stats.usage && stats.latencyMs > 0 && stats.usage.completion_tokens > 0) {
    items.push(["speed", `${((stats.usage.completion_tokens * 1000) / stats.latencyMs).toFixed(1)} tok/s`]);
  }
  return (
    <div className="usage" data-testid="usage">
      {items.map(([name, value]) => (
        <span key={name} className="chip">
          <span className="chip-name">{name}</span> {value}
        </span>
      ))}
      {stats.cache && (
        <span className={`chip cache-${stats.cache.toLowerCase()}`} data-testid="cache">
          <span className="chip-name">cache</span> {stats.cache}
        </span>
      )}
      {stats.rateLimit && (
        <span className="chip" title="Requests left this minute for this key">
          <span className="chip-name">rate</span> {stats.rateLimit.remaining}/{stats.rateLimit.limit}
        </span>
      )}
      {status === "stopped" && <span className="chip stopped">stopped</span>}
      {stats.finishReason === "length" && <span className="chip stopped">hit max tokens</span>}
    </div>
  );
}

interface Props {
  turn: Turn;
  onRetry?: () => void;
}

export function Message({ turn, onRetry }: Props) {
  const [showCurl, setShowCurl] = useState(false);
  if (turn.role === "user") {
    return (
      <div className="msg user">
        <div className="bubble">{turn.content}</div>
      </div>
    );
  }
  const error = turn.error ? describeError(turn.error) : null;
  return (
    <div className={`msg assistant ${turn.status}`} data-testid="assistant-turn" data-status={turn.status}>
      {turn.content || turn.status === "streaming" ? (
        <div className="bubble" data-testid="reply">
          {turn.content}
          {turn.status === "streaming" && <span className="cursor" aria-hidden="true" />}
        </div>
      ) : turn.status === "stopped" ? (
        <div className="bubble empty-reply">Stopped before any text arrived.</div>
      ) : null}
      {error && turn.error && (
        <div className="error-card" role="alert" data-testid="error">
          <strong>{error.title}</strong>
          <p>{turn.error.message}</p>
          {error.hint && <p className="hint">{error.hint}</p>}
          {turn.error.retryAfter !== null && turn.errorAt !== undefined && (
            <RetryCountdown seconds={turn.error.retryAfter} since={turn.errorAt} />
          )}
          {turn.error.requestId && <p className="request-id">request id {turn.error.requestId}</p>}
          {onRetry && (
            <button type="button" className="small" onClick={onRetry}>
              Retry
            </button>
          )}
        </div>
      )}
      {turn.status !== "streaming" && (
        <div className="meta">
          {turn.stats ? (
            <Usage stats={turn.stats} status={turn.status} />
          ) : (
            turn.status === "stopped" && <span className="chip stopped">stopped</span>
          )}
          <div className="actions">
            {turn.content && <CopyButton text={turn.content} label="Copy reply" testId="copy-reply" />}
            {turn.curl && (
              <button type="button" className="ghost small" onClick={() => setShowCurl(!showCurl)} data-testid="show-curl">
                {showCurl ? "Hide curl" : "curl"}
              </button>
            )}
          </div>
        </div>
      )}
      {showCurl && turn.curl && (
        <div className="curl">
          <div className="curl-head">
            <span>Set <code>LLMSERVER_API_KEY</code>, then run:</span>
            <CopyButton text={turn.curl} label="Copy" />
          </div>
          <pre data-testid="curl">{turn.curl}</pre>
        </div>
      )}
    </div>
  );
}
