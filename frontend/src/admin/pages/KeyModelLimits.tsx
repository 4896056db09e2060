/** A key's own limits per model: shown in the keys table with this month's count under each
 * quota, and edited row by row in the key's edit dialog. */
import type { ModelLimitView, ModelQuotaView } from "../lib/api";
import { formatLimit, type ModelLimitRow } from "../lib/forms";

export function rowsOf(limits: ModelLimitView[]): ModelLimitRow[] {
  const text = (value: number | null) => (value === null ? "" : String(value));
  return limits.map((l) => ({ model: l.model_id, rpm: text(l.rpm_limit), tpm: text(l.tpm_limit), quota: text(l.quota_tokens) }));
}

export function ModelLimitsCell({ limits, quotas }: { limits: ModelLimitView[]; quotas: ModelQuotaView[] }) {
  if (!limits.length) return <td data-testid="key-model-limits">none</td>;
  return (
    <td data-testid="key-model-limits">
      <ul className="model-limits">
        {limits.map((limit) => {
          const count = quotas.find((q) => q.model_id === limit.model_id);
          const parts = [];
          if (limit.rpm_limit !== null) parts.push(`${formatLimit(limit.rpm_limit)} RPM`);
          if (limit.tpm_limit !== null) parts.push(`${formatLimit(limit.tpm_limit)} TPM`);
          if (limit.quota_tokens !== null) {
            const used = count ? count.used_tokens.toLocaleString("en-US") : "0";
            parts.push(`${used} of ${formatLimit(limit.quota_tokens)} tokens this month`);
          }
          return (
            <li key={limit.model_id} data-testid="model-limit" data-model={limit.model_id} data-used={count?.used_tokens ?? 0}>
              <code>{limit.model_id}</code>: {parts.join(" · ")}
            </li>
          );
        })}
      </ul>
    </td>
  );
}

const FIELDS = [
  ["rpm", "Requests per minute"],
  ["tpm", "Tokens per minute"],
  ["quota", "Monthly token quota"],
] as const;

export function ModelLimitsEditor({ rows, setRows }: { rows: ModelLimitRow[]; setRows(rows: ModelLimitRow[]): void }) {
  const change = (at: number, row: ModelLimitRow) => setRows(rows.map((r, i) => (i === at ? row : r)));
  return (
    <fieldset className="span model-limits-editor" data-testid="model-limits-editor">
      <legend>Per-model limits (on top of the key's; blank: no limit of that kind)</legend>
      {rows.map((row, at) => (
        <div className="model-limit-row" key={at} data-testid="model-limit-row">
          <label>
            Model
            <input type="text" value={row.model} onChange={(e) => change(at, { ...row, model: e.target.value })} placeholder="model id or alias" data-testid="model-limit-model" />
          </label>
          {FIELDS.map(([field, label]) => (
            <label key={field}>
              {label}
              <input
                type="text"
                inputMode="numeric"
                value={row[field]}
                onChange={(e) => change(at, { ...row, [field]: e.target.value })}
                placeholder="unlimited"
                data-testid={`model-limit-${field}`}
              />
            </label>
          ))}
          <button type="button" className="small ghost" onClick={() => setRows(rows.filter((_, i) => i !== at))} aria-label={`Remove the limits on ${row.model || "this model"}`} data-testid="model-limit-remove">
            Remove
          </button>
        </div>
      ))}
      <button type="button" className="small" onClick={() => setRows([...rows, { model: "", rpm: "", tpm: "", quota: "" }])} data-testid="model-limit-add">
        Add a model
      </button>
    </fieldset>
  );
}
