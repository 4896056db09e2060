import { describe, expect, it } from "vitest";
import type { KeyState, KeyView } from "./api";
import { formatMembers, membersByTeam } from "./teams";

function key(id: string, team_id: string | null, state: KeyState = "active"): KeyView {
  return {
    id,
    name: id,
    prefix: id,
    role: "user",
    quota_tokens: null,
    rpm_limit: null,
    tpm_limit: null,
    max_parallel: null,
    allowed_models: [],
    model_limits: [],
    expires_at: null,
    revoked_at: null,
    created_at: "2026-12-01T00:00:00Z",
    last_used_at: null,
    state,
    budget_usd: null,
    budget_window: "month",
    team_id,
  };
}

describe("team members", () => {
  it("counts each team's keys and those of them active, from the key list", () => {
    const members = membersByTeam([key("a", "t1"), key("b", "t1", "revoked"), key("c", "t2", "expired"), key("d", null), key("e", "t1")]);
    expect(members).toEqual(
      new Map([
        ["t1", { keys: 3, active: 2 }],
        ["t2", { keys: 1, active: 0 }],
      ]),
    );
    expect(membersByTeam([])).toEqual(new Map());
  });

  it("words the count, naming the active ones only when some are not", () => {
    expect(formatMembers(undefined)).toBe("none");
    expect(formatMembers({ keys: 2, active: 2 })).toBe("2");
    expect(formatMembers({ keys: 3, active: 2 })).toBe("3 (2 active)");
  });
});
