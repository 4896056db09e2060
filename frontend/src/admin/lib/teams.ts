/** Teams as the console shows them, from what the admin API lists. Pure functions. */
import type { KeyView } from "./api";

export interface Membership {
  keys: number;
  /** Keys whose requests count towards the team's limits now. */
  active: number;
}

/** Each team's keys, counted from the key list (the teams' list does not carry them). */
export function membersByTeam(keys: readonly KeyView[]): Map<string, Membership> {
  const members = new Map<string, Membership>();
  for (const key of keys) {
    if (key.team_id === null) continue;
    const counted = members.get(key.team_id) ?? { keys: 0, active: 0 };
    members.set(key.team_id, { keys: counted.keys + 1, active: counted.active + (key.state === "active" ? 1 : 0) });
  }
  return members;
}

/** "3 (2 active)", or "none". */
export function formatMembers(members: Membership | undefined): string {
  if (!members) return "none";
  return members.active === members.keys ? String(members.keys) : `${members.keys} (${members.active} active)`;
}
