import { StrictMode, Suspense, lazy } from "react";
import { createRoot } from "react-dom/client";
import { App } from "./App";
import { readConfig } from "./lib/config";
import { ADMIN_ROOT } from "./admin/lib/forms";
import "./styles.css";

// The admin console is its own chunk (with its chart library and styles), fetched only on
// /ui/admin: the playground's first load does not carry it.
const AdminApp = lazy(() => import("./admin/AdminApp"));
const config = readConfig(window.LLMSERVER_CONFIG);
const onAdmin = location.pathname === ADMIN_ROOT || location.pathname.startsWith(`${ADMIN_ROOT}/`);

createRoot(document.getElementById("root")!).render(
  <StrictMode>
    {onAdmin ? (
      <Suspense fallback={<p role="status">Loading the admin console…</p>}>
        <AdminApp config={config} />
      </Suspense>
    ) : (
      <App config={config} />
    )}
  </StrictMode>,
);
