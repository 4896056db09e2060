import { useEffect } from "react";
import { DataTable, LoadState, useLoad } from "../components";
import type { AdminApi, ModelView } from "../lib/api";

const POLL_MS = 3000;

export function ModelsPage({ api }: { api: AdminApi }) {
  const [models, reload] = useLoad((signal) => api.get<{ data: ModelView[] }>("/models", signal), [api]);
  useEffect(() => {
    const timer = setInterval(reload, POLL_MS);
    return () => clearInterval(timer);
  }, [reload]);

  return (
    <>
      <p className="field-note" aria-live="polite">
        Live: refreshed every {POLL_MS / 1000} seconds.
        {models.state === "ready" && ` ${models.data.data.filter((m) => m.ready).length} of ${models.data.data.length} ready.`}
      </p>
      {models.state !== "ready" && <LoadState loaded={models} />}
      {models.state === "ready" && (
        <DataTable testId="models-table" columns={["Model", "Aliases", "Backend", "Health", "Queue depth", "Context", "Details"]}>
              {models.data.data.map((m) => (
                <tr key={m.id} data-testid="model-row" data-ready={m.ready}>
                  <th scope="row">{m.id}</th>
                  <td>{m.aliases.join(", ") || "—"}</td>
                  <td>{m.backend}</td>
                  <td>
                    <span className={`badge ${m.ready ? "active" : "revoked"}`}>{m.ready ? "ready" : "not ready"}</span>
                    {m.error && <span className="error-text"> {m.error}</span>}
                  </td>
                  <td data-testid="queue-depth">{m.queue_depth}</td>
                  <td>{m.context_length.toLocaleString("en-US")}</td>
                  <td className="details">
                    {Object.entries(m.details)
                      .map(([k, v]) => `${k}: ${v}`)
                      .join(" · ")}
                  </td>
                </tr>
              ))}
        </DataTable>
      )}
    </>
  );
}
