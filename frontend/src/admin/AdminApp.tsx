/**
 * The admin console at /ui/admin, loaded only there (main.tsx imports it lazily). The admin
 * key is pasted once and kept in this tab's sessionStorage under its own item: never in a
 * URL, never logged, forgotten on sign-out. The server checks the admin role on every call;
 * the console hides nothing the API would allow.
 */
import { useCallback, useEffect, useMemo, useState } from "react";
import type { UiConfig } from "../lib/config";
import { ApiError } from "../lib/errors";
import { forgetUserKey, loadUserKey, looksLikeKey, maskKey, saveUserKey, sessionStore } from "../lib/keys";
import { errorText } from "./components";
import { AdminApi, adminBase } from "./lib/api";
import { ADMIN_ROOT, PAGES, pageOf, type PageName } from "./lib/forms";
import { AuditPage } from "./pages/AuditPage";
import { CachePage } from "./pages/CachePage";
import { KeysPage } from "./pages/KeysPage";
import { LogsPage } from "./pages/LogsPage";
import { ModelsPage } from "./pages/ModelsPage";
import { TeamsPage } from "./pages/TeamsPage";
import { UsagePage } from "./pages/UsagePage";
import "./admin.css";

export const ADMIN_KEY_ITEM = "llmserver.adminKey";

const TITLES: Record<PageName, string> = {
  keys: "Keys",
  teams: "Teams",
  usage: "Usage and cost",
  logs: "Request logs",
  models: "Models",
  audit: "Audit trail",
  cache: "Cache",
};

type Session = { state: "checking" } | { state: "ok" } | { state: "refused"; error: ApiError };

export default function AdminApp({ config }: { config: UiConfig }) {
  const storage = useMemo(sessionStore, []);
  const [key, setKey] = useState<string | null>(() => loadUserKey(storage, ADMIN_KEY_ITEM));
  const [page, setPage] = useState<PageName>(() => pageOf(location.pathname));
  const [session, setSession] = useState<Session>({ state: "checking" });
  const api = useMemo(() => (key ? new AdminApi(adminBase(config.apiBase), key) : null), [config.apiBase, key]);

  useEffect(() => {
    const onPop = () => setPage(pageOf(location.pathname));
    window.addEventListener("popstate", onPop);
    return () => window.removeEventListener("popstate", onPop);
  }, []);

  useEffect(() => {
    document.title = `${TITLES[page]} · LLM Server admin`;
  }, [page]);

  // One call proves the key is an admin's before any page shows.
  useEffect(() => {
    if (!api) return;
    const controller = new AbortController();
    setSession({ state: "checking" });
    api
      .get("/roles", controller.signal)
      .then(() => setSession({ state: "ok" }))
      .catch((error: unknown) => {
        if (controller.signal.aborted) return;
        setSession({ state: "refused", error: error instanceof ApiError ? error : new ApiError(0, { message: String(error) }) });
      });
    return () => controller.abort();
  }, [api]);

  const signOut = useCallback(() => {
    forgetUserKey(storage, ADMIN_KEY_ITEM);
    setKey(null);
  }, [storage]);

  function go(next: PageName) {
    history.pushState(null, "", `${ADMIN_ROOT}/${next}`);
    setPage(next);
  }

  if (!api || session.state === "refused") {
    return (
      <SignIn
        refused={session.state === "refused" && api ? session.error : null}
        onSignIn={(pasted) => setKey(saveUserKey(storage, pasted, ADMIN_KEY_ITEM))}
      />
    );
  }

  return (
    <div className="admin">
      <header className="admin-top">
        <span className="brand">LLM Server admin</span>
        <nav aria-label="Admin pages">
          <ul>
            {PAGES.map((name) => (
              <li key={name}>
                <a
                  href={`${ADMIN_ROOT}/${name}`}
                  aria-current={name === page ? "page" : undefined}
                  onClick={(e) => {
                    e.preventDefault();
                    go(name);
                  }}
                  data-testid={`nav-${name}`}
                >
                  {TITLES[name]}
                </a>
              </li>
            ))}
          </ul>
        </nav>
        <span className="admin-who">
          <code>{maskKey(key!)}</code>
          <button type="button" className="ghost small" onClick={signOut} data-testid="sign-out">
            Sign out
          </button>
          <a href="/ui/" className="small-link">
            Playground
          </a>
        </span>
      </header>
      <main className="admin-main" data-testid={`page-${page}`}>
        <h1>{TITLES[page]}</h1>
        {session.state === "checking" ? (
          <p role="status">Checking the key…</p>
        ) : (
          <>
            {page === "keys" && <KeysPage api={api} />}
            {page === "teams" && <TeamsPage api={api} />}
            {page === "usage" && <UsagePage api={api} />}
            {page === "logs" && <LogsPage api={api} />}
            {page === "models" && <ModelsPage api={api} />}
            {page === "audit" && <AuditPage api={api} />}
            {page === "cache" && <CachePage api={api} />}
          </>
        )}
      </main>
    </div>
  );
}

function SignIn({ refused, onSignIn }: { refused: ApiError | null; onSignIn(key: string): void }) {
  const [draft, setDraft] = useState("");
  const warning = draft.trim() && !looksLikeKey(draft) ? "This does not look like an LLM Server key (llms_…)." : "";
  return (
    <main className="admin-signin">
      <h1>LLM Server admin</h1>
      <form
        onSubmit={(e) => {
          e.preventDefault();
          if (draft.trim()) onSignIn(draft);
          setDraft("");
        }}
      >
        <label htmlFor="admin-key">Admin API key</label>
        <input
          id="admin-key"
          type="password"
          autoComplete="off"
          spellCheck={false}
          placeholder="llms_…"
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          data-testid="admin-key-input"
        />
        <button type="submit" className="primary" disabled={!draft.trim()} data-testid="sign-in">
          Sign in
        </button>
        {warning && <p className="field-note warn-text">{warning}</p>}
        {refused && (
          <p className="error-text" role="alert" data-testid="sign-in-error">
            {refused.status === 403 ? "This key is not an admin key." : errorText(refused)}
          </p>
        )}
        <p className="field-note">Kept in this tab's session storage only, sent only as a bearer token to this server.</p>
      </form>
    </main>
  );
}
