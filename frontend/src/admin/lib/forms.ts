/** Form values to API values, and the console's own routes. Pure functions. */
import type { BudgetView, BudgetWindow, UsageView } from "./api";

export const PAGES = ["keys", "teams", "usage", "logs", "models", "audit", "cache"] as const;
export type PageName = (typeof PAGES)[number];

export const ADMIN_ROOT = "/ui/admin";

/** The page a path names (`/ui/admin/logs` → logs); the keys page for the root or anything unknown. */
export function pageOf(pathname: string): PageName {
  const rest = pathname.startsWith(ADMIN_ROOT) ? pathname.slice(ADMIN_ROOT.length) : "";
  const name = rest.replace(/^\/+/, "").split("/")[0] ?? "";
  return (PAGES as readonly string[]).includes(name) ? (name as PageName) : "keys";
}

export type Parsed<T> = { ok: true; value: T } | { ok: false; error: string };

/** A limit field: blank means no limit (null); otherwise a whole number from `least`. */
export function parseLimit(text: string, least: number): Parsed<number | null> {
  const trimmed = text.trim();
  if (!trimmed) return { ok: true, value: null };
  if (!/^\d+$/.test(trimmed)) return { ok: false, error: "a whole number, or blank for no limit" };
  const value = Number(trimmed);
  if (!Number.isSafeInteger(value) || value < least) return { ok: false, error: `at least ${least}, or blank for no limit` };
  return { ok: true, value };
}

/** A comma-separated list of model names; blank: every model. */
export function parseModels(text: string): string[] {
  return text
    .split(",")
    .map((m) => m.trim())
    .filter(Boolean);
}

/** A `datetime-local` value (the browser's zone) as an ISO time with offset; blank: null. */
export function localToIso(value: string): string | null {
  if (!value.trim()) return null;
  const at = new Date(value);
  return Number.isNaN(at.getTime()) ? null : at.toISOString();
}

/** An ISO time as a `datetime-local` value in the browser's zone; null: blank. */
export function isoToLocal(iso: string | null): string {
  if (!iso) return "";
  const at = new Date(iso);
  const local = new Date(at.getTime() - at.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

export function formatLimit(value: number | null): string {
  return value === null ? "unlimited" : value.toLocaleString("en-US");
}

export function formatTime(iso: string | null): string {
  if (!iso) return "—";
  const at = new Date(iso);
  return Number.isNaN(at.getTime()) ? iso : at.toLocaleString("en-GB", { dateStyle: "medium", timeStyle: "short" });
}

/** One per-model limit row of the key editor, as typed. */
export interface ModelLimitRow {
  model: string;
  rpm: string;
  tpm: string;
  quota: string;
}

export type ModelLimitBody = { rpm_limit: number | null; tpm_limit: number | null; quota_tokens: number | null };

/**
 * The `model_limits` edit the rows make of the key's `current` model ids: each row's limits
 * (all blank removes the model's), and `null` for a model whose row was removed; or what is
 * wrong, naming the model.
 */
export function modelLimitsEdit(rows: ModelLimitRow[], current: string[]): Record<string, ModelLimitBody | null> | string {
  const edit: Record<string, ModelLimitBody | null> = Object.fromEntries(current.map((id) => [id, null]));
  for (const row of rows) {
    const model = row.model.trim();
    if (!model) return "Per-model limits: name a model on every row, or remove the row.";
    const rpm = parseLimit(row.rpm, 1);
    if (!rpm.ok) return `Requests per minute on ${model}: ${rpm.error}.`;
    const tpm = parseLimit(row.tpm, 1);
    if (!tpm.ok) return `Tokens per minute on ${model}: ${tpm.error}.`;
    const quota = parseLimit(row.quota, 0);
    if (!quota.ok) return `Monthly token quota on ${model}: ${quota.error}.`;
    edit[model] = { rpm_limit: rpm.value, tpm_limit: tpm.value, quota_tokens: quota.value };
  }
  return edit;
}

/** What the API takes as a budget: dollars with at most 9 decimals. */
const DOLLARS = /^\d{1,7}(\.\d{1,9})?$/;

/** A key's or a team's name and limits as typed in the create and edit forms. */
export interface LimitFields {
  name: string;
  rpm: string;
  quota: string;
  tpm: string;
  parallel: string;
  budget: string;
  window: BudgetWindow;
}

export interface Limits {
  rpm_limit: number | null;
  quota_tokens: number | null;
  tpm_limit: number | null;
  max_parallel: number | null;
  budget_usd: string | null;
  budget_window: BudgetWindow;
}

export const NO_LIMITS: LimitFields = { name: "", rpm: "", quota: "", tpm: "", parallel: "", budget: "", window: "month" };

/** What an editor starts from: a key's or a team's name and limits, as text (blank: no limit). */
export function fieldsOf(record: Limits & { name: string }): LimitFields {
  const text = (value: number | null) => (value === null ? "" : String(value));
  return {
    name: record.name,
    rpm: text(record.rpm_limit),
    quota: text(record.quota_tokens),
    tpm: text(record.tpm_limit),
    parallel: text(record.max_parallel),
    budget: record.budget_usd ?? "",
    window: record.budget_window,
  };
}

/**
 * A create body's limits: only those given, so that a key's blank limits take its role's
 * defaults; a budget's window goes only with a budget.
 */
export function givenLimits(limits: Limits): Partial<Limits> {
  const { budget_window, ...rest } = limits;
  const given: Partial<Limits> = Object.fromEntries(Object.entries(rest).filter(([, value]) => value !== null));
  return limits.budget_usd === null ? given : { ...given, budget_window };
}

export function checkLimits(fields: LimitFields): Limits | string {
  const rpm = parseLimit(fields.rpm, 1);
  if (!rpm.ok) return `Requests per minute: ${rpm.error}.`;
  const quota = parseLimit(fields.quota, 0);
  if (!quota.ok) return `Monthly token quota: ${quota.error}.`;
  const tpm = parseLimit(fields.tpm, 1);
  if (!tpm.ok) return `Tokens per minute: ${tpm.error}.`;
  const parallel = parseLimit(fields.parallel, 1);
  if (!parallel.ok) return `Requests in flight: ${parallel.error}.`;
  const budget = fields.budget.trim().replace(/^\$/, "");
  if (budget && !DOLLARS.test(budget)) return "Budget: dollars such as 25 or 0.50, at most 9 decimals.";
  // Sent as the string typed: the API reads it as an exact decimal, never as a float.
  const budgeted = { budget_usd: budget || null, budget_window: fields.window };
  return { rpm_limit: rpm.value, quota_tokens: quota.value, tpm_limit: tpm.value, max_parallel: parallel.value, ...budgeted };
}

/** A window's spend of a budget ("$1.20 of $5.00 / week"); "none" without a budget. */
export function formatBudget(budget: BudgetView | null | undefined): string {
  return budget ? `$${budget.spent_usd} of $${budget.budget_usd} / ${budget.window}` : "none";
}

/** A month's count on a ledger ("1,200 tokens, 3 requests"); "—" when nothing was counted. */
export function formatUsage(usage: UsageView | null | undefined): string {
  return usage ? `${usage.used_tokens.toLocaleString("en-US")} tokens, ${usage.requests} requests` : "—";
}
