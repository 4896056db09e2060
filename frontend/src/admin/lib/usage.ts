/** Usage figures for the charts and tables, from /admin/usage/daily rows. Pure functions. */
import type { DailyUsage } from "./api";

export type GroupBy = "key" | "model";
export type Metric = "tokens" | "requests" | "cost";

export const OTHER = "other";

export interface Totals {
  group: string;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  tokens: number;
  cache_hits: number;
  errors: number;
  /** Picodollars, summed exactly (see `picodollars`). */
  cost: bigint;
  /** Cache hits per request, 0..1; null without requests. */
  hit_rate: number | null;
}

/** Every UTC day in [since, until), as YYYY-MM-DD. */
export function daysBetween(since: string, until: string): string[] {
  const days: string[] = [];
  const end = Date.parse(`${until}T00:00:00Z`);
  for (let t = Date.parse(`${since}T00:00:00Z`); t < end && days.length < 400; t += 86_400_000) {
    days.push(new Date(t).toISOString().slice(0, 10));
  }
  return days;
}

const PICO_PER_DOLLAR = 10n ** 12n;

/**
 * The API's exact dollar string ("0.00135", at most 12 decimals) as integer picodollars, so
 * that sums stay exact: a float adds 0.1 + 0.2 to 0.30000000000000004.
 */
export function picodollars(usd: string): bigint {
  const [whole = "0", fraction = ""] = usd.split(".");
  return BigInt(whole) * PICO_PER_DOLLAR + BigInt(fraction.padEnd(12, "0"));
}

/** Picodollars as the API writes dollars: at least two decimals, no trailing zeros past them. */
export function dollars(pico: bigint): string {
  const fraction = (pico % PICO_PER_DOLLAR).toString().padStart(12, "0").replace(/0+$/, "").padEnd(2, "0");
  return `${pico / PICO_PER_DOLLAR}.${fraction}`;
}

function groupOf(row: DailyUsage, by: GroupBy): string {
  return (by === "key" ? row.key_id : row.model) || "(none)";
}

// The chart's cost is a float of dollars: a bar's height, not an amount anyone adds up
// (the table and the CSV keep the exact figures).
function valueOf(row: DailyUsage, metric: Metric): number {
  if (metric === "cost") return Number(row.cost_usd);
  return metric === "tokens" ? row.prompt_tokens + row.completion_tokens : row.requests;
}

/** Totals per group, the largest (by tokens, then requests) first. */
export function totalsBy(rows: DailyUsage[], by: GroupBy): Totals[] {
  const totals = new Map<string, Totals>();
  for (const row of rows) {
    const group = groupOf(row, by);
    const t = totals.get(group) ?? {
      group,
      requests: 0,
      prompt_tokens: 0,
      completion_tokens: 0,
      tokens: 0,
      cache_hits: 0,
      errors: 0,
      cost: 0n,
      hit_rate: null,
    };
    t.requests += row.requests;
    t.prompt_tokens += row.prompt_tokens;
    t.completion_tokens += row.completion_tokens;
    t.tokens += row.prompt_tokens + row.completion_tokens;
    t.cache_hits += row.cache_hits;
    t.errors += row.errors;
    t.cost += picodollars(row.cost_usd);
    t.hit_rate = t.requests ? t.cache_hits / t.requests : null;
    totals.set(group, t);
  }
  return [...totals.values()].sort((a, b) => b.tokens - a.tokens || b.requests - a.requests || a.group.localeCompare(b.group));
}

export interface Series {
  /** The groups charted, largest first; the rest are summed under OTHER. */
  groups: string[];
  /** One point per day: `day` and a value per group (0 where it had none). */
  points: Array<Record<string, string | number>>;
}

/** A metric per day and group, for a stacked chart of the `top` largest groups. */
export function seriesByDay(rows: DailyUsage[], days: string[], by: GroupBy, metric: Metric, top = 5): Series {
  const ranked = totalsBy(rows, by).map((t) => t.group);
  const shown = ranked.slice(0, top);
  const groups = ranked.length > top ? [...shown, OTHER] : shown;
  const byDay = new Map(days.map((day) => [day, Object.fromEntries([["day", day], ...groups.map((g) => [g, 0])])]));
  for (const row of rows) {
    const point = byDay.get(row.day);
    if (!point) continue;
    const group = shown.includes(groupOf(row, by)) ? groupOf(row, by) : OTHER;
    point[group] = (point[group] as number) + valueOf(row, metric);
  }
  return { groups, points: [...byDay.values()] };
}

/** Cache hits per request each day, as a percentage (null on a day without requests). */
export function hitRateByDay(rows: DailyUsage[], days: string[]): Array<{ day: string; hit_rate: number | null }> {
  const sums = new Map(days.map((day) => [day, { requests: 0, hits: 0 }]));
  for (const row of rows) {
    const sum = sums.get(row.day);
    if (!sum) continue;
    sum.requests += row.requests;
    sum.hits += row.cache_hits;
  }
  return days.map((day) => {
    const sum = sums.get(day)!;
    return { day, hit_rate: sum.requests ? Math.round((1000 * sum.hits) / sum.requests) / 10 : null };
  });
}

/**
 * One CSV cell. Quoted when it holds a separator, quote or line break; a cell a spreadsheet
 * would run as a formula (starting with = + - @) is prefixed with an apostrophe, since key
 * names and model ids are free text.
 */
export function csvCell(value: string | number | null): string {
  if (value === null) return "";
  let text = String(value);
  if (typeof value === "string" && /^[=+\-@\t\r]/.test(text)) text = `'${text}`;
  return /[",\r\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

const CSV_COLUMNS = ["day", "key_id", "key_name", "model", "requests", "prompt_tokens", "completion_tokens", "cache_hits", "errors", "cost_usd"] as const;

/** The daily rows as CSV, with each key's name beside its id. */
export function usageCsv(rows: DailyUsage[], keyName: (id: string | null) => string | null): string {
  const lines = [CSV_COLUMNS.join(",")];
  for (const row of rows) {
    const values: Record<(typeof CSV_COLUMNS)[number], string | number | null> = {
      ...row,
      key_name: keyName(row.key_id),
    };
    lines.push(CSV_COLUMNS.map((c) => csvCell(values[c])).join(","));
  }
  return `${lines.join("\r\n")}\r\n`;
}
