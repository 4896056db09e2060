/** Pieces every console page uses: loading, errors, paging, a secret shown once. */
import { useCallback, useEffect, useState, type DependencyList, type ReactNode } from "react";
import { copyText } from "../lib/clipboard";
import { ApiError, describeError } from "../lib/errors";

export function errorText(error: ApiError): string {
  return `${describeError(error).title}: ${error.message}`;
}

export function asApiError(error: unknown): ApiError {
  return error instanceof ApiError ? error : new ApiError(0, { message: String(error) });
}

/**
 * A form's submission: `submit(action)` runs `action`, which answers what is wrong with the
 * form (a string, shown as the error) or sends it; what the API refuses is shown in words.
 * `busy` while it runs.
 */
export function useSubmit(): { error: string | null; busy: boolean; submit(action: () => Promise<string | void>): void } {
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const submit = useCallback((action: () => Promise<string | void>) => {
    setError(null);
    setBusy(true);
    action()
      .then((problem) => setError(problem ?? null))
      .catch((e: unknown) => setError(errorText(asApiError(e))))
      .finally(() => setBusy(false));
  }, []);
  return { error, busy, submit };
}

export type Loaded<T> = { state: "loading" } | { state: "ready"; data: T } | { state: "error"; error: ApiError };

/** Runs `load` when `deps` change (aborting the previous run) and on `reload()`. */
export function useLoad<T>(load: (signal: AbortSignal) => Promise<T>, deps: DependencyList): [Loaded<T>, () => void] {
  const [loaded, setLoaded] = useState<Loaded<T>>({ state: "loading" });
  const [tick, setTick] = useState(0);
  useEffect(() => {
    const controller = new AbortController();
    load(controller.signal)
      .then((data) => setLoaded({ state: "ready", data }))
      .catch((error: unknown) => {
        if (!controller.signal.aborted) setLoaded({ state: "error", error: asApiError(error) });
      });
    return () => controller.abort();
    // `load` is a new closure each render; the caller's deps say when it means new data.
  }, [...deps, tick]);
  return [loaded, useCallback(() => setTick((n) => n + 1), [])];
}

export function ErrorNote({ error }: { error: ApiError | null }) {
  if (!error) return null;
  return (
    <p className="error-text" role="alert" data-testid="error">
      {errorText(error)}
    </p>
  );
}

export function LoadState<T>({ loaded }: { loaded: Loaded<T> }) {
  if (loaded.state === "loading") return <p role="status">Loading…</p>;
  if (loaded.state === "error") return <ErrorNote error={loaded.error} />;
  return null;
}

export function Pager({ total, limit, offset, onPage }: { total: number; limit: number; offset: number; onPage(offset: number): void }) {
  const last = Math.min(offset + limit, total);
  return (
    <nav className="pager" aria-label="Pages">
      <span data-testid="page-range">{total ? `${offset + 1}–${last} of ${total}` : "nothing found"}</span>
      <button type="button" className="ghost small" disabled={offset === 0} onClick={() => onPage(Math.max(0, offset - limit))}>
        Previous
      </button>
      <button type="button" className="ghost small" disabled={last >= total} onClick={() => onPage(offset + limit)}>
        Next
      </button>
    </nav>
  );
}

/** A new key's secret, shown this once with a copy button, until dismissed. */
export function SecretOnce({ secret, label, onDone }: { secret: string; label: string; onDone(): void }) {
  const [copied, setCopied] = useState(false);
  return (
    <section className="secret-once" aria-labelledby="secret-title" data-testid="secret-once">
      <h2 id="secret-title">{label}</h2>
      <p>Copy it now: it is shown only this once and cannot be recovered.</p>
      <div className="secret-row">
        <code data-testid="new-secret">{secret}</code>
        <button type="button" onClick={() => void copyText(secret).then(setCopied)} data-testid="copy-secret">
          {copied ? "Copied" : "Copy"}
        </button>
      </div>
      <button type="button" className="primary" onClick={onDone} data-testid="secret-done">
        I have stored it
      </button>
    </section>
  );
}

/** A labelled select; `any` (an empty value) first when `anyLabel` is given. */
export function Choice({
  label,
  value,
  options,
  onChange,
  anyLabel,
  testId,
}: {
  label: string;
  value: string;
  options: readonly (string | readonly [value: string, text: string])[];
  onChange(value: string): void;
  anyLabel?: string;
  testId?: string;
}) {
  return (
    <label>
      {label}
      <select value={value} onChange={(e) => onChange(e.target.value)} data-testid={testId}>
        {anyLabel !== undefined && <option value="">{anyLabel}</option>}
        {options.map((option) => {
          const [v, text] = typeof option === "string" ? [option, option] : option;
          return (
            <option key={v} value={v}>
              {text}
            </option>
          );
        })}
      </select>
    </label>
  );
}

/** A scrollable table with a header row of column names. */
export function DataTable({ testId, columns, caption, children }: { testId: string; columns: string[]; caption?: string; children: ReactNode }) {
  return (
    <div className="table-wrap">
      <table data-testid={testId}>
        {caption && <caption className="sr-only">{caption}</caption>}
        <thead>
          <tr>
            {columns.map((c) => (
              <th scope="col" key={c}>
                {c}
              </th>
            ))}
          </tr>
        </thead>
        <tbody>{children}</tbody>
      </table>
    </div>
  );
}
