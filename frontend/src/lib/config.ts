/** What the server injects through /ui/config.js (see app/routes/ui.py). */
export interface UiConfig {
  apiBase: string;
  uiKey: string | null;
}

declare global {
  interface Window {
    LLMSERVER_CONFIG?: Partial<UiConfig>;
  }
}

export function readConfig(raw: unknown): UiConfig {
  const value = (raw && typeof raw === "object" ? raw : {}) as Record<string, unknown>;
  const apiBase = typeof value.apiBase === "string" && value.apiBase ? value.apiBase : "/v1";
  const uiKey = typeof value.uiKey === "string" && value.uiKey.trim() ? value.uiKey.trim() : null;
  return { apiBase: apiBase.replace(/\/+$/, ""), uiKey };
}
