import { useState } from "react";
import { Choice, DataTable, LoadState, Pager, useLoad } from "../components";
import { query, type AdminApi, type AuditEntry, type Page } from "../lib/api";
import { formatTime } from "../lib/forms";

const LIMIT = 25;
const ACTIONS = ["key.create", "key.update", "key.revoke", "key.rotate", "team.create", "team.update", "cache.purge"];

function settings(values: Record<string, unknown> | null): string {
  if (!values) return "—";
  return Object.entries(values)
    .map(([k, v]) => `${k}: ${Array.isArray(v) ? v.join(", ") || "[]" : String(v)}`)
    .join("; ");
}

export function AuditPage({ api }: { api: AdminApi }) {
  const [action, setAction] = useState("");
  const [target, setTarget] = useState("");
  const [offset, setOffset] = useState(0);
  const [page] = useLoad(
    (signal) => api.get<Page<AuditEntry>>(`/audit${query({ action, target, limit: LIMIT, offset })}`, signal),
    [api, action, target, offset],
  );

  return (
    <>
      <div className="filters" role="search">
        <Choice
          label="Action"
          value={action}
          onChange={(value) => {
            setOffset(0);
            setAction(value);
          }}
          anyLabel="any"
          options={ACTIONS}
          testId="audit-action"
        />
        <label>
          Target (key id, team id or model)
          <input
            type="text"
            value={target}
            onChange={(e) => {
              setOffset(0);
              setTarget(e.target.value.trim());
            }}
            data-testid="audit-target"
          />
        </label>
      </div>
      <LoadState loaded={page} />
      {page.state === "ready" && (
        <>
          <Pager total={page.data.total} limit={LIMIT} offset={offset} onPage={setOffset} />
          <DataTable testId="audit-table" columns={["When", "Action", "By (admin key)", "Target", "Before", "After", "Request id"]}>
                {page.data.data.map((e) => (
                  <tr key={e.id} data-testid="audit-row" data-action={e.action} data-target={e.target ?? ""}>
                    <td>{formatTime(e.at)}</td>
                    <td>{e.action}</td>
                    <td>
                      <code>{e.actor_prefix}</code>
                    </td>
                    <td>
                      <code>{e.target ?? "all"}</code>
                    </td>
                    <td>{settings(e.before)}</td>
                    <td>{settings(e.after)}</td>
                    <td>
                      <code>{e.request_id ?? "—"}</code>
                    </td>
                  </tr>
                ))}
          </DataTable>
        </>
      )}
    </>
  );
}
