import { useState } from "react";
import { Choice, DataTable, LoadState, Pager, useLoad } from "../components";
import { query, type AdminApi, type LogRow, type Page } from "../lib/api";
import { formatTime, localToIso } from "../lib/forms";

const LIMIT = 25;
const CACHE_STATUSES = ["HIT", "MISS", "BYPASS"] as const;

interface Filters {
  key_id: string;
  model: string;
  status: string;
  cache_status: string;
  request_id: string;
  since: string;
  until: string;
}

const EMPTY: Filters = { key_id: "", model: "", status: "", cache_status: "", request_id: "", since: "", until: "" };

export function LogsPage({ api }: { api: AdminApi }) {
  const [draft, setDraft] = useState<Filters>(EMPTY);
  const [filters, setFilters] = useState<Filters>(EMPTY);
  const [offset, setOffset] = useState(0);
  const [open, setOpen] = useState<string | null>(null);
  const [page] = useLoad(
    (signal) =>
      api.get<Page<LogRow>>(
        `/logs${query({ ...filters, since: localToIso(filters.since), until: localToIso(filters.until), limit: LIMIT, offset })}`,
        signal,
      ),
    [api, filters, offset],
  );
  const field = (name: keyof Filters, label: string, type = "text") => (
    <label>
      {label}
      <input type={type} value={draft[name]} onChange={(e) => setDraft({ ...draft, [name]: e.target.value })} data-testid={`logs-${name}`} />
    </label>
  );

  return (
    <>
      <form
        className="filters"
        role="search"
        onSubmit={(e) => {
          e.preventDefault();
          setOffset(0);
          setFilters(draft);
        }}
      >
        {field("key_id", "Key id")}
        {field("model", "Model")}
        {field("status", "Status", "number")}
        <Choice label="Cache" value={draft.cache_status} onChange={(v) => setDraft({ ...draft, cache_status: v })} anyLabel="any" options={CACHE_STATUSES} />
        {field("request_id", "Request id")}
        {field("since", "From", "datetime-local")}
        {field("until", "Until", "datetime-local")}
        <button type="submit" data-testid="logs-apply">
          Apply
        </button>
      </form>
      <LoadState loaded={page} />
      {page.state === "ready" && (
        <>
          <Pager total={page.data.total} limit={LIMIT} offset={offset} onPage={setOffset} />
          <DataTable testId="logs-table" columns={["Time", "Status", "Key", "Model", "Tokens (prompt + completion)", "Cost", "Cache", "Latency", "Request id"]}>
                {page.data.data.map((row) => (
                  <LogLine key={row.request_id + row.created_at} row={row} open={open === row.request_id} onToggle={() => setOpen(open === row.request_id ? null : row.request_id)} />
                ))}
          </DataTable>
        </>
      )}
    </>
  );
}

function LogLine({ row, open, onToggle }: { row: LogRow; open: boolean; onToggle(): void }) {
  return (
    <>
      <tr data-testid="log-row" data-status={row.status}>
        <td>{formatTime(row.created_at)}</td>
        <td>
          <span className={`badge ${row.status < 400 ? "active" : "revoked"}`}>{row.status}</span>
          {row.error_code && <span className="muted-text"> {row.error_code}</span>}
        </td>
        <td>
          <code>{row.key_prefix ?? "—"}</code>
        </td>
        <td>{row.model ?? "—"}</td>
        <td>
          {row.prompt_tokens} + {row.completion_tokens}
        </td>
        <td data-testid="log-cost">${row.cost_usd}</td>
        <td>{row.cache_status ?? "—"}</td>
        <td>{Math.round(row.latency_ms)} ms</td>
        <td>
          <button type="button" className="link" aria-expanded={open} onClick={onToggle} data-testid="log-open">
            {row.request_id}
          </button>
        </td>
      </tr>
      {open && (
        <tr className="log-detail">
          <td colSpan={8}>
            <p>
              {row.route} · {row.stream ? "streamed" : "not streamed"}
            </p>
            {/* Rendered as text: a prompt holding markup shows as characters, never as HTML. */}
            {row.body === null ? (
              <p className="field-note">The body was not stored (LLMSERVER_LOG_BODIES is off).</p>
            ) : (
              <pre className="log-body" data-testid="log-body">
                {row.body}
              </pre>
            )}
          </td>
        </tr>
      )}
    </>
  );
}
