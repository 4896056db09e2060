import { describe, expect, it } from "vitest";
import type { DailyUsage } from "./api";
import { OTHER, csvCell, daysBetween, dollars, hitRateByDay, picodollars, seriesByDay, totalsBy, usageCsv } from "./usage";

function row(day: string, key: string, model: string, requests: number, tokens: number, hits = 0, cost = "0.00"): DailyUsage {
  return { day, key_id: key, model, requests, prompt_tokens: tokens, completion_tokens: 0, cache_hits: hits, errors: 0, cost_usd: cost };
}

const ROWS = [
  row("2026-03-01", "a", "m1", 2, 100, 1, "0.1"),
  row("2026-03-01", "b", "m1", 1, 10),
  row("2026-03-02", "a", "m2", 1, 50, 1, "0.2"),
  row("2026-03-02", "c", "m2", 4, 5, 0, "9007199.254740993001"),
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

  it("sums costs exactly, past what a float holds", () => {
    // 0.1 + 0.2 as floats is 0.30000000000000004; 9007199.254740993001 has no float at all.
    expect(totalsBy(ROWS, "key").map((t) => [t.group, dollars(t.cost)])).toEqual([
      ["a", "0.30"],
      ["b", "0.00"],
      ["c", "9007199.254740993001"],
    ]);
    expect(totalsBy(ROWS, "model").map((t) => dollars(t.cost))).toEqual(["0.10", "9007199.454740993001"]);
    expect(picodollars("0.000000000001")).toBe(1n);
    expect(dollars(picodollars("1.5"))).toBe("1.50");
  });

  it("charts cost per day in dollars", () => {
    const series = seriesByDay(ROWS, ["2026-03-01"], "key", "cost", 5);
    expect(series.points).toEqual([{ day: "2026-03-01", a: 0.1, b: 0, c: 0 }]);
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
      "day,key_id,key_name,model,requests,prompt_tokens,completion_tokens,cache_hits,errors,cost_usd\r\n" +
        "2026-03-01,a,'@billing,m1,2,100,0,0,0,0.00\r\n",
    );
  });
});
