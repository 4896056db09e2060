import { useState } from "react";
import { looksLikeKey, maskKey, type ActiveKey } from "../lib/keys";

interface Props {
  active: ActiveKey;
  /** The server refused the key (401/403 on the model list). */
  rejected: boolean;
  onSave(key: string): void;
  onForget(): void;
}

export function KeyPanel({ active, rejected, onSave, onForget }: Props) {
  const [draft, setDraft] = useState("");
  const warning = draft.trim() && !looksLikeKey(draft) ? "This does not look like an LLM Server key (llms_…)." : "";

  function save() {
    if (!draft.trim()) return;
    onSave(draft);
    setDraft("");
  }

  return (
    <section className="panel">
      <h2>API key</h2>
      <div className="key-status" data-testid="key-status">
        <span className={`dot ${active.source === "none" ? "warn" : rejected ? "bad" : "ok"}`} />
        {active.source === "user" && (
          <>
            <span>
              <code>{maskKey(active.key!)}</code>
              <br />
              <span className="muted-text">{rejected ? "Refused by the server" : "Your key, this tab only"}</span>
            </span>
            <button type="button" className="ghost small" onClick={onForget}>
              Forget
            </button>
          </>
        )}
        {active.source === "config" && (
          <span>
            Playground key provided by this server
            {rejected && <span className="muted-text"> (refused)</span>}
          </span>
        )}
        {active.source === "none" && <span>No key yet. Paste one to start.</span>}
      </div>
      <div className="key-entry">
        <input
          type="password"
          name="llmserver-api-key"
          aria-label="API key"
          placeholder={active.source === "user" ? "Paste another key" : "llms_…"}
          autoComplete="off"
          spellCheck={false}
          value={draft}
          onChange={(e) => setDraft(e.target.value)}
          onKeyDown={(e) => {
            if (e.key === "Enter") save();
          }}
          data-testid="api-key-input"
        />
        <button type="button" onClick={save} disabled={!draft.trim()} data-testid="save-key">
          Use key
        </button>
      </div>
      {warning && <p className="field-note warn-text">{warning}</p>}
      <p className="field-note">Stored in this tab's session storage, sent only as a bearer token to this server.</p>
    </section>
  );
}
