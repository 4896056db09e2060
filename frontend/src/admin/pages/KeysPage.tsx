import { useState } from "react";
import type { ApiError } from "../../lib/errors";
import { Choice, DataTable, ErrorNote, LoadState, SecretOnce, asApiError, useLoad } from "../components";
import { query, type AdminApi, type BudgetView, type BudgetWindow, type CreatedKey, type KeyView, type ModelQuotaView, type RotatedKey, type UsageView } from "../lib/api";
import { NO_LIMITS, checkLimits, formatLimit, formatTime, isoToLocal, localToIso, modelLimitsEdit, parseModels, type LimitFields, type ModelLimitRow } from "../lib/forms";
import { ModelLimitsCell, ModelLimitsEditor, rowsOf } from "./KeyModelLimits";

const STATES = ["active", "revoked", "expired"] as const;
const ROLES = ["user", "playground", "admin"] as const;
const WINDOWS: readonly BudgetWindow[] = ["day", "week", "month"];

interface Listing {
  keys: KeyView[];
  usage: Map<string, UsageView>;
  budgets: Map<string, BudgetView>;
  modelQuotas: ModelQuotaView[];
}

export function KeysPage({ api }: { api: AdminApi }) {
  const [search, setSearch] = useState("");
  const [state, setState] = useState("");
  const [role, setRole] = useState("");
  const [secret, setSecret] = useState<{ label: string; value: string } | null>(null);
  const [editing, setEditing] = useState<KeyView | null>(null);
  const [listing, reload] = useLoad<Listing>(
    async (signal) => {
      const [keys, usage, budgets, quotas] = await Promise.all([
        api.get<{ data: KeyView[] }>(`/keys${query({ q: search, state, role })}`, signal),
        api.get<{ data: UsageView[] }>("/usage", signal),
        api.get<{ data: BudgetView[] }>("/budgets", signal),
        api.get<{ data: ModelQuotaView[] }>("/model-quotas", signal),
      ]);
      return {
        keys: keys.data,
        usage: new Map(usage.data.map((u) => [u.key_id, u])),
        budgets: new Map(budgets.data.map((b) => [b.key_id, b])),
        modelQuotas: quotas.data,
      };
    },
    [api, search, state, role],
  );

  return (
    <>
      {secret && <SecretOnce label={secret.label} secret={secret.value} onDone={() => setSecret(null)} />}
      <CreateKey
        api={api}
        onCreated={(created) => {
          setSecret({ label: `New key “${created.details.name}”`, value: created.key });
          reload();
        }}
      />
      <section aria-labelledby="keys-title">
        <h2 id="keys-title">All keys</h2>
        <div className="filters" role="search">
          <label>
            Search
            <input type="search" value={search} onChange={(e) => setSearch(e.target.value)} placeholder="name, prefix or id" data-testid="key-search" />
          </label>
          <Choice label="State" value={state} onChange={setState} anyLabel="any" options={STATES} />
          <Choice label="Role" value={role} onChange={setRole} anyLabel="any" options={ROLES} />
        </div>
        <LoadState loaded={listing} />
        {listing.state === "ready" && (
          <KeyTable
            listing={listing.data}
            api={api}
            onEdit={setEditing}
            onChanged={reload}
            onRotated={(rotated) => {
              setSecret({ label: `Replacement for “${rotated.details.name}”`, value: rotated.key });
              reload();
            }}
          />
        )}
      </section>
      {editing && (
        <EditKey
          api={api}
          keyView={editing}
          onClose={(changed) => {
            setEditing(null);
            if (changed) reload();
          }}
        />
      )}
    </>
  );
}

