// What the admin console's drivers share: their options, axe-core's serious findings,
// signing in, the console's navigation and a chat request straight to the API.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { frontendRequire, root } from "./chromium.mjs";

/** A driver's options: --url and --key of the server (required), --out for screenshots,
 * --chromium, and `--model` when `needsModel`. */
export function driverOptions(needsModel = false) {
  const { values } = parseArgs({
    options: {
      url: { type: "string" },
      key: { type: "string" },
      model: { type: "string" },
      out: { type: "string", default: join(root, "tests/e2e/artifacts") },
      chromium: { type: "string", default: "/usr/bin/chromium" },
    },
  });
  if (!values.url || !values.key || (needsModel && !values.model)) throw new Error(`--url, --key${needsModel ? " and --model" : ""} are required`);
  return values;
}

const AXE = readFileSync(frontendRequire.resolve("axe-core/axe.min.js"), "utf8");

/** axe-core's serious and critical violations on the page with its colour transitions
 * run to their end: buttons fade their colours over 0.15 s, and a check run mid-fade
 * (right after a switch to the dark scheme) measured a contrast no one ever sees. Each is
 * finished at once (waiting on them hung when two browsers ran side by side). Evaluated
 * over the DevTools protocol, which the page's CSP (script-src 'self') does not govern. */
export async function seriousViolations(page) {
  await page.evaluate(() => {
    for (const running of document.getAnimations()) {
      if (running instanceof CSSTransition) running.finish();
    }
  });
  await page.evaluate(AXE);
  const found = await page.evaluate(async () => {
    const run = await window.axe.run(document, { resultTypes: ["violations"] });
    return run.violations.map((v) => ({ id: v.id, impact: v.impact, nodes: v.nodes.map((n) => n.target.join(" ")).slice(0, 5) }));
  });
  return found.filter((v) => v.impact === "serious" || v.impact === "critical");
}

/** Opens the console at `url` and signs in with the admin `key`; the keys table shows. */
export async function signIn(page, url, key, timeout, beforeSignIn = async () => {}) {
  await page.goto(`${url}/ui/admin`, { waitUntil: "networkidle", timeout });
  await page.getByTestId("admin-key-input").waitFor({ timeout });
  await beforeSignIn();
  await page.getByTestId("admin-key-input").fill(key);
  await page.getByTestId("sign-in").click();
  await page.getByTestId("keys-table").waitFor({ timeout });
}

/** Opens the console page `name` from the navigation and waits for it. */
export async function nav(page, name, timeout) {
  await page.getByTestId(`nav-${name}`).click();
  await page.getByTestId(`page-${name}`).waitFor({ timeout });
}

/** One short chat request with the key `secret`, straight to the API of `url`. */
export async function chat(url, secret, model, content) {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { Authorization: `Bearer ${secret}`, "Content-Type": "application/json" },
    body: JSON.stringify({ model, messages: [{ role: "user", content }], max_tokens: 4 }),
  });
  const body = await response.json();
  return { status: response.status, message: body.error?.message ?? null, tokens: body.usage?.total_tokens ?? null };
}
