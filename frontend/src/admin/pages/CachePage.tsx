import { useState } from "react";
import type { ApiError } from "../../lib/errors";
import { DataTable, ErrorNote, LoadState, asApiError, useLoad } from "../components";
import { query, type AdminApi, type CacheView, type DailyUsage } from "../lib/api";

function monthStart(): string {
  return `${new Date().toISOString().slice(0, 7)}-01`;
}

export function CachePage({ api }: { api: AdminApi }) {
  const [confirming, setConfirming] = useState<string | null>(null);
  const [result, setResult] = useState<string | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [loaded, reload] = useLoad(
    async (signal) => {
      const [cache, usage] = await Promise.all([
        api.get<CacheView>("/cache", signal),
        api.get<{ data: DailyUsage[] }>(`/usage/daily${query({ since: monthStart() })}`, signal),
      ]);
      const requests = usage.data.reduce((n, r) => n + r.requests, 0);
      const hits = usage.data.reduce((n, r) => n + r.cache_hits, 0);
      return { cache, requests, hits };
    },
    [api],
  );

  async function purge(model: string | null) {
    setError(null);
    try {
      const done = await api.call<{ removed: number }>("POST", "/cache/purge", model ? { model } : {});
      setResult(`Removed ${done.removed} ${done.removed === 1 ? "entry" : "entries"}${model ? ` of ${model}` : ""}.`);
      setConfirming(null);
      reload();
    } catch (e) {
      setError(asApiError(e));
    }
  }

  function purgeButton(model: string | null, label: string) {
    const id = model ?? "*";
    if (confirming !== id) {
      return (
        <button type="button" className="small danger" onClick={() => setConfirming(id)} aria-label={label} data-testid={model ? "purge-model" : "purge-all"}>
          Purge
        </button>
      );
    }
    return (
      <span className="confirm">
        <button type="button" className="small danger" onClick={() => void purge(model)} data-testid="confirm-purge">
          Confirm purge
        </button>
        <button type="button" className="small ghost" onClick={() => setConfirming(null)}>
          Cancel
        </button>
      </span>
    );
  }

  return (
    <>
      <LoadState loaded={loaded} />
      <ErrorNote error={error} />
      {result && (
        <p role="status" data-testid="purge-result">
          {result}
        </p>
      )}
      {loaded.state === "ready" && (
        <>
          <dl className="stats" data-testid="cache-stats">
            <div>
              <dt>Cache</dt>
              <dd>{loaded.data.cache.enabled ? `on, entries live ${loaded.data.cache.ttl_s} s` : "off"}</dd>
            </div>
            <div>
              <dt>Hot layer</dt>
              <dd>{loaded.data.cache.hot_layer ? "on" : "off"}</dd>
            </div>
            <div>
              <dt>Live entries</dt>
              <dd data-testid="cache-entries">{loaded.data.cache.entries}</dd>
            </div>
            <div>
              <dt>Hits on them</dt>
              <dd>{loaded.data.cache.hits}</dd>
            </div>
            <div>
              <dt>Hit rate this month</dt>
              <dd>{loaded.data.requests ? `${((100 * loaded.data.hits) / loaded.data.requests).toFixed(1)}% of ${loaded.data.requests} requests` : "no requests yet"}</dd>
            </div>
          </dl>
          <p>
            Purge every entry: {purgeButton(null, "Purge every cached response")}
          </p>
          <DataTable testId="cache-table" columns={["Model", "Live entries", "Hits", "Purge"]}>
                {loaded.data.cache.models.map((m) => (
                  <tr key={m.model} data-model={m.model}>
                    <th scope="row">{m.model}</th>
                    <td>{m.entries}</td>
                    <td>{m.hits}</td>
                    <td>{purgeButton(m.model, `Purge the cached responses of ${m.model}`)}</td>
                  </tr>
                ))}
          </DataTable>
        </>
      )}
    </>
  );
}
