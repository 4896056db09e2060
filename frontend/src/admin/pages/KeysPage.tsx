import { useState } from "react";
import type { ApiError } from "../../lib/errors";
import { Choice, DataTable, ErrorNote, LoadState, SecretOnce, asApiError, useLoad, useSubmit } from "../components";
import { query, type AdminApi, type BudgetView, type CreatedKey, type KeyView, type ModelQuotaView, type RotatedKey, type TeamView, type UsageView } from "../lib/api";
import { NO_LIMITS, checkLimits, fieldsOf, formatBudget, formatLimit, formatTime, formatUsage, givenLimits, isoToLocal, localToIso, modelLimitsEdit, parseModels, type LimitFields, type ModelLimitRow } from "../lib/forms";
import { ModelLimitsCell, ModelLimitsEditor, rowsOf } from "./KeyModelLimits";
import { CreatePanel, EditorDialog, LimitInputs, TeamSelect } from "./LimitEditor";

const STATES = ["active", "revoked", "expired"] as const;
const ROLES = ["user", "playground", "admin"] as const;

interface Listing {
  keys: KeyView[];
  usage: Map<string, UsageView>;
  budgets: Map<string, BudgetView>;
  modelQuotas: ModelQuotaView[];
  teams: TeamView[];
}

export function KeysPage({ api }: { api: AdminApi }) {
  const [search, setSearch] = useState("");
  const [state, setState] = useState("");
  const [role, setRole] = useState("");
  const [secret, setSecret] = useState<{ label: string; value: string } | null>(null);
  const [editing, setEditing] = useState<KeyView | null>(null);
  const [listing, reload] = useLoad<Listing>(
    async (signal) => {
      const [keys, usage, budgets, quotas, teams] = await Promise.all([
        api.get<{ data: KeyView[] }>(`/keys${query({ q: search, state, role })}`, signal),
        api.get<{ data: UsageView[] }>("/usage", signal),
        api.get<{ data: BudgetView[] }>("/budgets", signal),
        api.get<{ data: ModelQuotaView[] }>("/model-quotas", signal),
        api.get<{ data: TeamView[] }>("/teams", signal),
      ]);
      return {
        keys: keys.data,
        usage: new Map(usage.data.map((u) => [u.key_id, u])),
        budgets: new Map(budgets.data.map((b) => [b.key_id, b])),
        modelQuotas: quotas.data,
        teams: teams.data,
      };
    },
    [api, search, state, role],
  );
  const teams = listing.state === "ready" ? listing.data.teams : [];

  return (
    <>
      {secret && <SecretOnce label={secret.label} secret={secret.value} onDone={() => setSecret(null)} />}
      <CreateKey
        api={api}
        teams={teams}
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
          teams={teams}
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
        caption="API keys with their team, limits, this month's usage and their budget's spend"
        columns={["Name", "Prefix", "Role", "Team", "State", "RPM", "Quota (tokens/month)", "TPM", "Max parallel", "Per model", "Used this month", "Budget (spent of)", "Last used", "Expires", "Actions"]}
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
                  <td data-testid="key-team" data-team-id={key.team_id ?? ""}>
                    {key.team_id === null ? "none" : (listing.teams.find((t) => t.id === key.team_id)?.name ?? key.team_id)}
                  </td>
                  <td>
                    <span className={`badge ${key.state}`}>{key.state}</span>
                  </td>
                  <td data-testid="key-rpm">{formatLimit(key.rpm_limit)}</td>
                  <td>{formatLimit(key.quota_tokens)}</td>
                  <td>{formatLimit(key.tpm_limit)}</td>
                  <td>{formatLimit(key.max_parallel)}</td>
                  <ModelLimitsCell limits={key.model_limits} quotas={listing.modelQuotas.filter((q) => q.key_id === key.id)} />
                  <td>{formatUsage(usage)}</td>
                  <td data-testid="key-budget" data-spent={budget?.spent_usd} title={budget ? `resets ${formatTime(budget.resets_at)}` : undefined}>
                    {formatBudget(budget)}
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

function ModelsInput({ value, set, idPrefix }: { value: string; set(models: string): void; idPrefix: string }) {
  return (
    <>
      <label htmlFor={`${idPrefix}-models`}>Allowed models (comma-separated)</label>
      <input id={`${idPrefix}-models`} type="text" value={value} onChange={(e) => set(e.target.value)} placeholder="every model" />
    </>
  );
}

function CreateKey({ api, teams, onCreated }: { api: AdminApi; teams: TeamView[]; onCreated(created: CreatedKey): void }) {
  const [fields, setFields] = useState<LimitFields>(NO_LIMITS);
  const [models, setModels] = useState("");
  const [role, setRole] = useState("user");
  const [expires, setExpires] = useState("");
  const [team, setTeam] = useState("");
  const form = useSubmit();

  const create = () =>
    form.submit(async () => {
      const limits = checkLimits(fields);
      if (typeof limits === "string") return limits;
      // Blank limits take the role's defaults on creation (see the roles' table in the README).
      const body: Record<string, unknown> = { name: fields.name, role, allowed_models: parseModels(models), ...givenLimits(limits) };
      if (expires.trim()) body.expires_in = expires.trim();
      if (team) body.team = team;
      onCreated(await api.call<CreatedKey>("POST", "/keys", body));
      setFields(NO_LIMITS);
      setModels("");
      setExpires("");
      setTeam("");
    });

  return (
    <CreatePanel
      summary="Create a key"
      openTestId="open-create"
      submitTestId="create-key"
      submit="Create key"
      disabled={form.busy || !fields.name.trim()}
      note="Blank limits take the role's defaults."
      error={form.error}
      onSubmit={create}
    >
      <LimitInputs fields={fields} set={setFields} idPrefix="create" />
      <ModelsInput value={models} set={setModels} idPrefix="create" />
      <label htmlFor="create-role">Role</label>
      <select id="create-role" value={role} onChange={(e) => setRole(e.target.value)} data-testid="create-role">
        {ROLES.map((r) => (
          <option key={r} value={r}>
            {r}
          </option>
        ))}
      </select>
      <TeamSelect id="create-key-team" value={team} teams={teams} onChange={setTeam} />
      <label htmlFor="create-expires">Expires in (e.g. 30d, 12h; blank: never)</label>
      <input id="create-expires" type="text" value={expires} onChange={(e) => setExpires(e.target.value)} />
    </CreatePanel>
  );
}

function EditKey({ api, teams, keyView, onClose }: { api: AdminApi; teams: TeamView[]; keyView: KeyView; onClose(changed: boolean): void }) {
  const [fields, setFields] = useState<LimitFields>(fieldsOf(keyView));
  const [models, setModels] = useState(keyView.allowed_models.join(", "));
  const [expires, setExpires] = useState(isoToLocal(keyView.expires_at));
  const [team, setTeam] = useState(keyView.team_id ?? "");
  const [modelRows, setModelRows] = useState<ModelLimitRow[]>(rowsOf(keyView.model_limits));
  const form = useSubmit();

  const save = () =>
    form.submit(async () => {
      const limits = checkLimits(fields);
      if (typeof limits === "string") return limits;
      const perModel = modelLimitsEdit(modelRows, keyView.model_limits.map((l) => l.model_id));
      if (typeof perModel === "string") return perModel;
      await api.call("PATCH", `/keys/${keyView.id}`, {
        name: fields.name,
        ...limits,
        allowed_models: parseModels(models),
        expires_at: localToIso(expires),
        model_limits: perModel,
        team: team || null,
      });
      onClose(true);
    });

  return (
    <EditorDialog
      title={
        <>
          Edit <code>{keyView.prefix}</code>
        </>
      }
      testId="edit-dialog"
      saveTestId="save-edit"
      note="Blank limits mean no limit. Changes apply from the key's next request."
      error={form.error}
      onSave={save}
      onCancel={() => onClose(false)}
    >
      <LimitInputs fields={fields} set={setFields} idPrefix="edit" />
      <ModelsInput value={models} set={setModels} idPrefix="edit" />
      <TeamSelect id="edit-key-team" value={team} teams={teams} onChange={setTeam} />
      <label htmlFor="edit-expires">Expires at (blank: never)</label>
      <input id="edit-expires" type="datetime-local" value={expires} onChange={(e) => setExpires(e.target.value)} />
      <ModelLimitsEditor rows={modelRows} setRows={setModelRows} />
    </EditorDialog>
  );
}
