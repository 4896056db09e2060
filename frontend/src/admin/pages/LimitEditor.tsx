/** The create panel and edit dialog of keys and teams, and the limit fields both edit: a
 * key and a team have the same limits (RPM, TPM, monthly quota, requests in flight, a
 * budget per window), so they are typed the same way and checked by one `checkLimits`. */
import { Fragment, type ReactNode } from "react";
import type { BudgetWindow, TeamView } from "../lib/api";
import type { LimitFields } from "../lib/forms";

const WINDOWS: readonly BudgetWindow[] = ["day", "week", "month"];

const NUMBERS = [
  ["rpm", "Requests per minute"],
  ["quota", "Monthly token quota"],
  ["tpm", "Tokens per minute"],
  ["parallel", "Requests in flight"],
] as const;

/** Name, limits and budget, as label and input pairs of a `form-grid`; test ids and input
 * ids are `${idPrefix}-<field>`. */
export function LimitInputs({
  fields,
  set,
  idPrefix,
  nameMaxLength = 200,
}: {
  fields: LimitFields;
  set(f: LimitFields): void;
  idPrefix: string;
  nameMaxLength?: number;
}) {
  const id = (field: string) => `${idPrefix}-${field}`;
  return (
    <>
      <label htmlFor={id("name")}>Name</label>
      <input id={id("name")} type="text" required maxLength={nameMaxLength} value={fields.name} onChange={(e) => set({ ...fields, name: e.target.value })} data-testid={id("name")} />
      {NUMBERS.map(([field, label]) => (
        <Fragment key={field}>
          <label htmlFor={id(field)}>{label}</label>
          <input id={id(field)} type="text" inputMode="numeric" value={fields[field]} onChange={(e) => set({ ...fields, [field]: e.target.value })} placeholder="unlimited" data-testid={id(field)} />
        </Fragment>
      ))}
      <label htmlFor={id("budget")}>Budget (USD)</label>
      <input id={id("budget")} type="text" inputMode="decimal" value={fields.budget} onChange={(e) => set({ ...fields, budget: e.target.value })} placeholder="none" data-testid={id("budget")} />
      <label htmlFor={id("window")}>Budget window (UTC)</label>
      <select id={id("window")} value={fields.window} onChange={(e) => set({ ...fields, window: e.target.value as BudgetWindow })} data-testid={id("window")}>
        {WINDOWS.map((w) => (
          <option key={w} value={w}>
            {w}
          </option>
        ))}
      </select>
    </>
  );
}

/** A key's team: one of `teams` by id, or none (""). */
export function TeamSelect({ id, value, teams, onChange }: { id: string; value: string; teams: readonly TeamView[]; onChange(teamId: string): void }) {
  return (
    <>
      <label htmlFor={id}>Team (its limits cap the key's too)</label>
      <select id={id} value={value} onChange={(e) => onChange(e.target.value)} data-testid={id}>
        <option value="">none</option>
        {teams.map((team) => (
          <option key={team.id} value={team.id}>
            {team.name}
          </option>
        ))}
      </select>
    </>
  );
}

/** A `form-grid` form: its fields, a note, the error in words, then its buttons. */
function GridForm({ note, error, onSubmit, buttons, children }: { note: string; error: string | null; onSubmit(): void; buttons: ReactNode; children: ReactNode }) {
  return (
    <form
      className="form-grid"
      onSubmit={(e) => {
        e.preventDefault();
        onSubmit();
      }}
    >
      {children}
      <p className="field-note span">{note}</p>
      {error && (
        <p className="error-text span" role="alert" data-testid="form-error">
          {error}
        </p>
      )}
      {buttons}
    </form>
  );
}

/** A collapsed "Create a …" form. */
export function CreatePanel({
  summary,
  openTestId,
  submitTestId,
  submit,
  disabled,
  note,
  error,
  onSubmit,
  children,
}: {
  summary: string;
  openTestId: string;
  submitTestId: string;
  submit: string;
  disabled: boolean;
  note: string;
  error: string | null;
  onSubmit(): void;
  children: ReactNode;
}) {
  const button = (
    <button type="submit" className="primary" disabled={disabled} data-testid={submitTestId}>
      {submit}
    </button>
  );
  return (
    <details className="create-key">
      <summary data-testid={openTestId}>{summary}</summary>
      <GridForm note={note} error={error} onSubmit={onSubmit} buttons={button}>
        {children}
      </GridForm>
    </details>
  );
}

/** The edit dialog shown under a table: Save or Cancel. */
export function EditorDialog({
  title,
  testId,
  saveTestId,
  note,
  error,
  onSave,
  onCancel,
  children,
}: {
  title: ReactNode;
  testId: string;
  saveTestId: string;
  note: string;
  error: string | null;
  onSave(): void;
  onCancel(): void;
  children: ReactNode;
}) {
  const buttons = (
    <div className="span actions">
      <button type="submit" className="primary" data-testid={saveTestId}>
        Save
      </button>
      <button type="button" className="ghost" onClick={onCancel}>
        Cancel
      </button>
    </div>
  );
  return (
    <section className="edit-key" role="dialog" aria-modal="false" aria-labelledby={`${testId}-title`} data-testid={testId}>
      <h2 id={`${testId}-title`}>{title}</h2>
      <GridForm note={note} error={error} onSubmit={onSave} buttons={buttons}>
        {children}
      </GridForm>
    </section>
  );
}
