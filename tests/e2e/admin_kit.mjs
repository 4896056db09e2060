// What the admin console's drivers share: axe-core's serious findings and signing in.
import { readFileSync } from "node:fs";
import { frontendRequire } from "./chromium.mjs";

const AXE = readFileSync(frontendRequire.resolve("axe-core/axe.min.js"), "utf8");

/** axe-core's serious and critical violations on the page as it is now. Evaluated over
 * the DevTools protocol, which the page's CSP (script-src 'self') does not govern. */
export async function seriousViolations(page) {
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
