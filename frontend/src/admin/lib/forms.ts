/** Form values to API values, and the console's own routes. Pure functions. */

export const PAGES = ["keys", "usage", "logs", "models", "audit", "cache"] as const;
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
