import { useEffect } from "react";
import { LoadState, useLoad } from "../components";
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
      <p className="field-note">Live: refreshed every {POLL_MS / 1000} seconds.</p>
      {models.state !== "ready" && <LoadState loaded={models} />}
      {models.state === "ready" && (
        <div className="table-wrap">
          <table data-testid="models-table">
            <thead>
              <tr>
                <th scope="col">Model</th>
                <th scope="col">Aliases</th>
                <th scope="col">Backend</th>
                <th scope="col">Health</th>
                <th scope="col">Queue depth</th>
                <th scope="col">Context</th>
                <th scope="col">Details</th>
              </tr>
            </thead>
            <tbody aria-live="polite">
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
            </tbody>
          </table>
        </div>
      )}
    </>
  );
}
