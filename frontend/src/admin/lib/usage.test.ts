import { describe, expect, it } from "vitest";
import type { DailyUsage } from "./api";
import { OTHER, csvCell, daysBetween, hitRateByDay, seriesByDay, totalsBy, usageCsv } from "./usage";

function row(day: string, key: string, model: string, requests: number, tokens: number, hits = 0): DailyUsage {
  return { day, key_id: key, model, requests, prompt_tokens: tokens, completion_tokens: 0, cache_hits: hits, errors: 0 };
}

const ROWS = [
  row("2026-03-01", "a", "m1", 2, 100, 1),
  row("2026-03-01", "b", "m1", 1, 10),
  row("2026-03-02", "a", "m2", 1, 50, 1),
  row("2026-03-02", "c", "m2", 4, 5),
];

describe("usage figures", () => {
  it("lists the days of a range, end excluded", () => {
    expect(daysBetween("2026-02-27", "2026-03-02")).toEqual(["2026-02-27", "2026-02-28", "2026-03-01"]);
    expect(daysBetween("2026-03-02", "2026-03-02")).toEqual([]);
  });

  it("totals per group, largest first, with the hit rate", () => {
    const byKey = totalsBy(ROWS, "key");
    expect(byKey.map((t) => [t.group, t.tokens, t.requests, t.hit_rate])).toEqual([
      ["a", 150, 3, 2 / 3],
      ["b", 10, 1, 0],
      ["c", 5, 4, 0],
    ]);
    expect(totalsBy(ROWS, "model").map((t) => t.group)).toEqual(["m1", "m2"]);
  });

  it("charts the top groups per day and sums the rest as other", () => {
    const days = daysBetween("2026-03-01", "2026-03-04");
    const series = seriesByDay(ROWS, days, "key", "requests", 2);
    expect(series.groups).toEqual(["a", "b", OTHER]);
    expect(series.points).toEqual([
      { day: "2026-03-01", a: 2, b: 1, [OTHER]: 0 },
      { day: "2026-03-02", a: 1, b: 0, [OTHER]: 4 },
      { day: "2026-03-03", a: 0, b: 0, [OTHER]: 0 },
    ]);
  });

  it("gives the cache hit rate per day, none on idle days", () => {
    expect(hitRateByDay(ROWS, ["2026-03-01", "2026-03-02", "2026-03-03"])).toEqual([
      { day: "2026-03-01", hit_rate: 33.3 },
      { day: "2026-03-02", hit_rate: 20 },
      { day: "2026-03-03", hit_rate: null },
    ]);
  });

  it("writes CSV that a spreadsheet reads as data, never as formulas", () => {
    expect(csvCell('say "hi", now')).toBe('"say ""hi"", now"');
    expect(csvCell("=HYPERLINK(1)")).toBe("'=HYPERLINK(1)");
    expect(csvCell(-3)).toBe("-3");
    expect(csvCell(null)).toBe("");
    const csv = usageCsv([row("2026-03-01", "a", "m1", 2, 100)], (id) => (id === "a" ? "@billing" : null));
    expect(csv).toBe(
      "day,key_id,key_name,model,requests,prompt_tokens,completion_tokens,cache_hits,errors\r\n" +
        "2026-03-01,a,'@billing,m1,2,100,0,0,0\r\n",
    );
  });
});
