import { useMemo, useState } from "react";
import { Bar, BarChart, CartesianGrid, Legend, Line, LineChart, ResponsiveContainer, Tooltip, XAxis, YAxis } from "recharts";
import { Choice, DataTable, LoadState, useLoad } from "../components";
import { query, type AdminApi, type DailyUsage, type KeyView } from "../lib/api";
import { daysBetween, dollars, hitRateByDay, seriesByDay, totalsBy, usageCsv, type GroupBy, type Metric, type Totals } from "../lib/usage";

// Colours with at least 3:1 contrast on the page background, told apart by more than hue.
const COLOURS = ["#1d4ed8", "#b45309", "#047857", "#7c3aed", "#be123c", "#475569"];

function isoDay(offsetDays: number): string {
  return new Date(Date.now() + offsetDays * 86_400_000).toISOString().slice(0, 10);
}

export function UsagePage({ api }: { api: AdminApi }) {
  const [since, setSince] = useState(isoDay(-29));
  const [until, setUntil] = useState(isoDay(0));
  const [by, setBy] = useState<GroupBy>("key");
  const [metric, setMetric] = useState<Metric>("tokens");
  // `until` is the last day shown; the API takes the day after it.
  const end = useMemo(() => new Date(Date.parse(`${until}T00:00:00Z`) + 86_400_000).toISOString().slice(0, 10), [until]);
  const [loaded] = useLoad(
    async (signal) => {
      const [usage, keys] = await Promise.all([
        api.get<{ data: DailyUsage[] }>(`/usage/daily${query({ since, until: end })}`, signal),
        api.get<{ data: KeyView[] }>("/keys", signal),
      ]);
      return { rows: usage.data, keys: new Map(keys.data.map((k) => [k.id, k])) };
    },
    [api, since, end],
  );

  const rows = loaded.state === "ready" ? loaded.data.rows : [];
  const keys = loaded.state === "ready" ? loaded.data.keys : new Map<string, KeyView>();
  const label = (group: string) => (by === "key" && keys.get(group) ? `${keys.get(group)!.name} (${keys.get(group)!.prefix})` : group);
  const days = useMemo(() => daysBetween(since, end), [since, end]);
  const series = useMemo(() => seriesByDay(rows, days, by, metric), [rows, days, by, metric]);
  const hitRate = useMemo(() => hitRateByDay(rows, days), [rows, days]);
  const totals = useMemo(() => totalsBy(rows, by).slice(0, 10), [rows, by]);

  function download() {
    const csv = usageCsv(rows, (id) => (id ? (keys.get(id)?.name ?? null) : null));
    const link = document.createElement("a");
    link.href = URL.createObjectURL(new Blob([csv], { type: "text/csv" }));
    link.download = `usage-${since}-to-${until}.csv`;
    link.click();
    URL.revokeObjectURL(link.href);
  }

  return (
    <>
      <div className="filters">
        <label>
          From
          <input type="date" value={since} max={until} onChange={(e) => e.target.value && setSince(e.target.value)} data-testid="usage-since" />
        </label>
        <label>
          To
          <input type="date" value={until} min={since} onChange={(e) => e.target.value && setUntil(e.target.value)} data-testid="usage-until" />
        </label>
        <Choice label="By" value={by} onChange={(v) => setBy(v as GroupBy)} options={["key", "model"]} testId="usage-by" />
        <Choice label="Chart" value={metric} onChange={(v) => setMetric(v as Metric)} options={["tokens", "requests", "cost"]} />
        <button type="button" onClick={download} disabled={!rows.length} data-testid="usage-csv">
          Download CSV
        </button>
      </div>
      <LoadState loaded={loaded} />
      <p className="field-note">
        Cost is each request&apos;s tokens at its model&apos;s prices (<code>input_price_per_mtok</code>, <code>output_price_per_mtok</code> in the
        models file; 0 for a model without prices), in US dollars. Days are UTC; the current day is live.
      </p>
      <section aria-labelledby="usage-chart-title">
        <h2 id="usage-chart-title">
          {{ tokens: "Tokens", requests: "Requests", cost: "Cost (USD)" }[metric]} per day by {by}
        </h2>
        <figure className="chart" data-testid="usage-chart" aria-label={`${metric} per day by ${by}, top five and other`}>
          <ResponsiveContainer width="100%" height={280}>
            <BarChart data={series.points} accessibilityLayer>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" />
              <YAxis allowDecimals={metric === "cost"} />
              <Tooltip />
              <Legend />
              {series.groups.map((group, i) => (
                <Bar key={group} dataKey={group} name={label(group)} stackId="usage" fill={COLOURS[i % COLOURS.length]} />
              ))}
            </BarChart>
          </ResponsiveContainer>
        </figure>
      </section>
      <section aria-labelledby="hit-rate-title">
        <h2 id="hit-rate-title">Cache hit rate per day (%)</h2>
        <figure className="chart" aria-label="Cache hits per request per day, in percent">
          <ResponsiveContainer width="100%" height={200}>
            <LineChart data={hitRate} accessibilityLayer>
              <CartesianGrid strokeDasharray="3 3" />
              <XAxis dataKey="day" />
              <YAxis domain={[0, 100]} />
              <Tooltip />
              <Line type="monotone" dataKey="hit_rate" name="hit rate %" stroke={COLOURS[0]} connectNulls={false} dot={false} />
            </LineChart>
          </ResponsiveContainer>
        </figure>
      </section>
      <section aria-labelledby="top-title">
        <h2 id="top-title">Top {by === "key" ? "keys" : "models"} by tokens</h2>
        <TopTable totals={totals} label={label} by={by} />
      </section>
    </>
  );
}

function TopTable({ totals, label, by }: { totals: Totals[]; label(group: string): string; by: GroupBy }) {
  if (!totals.length) return <p>No requests in this range.</p>;
  return (
    <DataTable testId="usage-top" columns={[by === "key" ? "Key" : "Model", "Requests", "Prompt tokens", "Completion tokens", "Cache hit rate", "Errors", "Cost"]}>
          {totals.map((t) => (
            <tr key={t.group} data-group={t.group}>
              <th scope="row">{label(t.group)}</th>
              <td data-testid="top-requests">{t.requests}</td>
              <td>{t.prompt_tokens.toLocaleString("en-US")}</td>
              <td>{t.completion_tokens.toLocaleString("en-US")}</td>
              <td>{t.hit_rate === null ? "—" : `${(100 * t.hit_rate).toFixed(1)}%`}</td>
              <td>{t.errors}</td>
              <td data-testid="top-cost">${dollars(t.cost)}</td>
            </tr>
          ))}
    </DataTable>
  );
}
