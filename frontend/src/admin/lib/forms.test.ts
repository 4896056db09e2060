import { describe, expect, it } from "vitest";
import type { BudgetView, UsageView } from "./api";
import { checkLimits, fieldsOf, formatBudget, formatUsage, givenLimits, isoToLocal, localToIso, modelLimitsEdit, pageOf, parseLimit, parseModels } from "./forms";

describe("console forms and routes", () => {
  it("maps paths to pages", () => {
    expect(pageOf("/ui/admin")).toBe("keys");
    expect(pageOf("/ui/admin/")).toBe("keys");
    expect(pageOf("/ui/admin/logs")).toBe("logs");
    expect(pageOf("/ui/admin/teams")).toBe("teams");
    expect(pageOf("/ui/admin/audit/extra")).toBe("audit");
    expect(pageOf("/ui/admin/nothing")).toBe("keys");
    expect(pageOf("/ui/administrator")).toBe("keys");
  });

  it("reads limits: blank is none, junk is refused", () => {
    expect(parseLimit(" ", 1)).toEqual({ ok: true, value: null });
    expect(parseLimit("60", 1)).toEqual({ ok: true, value: 60 });
    expect(parseLimit("0", 0)).toEqual({ ok: true, value: 0 });
    expect(parseLimit("0", 1).ok).toBe(false);
    expect(parseLimit("1.5", 1).ok).toBe(false);
    expect(parseLimit("-2", 0).ok).toBe(false);
    expect(parseLimit("99999999999999999999", 0).ok).toBe(false);
  });

  it("reads model lists", () => {
    expect(parseModels(" a, ,b ,")).toEqual(["a", "b"]);
    expect(parseModels("")).toEqual([]);
  });

  it("round-trips local times", () => {
    const iso = "2027-01-02T03:04:00.000Z";
    expect(localToIso(isoToLocal(iso))).toBe(iso);
    expect(localToIso("")).toBeNull();
    expect(isoToLocal(null)).toBe("");
  });

  it("reads per-model limit rows into an edit that removes the rows taken away", () => {
    const rows = [{ model: " tiny ", rpm: "5", tpm: "", quota: "0" }];
    expect(modelLimitsEdit(rows, ["tiny", "gone"])).toEqual({
      tiny: { rpm_limit: 5, tpm_limit: null, quota_tokens: 0 },
      gone: null,
    });
    expect(modelLimitsEdit([], [])).toEqual({});
    expect(modelLimitsEdit([{ model: "tiny", rpm: "", tpm: "0", quota: "" }], [])).toBe(
      "Tokens per minute on tiny: at least 1, or blank for no limit.",
    );
    expect(modelLimitsEdit([{ model: "tiny", rpm: "", tpm: "", quota: "-1" }], [])).toMatch(/^Monthly token quota on tiny/);
    expect(modelLimitsEdit([{ model: " ", rpm: "1", tpm: "", quota: "" }], [])).toMatch(/name a model/);
  });

  it("starts an editor from a record's limits and reads them back unchanged", () => {
    const record = { name: "ops", rpm_limit: 60, quota_tokens: 0, tpm_limit: null, max_parallel: 4, budget_usd: "25.50", budget_window: "week" as const };
    const fields = fieldsOf(record);
    expect(fields).toEqual({ name: "ops", rpm: "60", quota: "0", tpm: "", parallel: "4", budget: "25.50", window: "week" });
    const { name: _, ...limits } = record;
    expect(checkLimits(fields)).toEqual(limits);
    expect(checkLimits({ ...fields, parallel: "0" })).toBe("Requests in flight: at least 1, or blank for no limit.");
    expect(checkLimits({ ...fields, budget: "1.0000000001" })).toMatch(/^Budget: /);
  });

  it("sends only the limits given on creation, a window only with a budget", () => {
    const none = { rpm_limit: null, quota_tokens: null, tpm_limit: null, max_parallel: null, budget_usd: null, budget_window: "day" as const };
    expect(givenLimits(none)).toEqual({});
    expect(givenLimits({ ...none, rpm_limit: 2, quota_tokens: 0 })).toEqual({ rpm_limit: 2, quota_tokens: 0 });
    expect(givenLimits({ ...none, budget_usd: "5" })).toEqual({ budget_usd: "5", budget_window: "day" });
  });

  it("words a budget's spend and a month's count", () => {
    const budget: BudgetView = {
      key_id: "team:t",
      window: "week",
      period: "2026-W49",
      budget_usd: "5.00",
      spent_usd: "0.0012",
      reserved_usd: "0.00",
      remaining_usd: "4.9988",
      resets_at: "2026-12-07T00:00:00Z",
    };
    expect(formatBudget(budget)).toBe("$0.0012 of $5.00 / week");
    expect(formatBudget(null)).toBe("none");
    const usage: UsageView = { key_id: "k", period: "2026-12", used_tokens: 12345, reserved_tokens: 0, requests: 3, cache_hits: 0 };
    expect(formatUsage(usage)).toBe("12,345 tokens, 3 requests");
    expect(formatUsage(undefined)).toBe("—");
  });
});