function KeyTable({
  listing,
  api,
  onEdit,
  onChanged,
  onRotated,
}: {
  listing: Listing;
  api: AdminApi;
  onEdit(key: KeyView): void;
  onChanged(): void;
  onRotated(rotated: RotatedKey): void;
}) {
  const [confirming, setConfirming] = useState<{ id: string; action: "revoke" | "rotate" } | null>(null);
  const [grace, setGrace] = useState("24h");
  const [error, setError] = useState<ApiError | null>(null);

  async function act(key: KeyView, action: "revoke" | "rotate") {
    setError(null);
    try {
      if (action === "revoke") await api.call("DELETE", `/keys/${key.id}`);
      else onRotated(await api.call<RotatedKey>("POST", `/keys/${key.id}/rotate`, { grace_period: grace }));
      setConfirming(null);
      onChanged();
    } catch (e) {
      setError(asApiError(e));
    }
  }

  if (!listing.keys.length) return <p>No key matches.</p>;
  return (
    <>
      <ErrorNote error={error} />
      <DataTable
        testId="keys-table"
        caption="API keys with their limits, this month's usage and their budget's spend"
        columns={["Name", "Prefix", "Role", "State", "RPM", "Quota (tokens/month)", "TPM", "Max parallel", "Per model", "Used this month", "Budget (spent of)", "Last used", "Expires", "Actions"]}
      >
            {listing.keys.map((key) => {
              const usage = listing.usage.get(key.id);
              const budget = listing.budgets.get(key.id);
              const open = confirming?.id === key.id ? confirming.action : null;
              return (
                <tr key={key.id} data-testid="key-row" data-prefix={key.prefix} data-key-id={key.id} data-state={key.state}>
                  <th scope="row">{key.name}</th>
                  <td>
                    <code>{key.prefix}</code>
                  </td>
                  <td>{key.role}</td>
                  <td>
                    <span className={`badge ${key.state}`}>{key.state}</span>
                  </td>
                  <td>{formatLimit(key.rpm_limit)}</td>
                  <td>{formatLimit(key.quota_tokens)}</td>
                  <td>{formatLimit(key.tpm_limit)}</td>
                  <td>{formatLimit(key.max_parallel)}</td>
                  <ModelLimitsCell limits={key.model_limits} quotas={listing.modelQuotas.filter((q) => q.key_id === key.id)} />
                  <td>{usage ? `${usage.used_tokens.toLocaleString("en-US")} tokens, ${usage.requests} requests` : "—"}</td>
                  <td data-testid="key-budget" data-spent={budget?.spent_usd} title={budget ? `resets ${formatTime(budget.resets_at)}` : undefined}>
                    {budget ? `$${budget.spent_usd} of $${budget.budget_usd} / ${budget.window}` : "none"}
                  </td>
                  <td>{formatTime(key.last_used_at)}</td>
                  <td>{formatTime(key.expires_at)}</td>
                  <td className="actions">
                    <button type="button" className="small" onClick={() => onEdit(key)} aria-label={`Edit ${key.name}`} data-testid="edit-key">
                      Edit
                    </button>
                    {key.state === "active" && open === null && (
                      <>
                        <button type="button" className="small" onClick={() => setConfirming({ id: key.id, action: "rotate" })} aria-label={`Rotate ${key.name}`} data-testid="rotate-key">
                          Rotate
                        </button>
                        <button type="button" className="small danger" onClick={() => setConfirming({ id: key.id, action: "revoke" })} aria-label={`Revoke ${key.name}`} data-testid="revoke-key">
                          Revoke
                        </button>
                      </>
                    )}
                    {open === "rotate" && (
                      <span className="confirm">
                        <label>
                          Old key works for
                          <select value={grace} onChange={(e) => setGrace(e.target.value)}>
                            <option value="0">no time (revoke now)</option>
                            <option value="1h">1 hour</option>
                            <option value="24h">24 hours</option>
                            <option value="7d">7 days</option>
                          </select>
                        </label>
                        <button type="button" className="small primary" onClick={() => void act(key, "rotate")} data-testid="confirm-rotate">
                          Rotate now
                        </button>
                        <button type="button" className="small ghost" onClick={() => setConfirming(null)}>
                          Cancel
                        </button>
                      </span>
                    )}
                    {open === "revoke" && (
                      <span className="confirm">
                        <button type="button" className="small danger" onClick={() => void act(key, "revoke")} data-testid="confirm-revoke">
                          Confirm revoke
                        </button>
                        <button type="button" className="small ghost" onClick={() => setConfirming(null)}>
                          Cancel
                        </button>
                      </span>
                    )}
                  </td>
                </tr>
              );
            })}
      </DataTable>
    </>
  );
}

