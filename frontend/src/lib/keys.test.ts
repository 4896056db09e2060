// @vitest-environment jsdom
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import {
  STORAGE_ITEM,
  activeKey,
  authHeaders,
  forgetUserKey,
  loadUserKey,
  looksLikeKey,
  maskKey,
  saveUserKey,
  sessionStore,
} from "./keys";
import { readConfig } from "./config";
import { buildChatRequest, curlCommand, DEFAULT_PARAMS } from "./request";

const KEY = "llms_abcdefghij12_s3cr3tS3cr3tS3cr3t";
const CONFIG_KEY = "llms_playground0_operatorSecret";

beforeEach(() => {
  sessionStorage.clear();
  localStorage.clear();
});

afterEach(() => vi.restoreAllMocks());

describe("key storage", () => {
  it("keeps the pasted key in sessionStorage only", () => {
    saveUserKey(sessionStore(), `  ${KEY}\n`);
    expect(sessionStorage.getItem(STORAGE_ITEM)).toBe(KEY);
    expect(localStorage.length).toBe(0);
    expect(document.cookie).not.toContain(KEY);
    expect(loadUserKey(sessionStore())).toBe(KEY);
  });

  it("forgets the key on an empty value and on forget", () => {
    saveUserKey(sessionStore(), KEY);
    expect(saveUserKey(sessionStore(), "   ")).toBeNull();
    expect(loadUserKey(sessionStore())).toBeNull();
    saveUserKey(sessionStore(), KEY);
    forgetUserKey(sessionStore());
    expect(sessionStorage.length).toBe(0);
  });

  it("never puts the key in the URL or history", () => {
    const before = { href: window.location.href, length: window.history.length };
    const push = vi.spyOn(window.history, "pushState");
    const replace = vi.spyOn(window.history, "replaceState");
    saveUserKey(sessionStore(), KEY);
    loadUserKey(sessionStore());
    expect(window.location.href).toBe(before.href);
    expect(window.location.href).not.toContain(KEY);
    expect(window.history.length).toBe(before.length);
    expect(push).not.toHaveBeenCalled();
    expect(replace).not.toHaveBeenCalled();
  });

  it("never logs the key", () => {
    const spies = (["log", "info", "warn", "error", "debug"] as const).map((m) => vi.spyOn(console, m));
    saveUserKey(sessionStore(), KEY);
    loadUserKey(sessionStore());
    forgetUserKey(sessionStore());
    for (const spy of spies) expect(spy).not.toHaveBeenCalled();
  });

  it("degrades to memory when storage refuses", () => {
    const refusing = {
      getItem: () => {
        throw new Error("SecurityError");
      },
      setItem: () => {
        throw new Error("QuotaExceededError");
      },
      removeItem: () => {
        throw new Error("SecurityError");
      },
    } as unknown as Storage;
    expect(saveUserKey(refusing, KEY)).toBe(KEY);
    expect(loadUserKey(refusing)).toBeNull();
    expect(() => forgetUserKey(refusing)).not.toThrow();
    expect(loadUserKey(null)).toBeNull();
  });
});

describe("config key precedence", () => {
  it("prefers the pasted key over the operator's", () => {
    expect(activeKey(KEY, CONFIG_KEY)).toEqual({ key: KEY, source: "user" });
  });

  it("falls back to the operator's key, then to none", () => {
    expect(activeKey(null, CONFIG_KEY)).toEqual({ key: CONFIG_KEY, source: "config" });
    expect(activeKey(null, null)).toEqual({ key: null, source: "none" });
  });

  it("reads config.js defensively", () => {
    expect(readConfig(undefined)).toEqual({ apiBase: "/v1", uiKey: null });
    expect(readConfig({ apiBase: "/v1/", uiKey: "  " })).toEqual({ apiBase: "/v1", uiKey: null });
    expect(readConfig({ apiBase: 3, uiKey: CONFIG_KEY })).toEqual({ apiBase: "/v1", uiKey: CONFIG_KEY });
  });
});

describe("key display and use", () => {
  it("recognises the key shape", () => {
    expect(looksLikeKey(KEY)).toBe(true);
    expect(looksLikeKey("sk-123")).toBe(false);
  });

  it("masks everything but the public prefix", () => {
    expect(maskKey(KEY)).toBe("llms_abcdefghij12_…");
    expect(maskKey("garbage")).toBe("…");
  });

  it("sends the key as a bearer token, and nothing without one", () => {
    expect(authHeaders(KEY)).toEqual({ Authorization: `Bearer ${KEY}` });
    expect(authHeaders(null)).toEqual({});
  });

  it("never puts the real key in the curl command", () => {
    const request = buildChatRequest("demo", "", [{ role: "user", content: "hi" }], DEFAULT_PARAMS);
    const command = curlCommand("http://localhost:8000/v1/chat/completions", request);
    expect(command).toContain("$LLMSERVER_API_KEY");
    expect(command).not.toContain(KEY);
    expect(command).not.toContain("llms_");
  });
});
