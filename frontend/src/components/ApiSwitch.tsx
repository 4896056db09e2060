import type { ChatApi } from "../lib/chatApi";

interface Props {
  api: ChatApi;
  onApi(api: ChatApi): void;
}

/** Which API the chat's requests go through; the reply streams either way. */
export function ApiSwitch({ api, onApi }: Props) {
  return (
    <section className="panel">
      <h2>
        <label htmlFor="chat-api">API</label>
      </h2>
      <select
        id="chat-api"
        value={api}
        onChange={(e) => onApi(e.target.value as ChatApi)}
        style={{ width: "100%" }}
        data-testid="api-select"
      >
        <option value="chat">Chat Completions (OpenAI)</option>
        <option value="messages">Messages (Anthropic)</option>
      </select>
    </section>
  );
}
