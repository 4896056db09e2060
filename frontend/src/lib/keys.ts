/**
 * API key handling. The key a user pastes lives in sessionStorage only: it survives a reload
 * of the tab but not closing it, is never written to the URL, localStorage or the console.
 * An operator may inject a playground key through /ui/config.js; a pasted key wins over it.
 */

export const STORAGE_ITEM = "llmserver.apiKey";

const KEY_SHAPE = /^llms_[a-z0-9]{12}_\S+$/;

export type KeySource = "user" | "config" | "none";

export interface ActiveKey {
  key: string | null;
  source: KeySource;
}

/** sessionStorage, or null where the browser refuses it (some privacy modes throw on access). */
export function sessionStore(): Storage | null {
  try {
    return globalThis.sessionStorage ?? null;
  } catch {
    return null;
  }
}

export function loadUserKey(storage: Storage | null, item: string = STORAGE_ITEM): string | null {
  try {
    const key = storage?.getItem(item)?.trim();
    return key ? key : null;
  } catch {
    return null;
  }
}

/** Store the pasted key (trimmed); an empty value forgets it. Returns what is now stored. */
export function saveUserKey(storage: Storage | null, key: string, item: string = STORAGE_ITEM): string | null {
  const trimmed = key.trim();
  try {
    if (trimmed) storage?.setItem(item, trimmed);
    else storage?.removeItem(item);
  } catch {
    // Storage full or refused: the key still works for this page view, held in memory.
  }
  return trimmed || null;
}

export function forgetUserKey(storage: Storage | null, item: string = STORAGE_ITEM): void {
  try {
    storage?.removeItem(item);
  } catch {
    // Nothing stored, nothing to forget.
  }
}

export function activeKey(userKey: string | null, configKey: string | null): ActiveKey {
  if (userKey) return { key: userKey, source: "user" };
  if (configKey) return { key: configKey, source: "config" };
  return { key: null, source: "none" };
}

export function looksLikeKey(key: string): boolean {
  return KEY_SHAPE.test(key.trim());
}

/** The public part only (`llms_<prefix>_…`), safe to show on screen. */
export function maskKey(key: string): string {
  const match = /^(llms_[a-z0-9]{12})_/.exec(key);
  return match ? `${match[1]}_…` : "…";
}

export function authHeaders(key: string | null): Record<string, string> {
  return key ? { Authorization: `Bearer ${key}` } : {};
}