function LimitInputs({ fields, set, idPrefix }: { fields: LimitFields; set(f: LimitFields): void; idPrefix: string }) {
  return (
    <>
      <label htmlFor={`${idPrefix}-name`}>Name</label>
      <input id={`${idPrefix}-name`} type="text" required maxLength={200} value={fields.name} onChange={(e) => set({ ...fields, name: e.target.value })} data-testid={`${idPrefix}-name`} />
      <label htmlFor={`${idPrefix}-rpm`}>Requests per minute</label>
      <input id={`${idPrefix}-rpm`} type="text" inputMode="numeric" value={fields.rpm} onChange={(e) => set({ ...fields, rpm: e.target.value })} placeholder="unlimited" data-testid={`${idPrefix}-rpm`} />
      <label htmlFor={`${idPrefix}-quota`}>Monthly token quota</label>
      <input id={`${idPrefix}-quota`} type="text" inputMode="numeric" value={fields.quota} onChange={(e) => set({ ...fields, quota: e.target.value })} placeholder="unlimited" data-testid={`${idPrefix}-quota`} />
      <label htmlFor={`${idPrefix}-tpm`}>Tokens per minute</label>
      <input id={`${idPrefix}-tpm`} type="text" inputMode="numeric" value={fields.tpm} onChange={(e) => set({ ...fields, tpm: e.target.value })} placeholder="unlimited" data-testid={`${idPrefix}-tpm`} />
      <label htmlFor={`${idPrefix}-parallel`}>Requests in flight</label>
      <input id={`${idPrefix}-parallel`} type="text" inputMode="numeric" value={fields.parallel} onChange={(e) => set({ ...fields, parallel: e.target.value })} placeholder="unlimited" data-testid={`${idPrefix}-parallel`} />
      <label htmlFor={`${idPrefix}-models`}>Allowed models (comma-separated)</label>
      <input id={`${idPrefix}-models`} type="text" value={fields.models} onChange={(e) => set({ ...fields, models: e.target.value })} placeholder="every model" />
      <label htmlFor={`${idPrefix}-budget`}>Budget (USD)</label>
      <input id={`${idPrefix}-budget`} type="text" inputMode="decimal" value={fields.budget} onChange={(e) => set({ ...fields, budget: e.target.value })} placeholder="none" data-testid={`${idPrefix}-budget`} />
      <label htmlFor={`${idPrefix}-window`}>Budget window (UTC)</label>
      <select id={`${idPrefix}-window`} value={fields.window} onChange={(e) => set({ ...fields, window: e.target.value as BudgetWindow })} data-testid={`${idPrefix}-window`}>
        {WINDOWS.map((w) => (
          <option key={w} value={w}>
            {w}
          </option>
        ))}
      </select>
    </>
  );
}

