/**
 * The admin API, as the console calls it. The admin key travels only as a bearer token in
 * a header: never in a URL, never logged.
 */
import { ApiError, errorFromResponse } from "../../lib/errors";
import { authHeaders } from "../../lib/keys";

export type KeyState = "active" | "revoked" | "expired";

export interface KeyView {
  id: string;
  name: string;
  prefix: string;
  role: string;
  quota_tokens: number | null;
  rpm_limit: number | null;
  tpm_limit: number | null;
  max_parallel: number | null;
  allowed_models: string[];
  /** The key's own limits per model, on top of its limits above, by model id. */
  model_limits: ModelLimitView[];
  expires_at: string | null;
  revoked_at: string | null;
  created_at: string;
  last_used_at: string | null;
  state: KeyState;
  /** Exact dollars per `budget_window`; null: no budget. */
  budget_usd: string | null;
  budget_window: BudgetWindow;
  /** The team whose limits cap this key's too; null: none. */
  team_id: string | null;
}

export type BudgetWindow = "day" | "week" | "month";

/** A key's own limits on one model; null: no limit of that kind. */
export interface ModelLimitView {
  model_id: string;
  rpm_limit: number | null;
  tpm_limit: number | null;
  /** Tokens per calendar month (UTC) on this model. */
  quota_tokens: number | null;
}

/** A key's quota on one model and this month's count under it (`GET /admin/model-quotas`). */
export interface ModelQuotaView {
  key_id: string;
  model_id: string;
  period: string;
  quota_tokens: number;
  used_tokens: number;
  reserved_tokens: number;
  remaining_tokens: number;
  resets_at: string;
}

/** A team: its limits cap the sum over its keys (`/admin/teams`). */
export interface TeamView {
  id: string;
  name: string;
  quota_tokens: number | null;
  rpm_limit: number | null;
  tpm_limit: number | null;
  max_parallel: number | null;
  budget_usd: string | null;
  budget_window: BudgetWindow;
  created_at: string;
}

/** A team with this month's count over its keys and its budget's window (`GET /admin/teams/{id}`). */
export interface TeamDetail {
  team: TeamView;
  usage: UsageView;
  budget: BudgetView | null;
}

/** A budgeted key's spend in its current window (`GET /admin/budgets`), exact dollars. */
export interface BudgetView {
  key_id: string;
  window: BudgetWindow;
  period: string;
  budget_usd: string;
  spent_usd: string;
  reserved_usd: string;
  remaining_usd: string;
  resets_at: string;
}

export interface UsageView {
  key_id: string;
  period: string;
  used_tokens: number;
  reserved_tokens: number;
  requests: number;
  cache_hits: number;
}

export interface DailyUsage {
  day: string;
  key_id: string | null;
  model: string | null;
  requests: number;
  prompt_tokens: number;
  completion_tokens: number;
  cache_hits: number;
  errors: number;
  /** Dollars as an exact decimal string ("0.00135"): the tokens at the model's prices. */
  cost_usd: string;
}

export interface LogRow {
  request_id: string;
  created_at: string;
  route: string;
  status: number;
  latency_ms: number;
  key_id: string | null;
  key_prefix: string | null;
  model: string | null;
  prompt_tokens: number;
  completion_tokens: number;
  cost_usd: string;
  cache_status: string | null;
  error_code: string | null;
  stream: boolean;
  body: string | null;
}

export interface AuditEntry {
  id: number;
  at: string;
  action: string;
  actor_key_id: string;
  actor_prefix: string;
  target: string | null;
  before: Record<string, unknown> | null;
  after: Record<string, unknown> | null;
  request_id: string | null;
}

export interface ModelView {
  id: string;
  aliases: string[];
  backend: string;
  context_length: number;
  ready: boolean;
  error: string | null;
  queue_depth: number;
  details: Record<string, string>;
}

export interface CacheView {
  enabled: boolean;
  ttl_s: number;
  hot_layer: boolean;
  entries: number;
  hits: number;
  models: { model: string; entries: number; hits: number }[];
}

export interface Page<T> {
  data: T[];
  total: number;
  limit: number;
  offset: number;
}

export interface CreatedKey {
  key: string;
  details: KeyView;
}

export interface RotatedKey extends CreatedKey {
  replaced: KeyView;
}

/** The admin API's base, next to the inference API's (`/v1` → `/admin`). */
export function adminBase(apiBase: string): string {
  return `${apiBase.replace(/\/v1$/, "")}/admin`;
}

/** A query string from the filled-in filters only. */
export function query(params: Record<string, string | number | null | undefined>): string {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value !== null && value !== undefined && String(value).trim() !== "") search.set(name, String(value).trim());
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export class AdminApi {
  constructor(
    private readonly base: string,
    private readonly key: string,
  ) {}

  async call<T>(method: string, path: string, body?: unknown, signal?: AbortSignal): Promise<T> {
    let response: Response;
    try {
      response = await fetch(`${this.base}${path}`, {
        method,
        headers: { ...authHeaders(this.key), ...(body === undefined ? {} : { "Content-Type": "application/json" }) },
        body: body === undefined ? null : JSON.stringify(body),
        signal: signal ?? null,
      });
    } catch (error) {
      if (signal?.aborted) throw error;
      throw new ApiError(0, { message: error instanceof Error ? error.message : String(error) });
    }
    const text = await response.text();
    if (!response.ok) throw errorFromResponse(response.status, response.headers, text);
    return JSON.parse(text) as T;
  }

  get<T>(path: string, signal?: AbortSignal): Promise<T> {
    return this.call<T>("GET", path, undefined, signal);
  }
}
