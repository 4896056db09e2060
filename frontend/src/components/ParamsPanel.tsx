import type { Params } from "../lib/request";

interface Props {
  systemPrompt: string;
  onSystemPrompt(value: string): void;
  params: Params;
  stopText: string;
  onParams(params: Params): void;
  onStopText(value: string): void;
}

function optionalInt(value: string): number | null {
  if (value.trim() === "") return null;
  const n = Number.parseInt(value, 10);
  return Number.isFinite(n) ? n : null;
}

export function ParamsPanel({ systemPrompt, onSystemPrompt, params, stopText, onParams, onStopText }: Props) {
  return (
    <>
      <section className="panel">
        <h2>
          <label htmlFor="system-prompt">System prompt</label>
        </h2>
        <textarea
          id="system-prompt"
          rows={4}
          placeholder="You are a helpful assistant."
          value={systemPrompt}
          onChange={(e) => onSystemPrompt(e.target.value)}
          data-testid="system-prompt"
        />
      </section>
      <section className="panel">
        <h2>Parameters</h2>
        <div className="slider">
          <label htmlFor="temperature">Temperature</label>
          <output>{params.temperature.toFixed(2)}</output>
          <input
            id="temperature"
            type="range"
            min={0}
            max={2}
            step={0.05}
            value={params.temperature}
            onChange={(e) => onParams({ ...params, temperature: Number(e.target.value) })}
          />
        </div>
        <div className="slider">
          <label htmlFor="top-p">Top P</label>
          <output>{params.top_p.toFixed(2)}</output>
          <input
            id="top-p"
            type="range"
            min={0}
            max={1}
            step={0.01}
            value={params.top_p}
            onChange={(e) => onParams({ ...params, top_p: Number(e.target.value) })}
          />
        </div>
        <div className="field-row">
          <label>
            Max tokens
            <input
              type="number"
              min={1}
              placeholder="model default"
              value={params.max_tokens ?? ""}
              onChange={(e) => onParams({ ...params, max_tokens: optionalInt(e.target.value) })}
              data-testid="max-tokens"
            />
          </label>
          <label>
            Seed
            <input
              type="number"
              placeholder="random"
              value={params.seed ?? ""}
              onChange={(e) => onParams({ ...params, seed: optionalInt(e.target.value) })}
              data-testid="seed"
            />
          </label>
        </div>
        <label className="stack">
          Stop sequences
          <textarea
            rows={2}
            placeholder={"one per line, \\n for a newline"}
            value={stopText}
            onChange={(e) => onStopText(e.target.value)}
            data-testid="stop-sequences"
          />
        </label>
      </section>
    </>
  );
}
