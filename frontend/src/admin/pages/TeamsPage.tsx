/** Teams: a group of keys whose limits cap the sum over its keys. Listed with their keys,
 * limits, this month's count and their budget's spend; created and edited with the same
 * limit fields as a key. Teams are never deleted (the API has no such route). */
import { useState } from "react";
import { DataTable, LoadState, useLoad, useSubmit } from "../components";
import type { AdminApi, KeyView, TeamDetail, TeamView } from "../lib/api";
import { NO_LIMITS, checkLimits, fieldsOf, formatBudget, formatLimit, formatTime, formatUsage, givenLimits, type LimitFields } from "../lib/forms";
import { formatMembers, membersByTeam, type Membership } from "../lib/teams";
import { CreatePanel, EditorDialog, LimitInputs } from "./LimitEditor";

/** The API's longest team name (`domain.teams.TEAM_NAME_MAX_CHARS`). */
const TEAM_NAME_MAX = 64;

interface Listing {
  teams: TeamDetail[];
  members: Map<string, Membership>;
}

export function TeamsPage({ api }: { api: AdminApi }) {
  const [editing, setEditing] = useState<TeamView | null>(null);
  const [listing, reload] = useLoad<Listing>(
    async (signal) => {
      // Every team's counts (this month's tokens, its budget's window) in one call, however many teams.
      const [teams, keys] = await Promise.all([api.get<{ data: TeamDetail[] }>("/teams?with_usage=true", signal), api.get<{ data: KeyView[] }>("/keys", signal)]);
      return { teams: teams.data, members: membersByTeam(keys.data) };
    },
    [api],
  );

  return (
    <>
      <CreateTeam api={api} onCreated={reload} />
      <section aria-labelledby="teams-title">
        <h2 id="teams-title">All teams</h2>
        <p className="field-note">
          A key in a team is admitted only within its own limits and its team's, which count every request of every key in the team. A key joins or leaves a team on the Keys page.
        </p>
        <LoadState loaded={listing} />
        {listing.state === "ready" && <TeamTable listing={listing.data} onEdit={setEditing} />}
      </section>
      {editing && (
        <EditTeam
          api={api}
          team={editing}
          onClose={(changed) => {
            setEditing(null);
            if (changed) reload();
          }}
        />
      )}
    </>
  );
}

function TeamTable({ listing, onEdit }: { listing: Listing; onEdit(team: TeamView): void }) {
  if (!listing.teams.length) return <p data-testid="no-teams">No team yet.</p>;
  return (
    <DataTable
      testId="teams-table"
      caption="Teams with their keys, limits, this month's usage and their budget's spend"
      columns={["Name", "Keys", "RPM", "Quota (tokens/month)", "TPM", "Max parallel", "Used this month", "Budget (spent of)", "Created", "Actions"]}
    >
      {listing.teams.map(({ team, usage, budget }) => (
        <tr key={team.id} data-testid="team-row" data-team-id={team.id} data-name={team.name}>
          <th scope="row">{team.name}</th>
          <td data-testid="team-members">{formatMembers(listing.members.get(team.id))}</td>
          <td data-testid="team-rpm">{formatLimit(team.rpm_limit)}</td>
          <td data-testid="team-quota">{formatLimit(team.quota_tokens)}</td>
          <td data-testid="team-tpm">{formatLimit(team.tpm_limit)}</td>
          <td data-testid="team-parallel">{formatLimit(team.max_parallel)}</td>
          <td data-testid="team-usage" data-requests={usage.requests}>
            {formatUsage(usage)}
          </td>
          <td data-testid="team-budget" data-spent={budget?.spent_usd} title={budget ? `resets ${formatTime(budget.resets_at)}` : undefined}>
            {formatBudget(budget)}
          </td>
          <td>{formatTime(team.created_at)}</td>
          <td className="actions">
            <button type="button" className="small" onClick={() => onEdit(team)} aria-label={`Edit ${team.name}`} data-testid="edit-team">
              Edit
            </button>
          </td>
        </tr>
      ))}
    </DataTable>
  );
}

function CreateTeam({ api, onCreated }: { api: AdminApi; onCreated(): void }) {
  const [fields, setFields] = useState<LimitFields>(NO_LIMITS);
  const form = useSubmit();

  const create = () =>
    form.submit(async () => {
      const limits = checkLimits(fields);
      if (typeof limits === "string") return limits;
      await api.call<TeamView>("POST", "/teams", { name: fields.name, ...givenLimits(limits) });
      setFields(NO_LIMITS);
      onCreated();
    });

  return (
    <CreatePanel
      summary="Create a team"
      openTestId="open-create-team"
      submitTestId="create-team"
      submit="Create team"
      disabled={form.busy || !fields.name.trim()}
      note="Blank limits mean no limit. Names are unique."
      error={form.error}
      onSubmit={create}
    >
      <LimitInputs fields={fields} set={setFields} idPrefix="team-create" nameMaxLength={TEAM_NAME_MAX} />
    </CreatePanel>
  );
}

function EditTeam({ api, team, onClose }: { api: AdminApi; team: TeamView; onClose(changed: boolean): void }) {
  const [fields, setFields] = useState<LimitFields>(fieldsOf(team));
  const form = useSubmit();

  const save = () =>
    form.submit(async () => {
      const limits = checkLimits(fields);
      if (typeof limits === "string") return limits;
      await api.call("PATCH", `/teams/${encodeURIComponent(team.id)}`, { name: fields.name, ...limits });
      onClose(true);
    });

  return (
    <EditorDialog
      title={`Edit team “${team.name}”`}
      testId="team-edit-dialog"
      saveTestId="save-team-edit"
      note="Blank limits mean no limit. Changes apply from its keys' next request."
      error={form.error}
      onSave={save}
      onCancel={() => onClose(false)}
    >
      <LimitInputs fields={fields} set={setFields} idPrefix="team-edit" nameMaxLength={TEAM_NAME_MAX} />
    </EditorDialog>
  );
}