function CreateKey({ api, onCreated }: { api: AdminApi; onCreated(created: CreatedKey): void }) {
  const [fields, setFields] = useState<LimitFields>({ name: "", ...NO_LIMITS, models: "" });
  const [role, setRole] = useState("user");
  const [expires, setExpires] = useState("");
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);

  async function create() {
    const limits = checkLimits(fields);
    if (typeof limits === "string") return setError(limits);
    setError(null);
    setBusy(true);
    try {
      // Blank limits take the role's defaults on creation (see the roles' table in the README).
      const body: Record<string, unknown> = { name: fields.name, role, allowed_models: parseModels(fields.models) };
      if (limits.rpm_limit !== null) body.rpm_limit = limits.rpm_limit;
      if (limits.quota_tokens !== null) body.quota_tokens = limits.quota_tokens;
      if (limits.tpm_limit !== null) body.tpm_limit = limits.tpm_limit;
      if (limits.max_parallel !== null) body.max_parallel = limits.max_parallel;
      if (limits.budget_usd !== null) Object.assign(body, { budget_usd: limits.budget_usd, budget_window: limits.budget_window });
      if (expires.trim()) body.expires_in = expires.trim();
      onCreated(await api.call<CreatedKey>("POST", "/keys", body));
      setFields({ name: "", ...NO_LIMITS, models: "" });
      setExpires("");
    } catch (e) {
      setError(asApiError(e).message);
    } finally {
      setBusy(false);
    }
  }

  return (
    <details className="create-key">
      <summary data-testid="open-create">Create a key</summary>
      <form
        className="form-grid"
        onSubmit={(e) => {
          e.preventDefault();
          void create();
        }}
      >
        <LimitInputs fields={fields} set={setFields} idPrefix="create" />
        <label htmlFor="create-role">Role</label>
        <select id="create-role" value={role} onChange={(e) => setRole(e.target.value)} data-testid="create-role">
          {ROLES.map((r) => (
            <option key={r} value={r}>
              {r}
            </option>
          ))}
        </select>
        <label htmlFor="create-expires">Expires in (e.g. 30d, 12h; blank: never)</label>
        <input id="create-expires" type="text" value={expires} onChange={(e) => setExpires(e.target.value)} />
        <p className="field-note span">Blank limits take the role's defaults.</p>
        {error && (
          <p className="error-text span" role="alert">
            {error}
          </p>
        )}
        <button type="submit" className="primary" disabled={busy || !fields.name.trim()} data-testid="create-key">
          Create key
        </button>
      </form>
    </details>
  );
}

function EditKey({ api, keyView, onClose }: { api: AdminApi; keyView: KeyView; onClose(changed: boolean): void }) {
  const [fields, setFields] = useState<LimitFields>({
    name: keyView.name,
    rpm: keyView.rpm_limit === null ? "" : String(keyView.rpm_limit),
    quota: keyView.quota_tokens === null ? "" : String(keyView.quota_tokens),
    tpm: keyView.tpm_limit === null ? "" : String(keyView.tpm_limit),
    parallel: keyView.max_parallel === null ? "" : String(keyView.max_parallel),
    models: keyView.allowed_models.join(", "),
    budget: keyView.budget_usd ?? "",
    window: keyView.budget_window,
  });
  const [expires, setExpires] = useState(isoToLocal(keyView.expires_at));
  const [modelRows, setModelRows] = useState<ModelLimitRow[]>(rowsOf(keyView.model_limits));
  const [error, setError] = useState<string | null>(null);

  async function save() {
    const limits = checkLimits(fields);
    if (typeof limits === "string") return setError(limits);
    const perModel = modelLimitsEdit(modelRows, keyView.model_limits.map((l) => l.model_id));
    if (typeof perModel === "string") return setError(perModel);
    try {
      await api.call("PATCH", `/keys/${keyView.id}`, {
        name: fields.name,
        ...limits,
        allowed_models: parseModels(fields.models),
        expires_at: localToIso(expires),
        model_limits: perModel,
      });
      onClose(true);
    } catch (e) {
      setError(asApiError(e).message);
    }
  }

  return (
    <section className="edit-key" role="dialog" aria-modal="false" aria-labelledby="edit-title" data-testid="edit-dialog">
      <h2 id="edit-title">
        Edit <code>{keyView.prefix}</code>
      </h2>
      <form
        className="form-grid"
        onSubmit={(e) => {
          e.preventDefault();
          void save();
        }}
      >
        <LimitInputs fields={fields} set={setFields} idPrefix="edit" />
        <label htmlFor="edit-expires">Expires at (blank: never)</label>
        <input id="edit-expires" type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
        <ModelLimitsEditor rows={modelRows} setRows={setModelRows} />
        <p className="field-note span">Blank limits mean no limit. Changes apply from the key's next request.</p>
        {error && (
          <p className="error-text span" role="alert">
            {error}
          </p>
        )}
        <div className="span actions">
          <button type="submit" className="primary" data-testid="save-edit">
            Save
          </button>
          <button type="button" className="ghost" onClick={() => onClose(false)}>
            Cancel
          </button>
        </div>
      </form>
    </section>
  );
}
