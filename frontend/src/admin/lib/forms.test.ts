import { describe, expect, it } from "vitest";
import { isoToLocal, localToIso, modelLimitsEdit, pageOf, parseLimit, parseModels } from "./forms";

describe("console forms and routes", () => {
  it("maps paths to pages", () => {
    expect(pageOf("/ui/admin")).toBe("keys");
    expect(pageOf("/ui/admin/")).toBe("keys");
    expect(pageOf("/ui/admin/logs")).toBe("logs");
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
});
