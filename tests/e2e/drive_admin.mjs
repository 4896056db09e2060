// Drives the admin console (/ui/admin) and the playground together in headless Debian
// Chromium through playwright-core, as drive.mjs does for the playground alone.
//
//   node tests/e2e/drive_admin.mjs --url http://127.0.0.1:8000 --key llms_<admin> --out DIR
//
// Prints one JSON object with what it observed; exits non-zero with a message on the first
// failed expectation. pytest (test_admin_console.py) runs it and asserts on the JSON.
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { driverOptions, nav as navTo, seriousViolations, signIn } from "./admin_kit.mjs";
import { launchChromium } from "./chromium.mjs";

const opts = driverOptions();

function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

const TIMEOUT = 120_000;
// A prompt carrying markup: the logs page must show it as text, never run or render it.
const MARKUP = '<img src=x onerror="window.__injected=1"><b id="injected">bold</b> tell me a story';
const result = { console: [], screenshots: [], axe: {}, pages: {} };
const browser = await launchChromium(opts.chromium, TIMEOUT);

async function shot(page, name) {
  const path = join(opts.out, `${name}.png`);
  await page.screenshot({ path, fullPage: true });
  result.screenshots.push(path);
}

async function axe(page, name) {
  result.axe[name] = await seriousViolations(page);
}

const nav = (page, name) => navTo(page, name, TIMEOUT);

async function playgroundSend(play, prompt) {
  await play.getByTestId("prompt").fill(prompt);
  await play.getByTestId("send").click();
  const turn = play.getByTestId("assistant-turn").last();
  await turn.and(play.locator('[data-status="done"], [data-status="stopped"], [data-status="error"]')).waitFor({ timeout: TIMEOUT });
  const status = await turn.getAttribute("data-status");
  const error = status === "error" ? await turn.getByTestId("error").innerText() : null;
  return { status, error };
}

try {
  const context = await browser.newContext({ viewport: { width: 1360, height: 900 }, colorScheme: "light" });
  await context.grantPermissions(["clipboard-read", "clipboard-write"], { origin: new URL(opts.url).origin });
  const admin = await context.newPage();
  const urls = [];
  for (const page of [admin]) {
    page.on("console", (msg) => result.console.push(`${msg.type()}: ${msg.text()}`));
    page.on("pageerror", (error) => result.console.push(`pageerror: ${error.message}`));
    page.on("request", (request) => urls.push(request.url()));
  }

  // Sign in: the console's code loads only here.
  await signIn(admin, opts.url, opts.key, TIMEOUT, async () => {
    await axe(admin, "sign-in");
    await shot(admin, "admin-01-sign-in");
  });
  result.adminKeyStored = (await admin.evaluate(() => sessionStorage.getItem("llmserver.adminKey"))) === opts.key;

  // Create a key; its secret shows once.
  await admin.getByTestId("open-create").click();
  await admin.getByTestId("create-name").fill("e2e console key");
  await admin.getByTestId("create-budget").fill("5");
  await admin.getByTestId("create-window").selectOption("week");
  await admin.getByTestId("create-key").click();
  await admin.getByTestId("secret-once").waitFor({ timeout: TIMEOUT });
  const secret = (await admin.getByTestId("new-secret").innerText()).trim();
  expect(/^llms_[a-z0-9]{12}_/.test(secret), "a key was created and shown");
  await admin.getByTestId("copy-secret").click();
  await admin.getByTestId("copy-secret").getByText("Copied").waitFor({ timeout: 10_000 }).catch(() => {});
  result.copyLabel = await admin.getByTestId("copy-secret").innerText();
  result.clipboardHasSecret = (await admin.evaluate(() => navigator.clipboard.readText())) === secret;
  await axe(admin, "keys-with-secret");
  await admin.getByTestId("secret-done").click();
  result.secretGone = (await admin.getByTestId("secret-once").count()) === 0;
  const prefix = secret.split("_")[1];
  const row = admin.locator(`[data-testid="key-row"][data-prefix="${prefix}"]`);
  await row.waitFor({ timeout: TIMEOUT });
  const keyId = await row.getAttribute("data-key-id");
  result.keyId = keyId;
  result.prefix = prefix;
  await admin.getByTestId("key-search").fill("e2e console");
  await admin.waitForFunction(() => document.querySelectorAll('[data-testid="key-row"]').length === 1, null, { timeout: TIMEOUT });
  result.searchRows = await admin.getByTestId("key-row").evaluateAll((rows) => rows.map((r) => r.dataset.prefix));
  await admin.getByTestId("key-search").fill("");
  await admin.waitForFunction(() => document.querySelectorAll('[data-testid="key-row"]').length > 1, null, { timeout: TIMEOUT });
  await shot(admin, "admin-02-keys");

  // Use it from the playground.
  const play = await context.newPage();
  play.on("pageerror", (error) => result.console.push(`pageerror: ${error.message}`));
  await play.goto(`${opts.url}/ui/`, { waitUntil: "networkidle", timeout: TIMEOUT });
  await play.getByTestId("api-key-input").fill(secret);
  await play.getByTestId("save-key").click();
  await play.waitForFunction(() => document.querySelector('[data-testid="model-select"]')?.value, null, { timeout: TIMEOUT });
  await play.getByTestId("max-tokens").fill("8");
  result.firstSend = await playgroundSend(play, MARKUP);
  expect(result.firstSend.status === "done", `first reply: ${JSON.stringify(result.firstSend)}`);

  // Edit its RPM to 1: the next requests within the minute are refused with a 429.
  await admin.bringToFront();
  await row.getByTestId("edit-key").click();
  await admin.getByTestId("edit-rpm").fill("1");
  await axe(admin, "keys-edit");
  await admin.getByTestId("save-edit").click();
  await admin.getByTestId("edit-dialog").waitFor({ state: "detached", timeout: TIMEOUT });
  // The table reloads after the save: wait for the new limit rather than read the old one.
  await admin
    .waitForFunction((p) => document.querySelector(`[data-prefix="${p}"] [data-testid="key-rpm"]`)?.textContent === "1", prefix, { timeout: 10_000 })
    .catch(() => {});
  result.rpmShown = await row.getByTestId("key-rpm").innerText();
  // The reloaded row shows what the first reply spent of the key's budget.
  result.budgetSpent = await row.getByTestId("key-budget").getAttribute("data-spent");
  result.budgetShown = await row.getByTestId("key-budget").innerText();
  await play.bringToFront();
  const limited = [];
  for (let i = 0; i < 2; i++) limited.push(await playgroundSend(play, `Count to ${i + 3}.`));
  result.limited = limited;

  // Revoke it: the playground is refused with a 401.
  await admin.bringToFront();
  await row.getByTestId("revoke-key").click();
  await row.getByTestId("confirm-revoke").click();
  await admin.locator(`[data-testid="key-row"][data-prefix="${prefix}"][data-state="revoked"]`).waitFor({ timeout: TIMEOUT });
  await play.bringToFront();
  result.afterRevoke = await playgroundSend(play, "Still there?");
  await play.close();

  // Its requests in the logs, the markup prompt shown as text.
  await admin.bringToFront();
  await nav(admin, "logs");
  await admin.getByTestId("logs-key_id").fill(keyId);
  await admin.getByTestId("logs-apply").click();
  const deadline = Date.now() + 20_000;
  for (;;) {
    await admin.getByTestId("logs-table").waitFor({ timeout: TIMEOUT });
    result.logStatuses = await admin.getByTestId("log-row").evaluateAll((rows) => rows.map((r) => Number(r.dataset.status)));
    if (result.logStatuses.includes(429) || Date.now() > deadline) break;
    await admin.waitForTimeout(500); // rows are written behind; ask again
    await admin.getByTestId("logs-apply").click();
  }
  result.logCosts = await admin.getByTestId("log-cost").allInnerTexts();
  await admin.locator('[data-testid="log-row"][data-status="200"]').last().getByTestId("log-open").click();
  const body = admin.getByTestId("log-body");
  await body.waitFor({ timeout: TIMEOUT });
  result.logBodyText = await body.textContent();
  result.injectedElements = await admin.evaluate(() => document.querySelectorAll("#injected, .log-body img, .log-body b").length);
  result.injectedScript = await admin.evaluate(() => window.__injected ?? null);
  await axe(admin, "logs");
  await shot(admin, "admin-03-logs");

  // In the usage chart and its top-N table.
  await nav(admin, "usage");
  const top = admin.locator(`[data-testid="usage-top"] tr[data-group="${keyId}"]`);
  await top.waitFor({ timeout: TIMEOUT });
  result.usageRequests = Number(await top.getByTestId("top-requests").innerText());
  result.usageLabel = await top.locator("th").innerText();
  result.usageCost = await top.getByTestId("top-cost").innerText();
  result.chartBars = await admin.locator('[data-testid="usage-chart"] .recharts-bar-rectangle').count();
  result.chartLegend = await admin.locator('[data-testid="usage-chart"] .recharts-legend-item-text').allInnerTexts();
  const download = admin.waitForEvent("download", { timeout: TIMEOUT });
  await admin.getByTestId("usage-csv").click();
  const csv = await download;
  result.csvName = csv.suggestedFilename();
  result.csvHasKey = readFileSync(await csv.path(), "utf8").includes(keyId);
  await axe(admin, "usage");
  await shot(admin, "admin-04-usage");

  // The actions in the audit trail.
  await nav(admin, "audit");
  await admin.getByTestId("audit-target").fill(keyId);
  await admin.locator(`[data-testid="audit-row"][data-action="key.revoke"]`).waitFor({ timeout: TIMEOUT });
  result.auditActions = await admin.getByTestId("audit-row").evaluateAll((rows) => rows.map((r) => r.dataset.action));
  result.auditText = await admin.getByTestId("audit-table").innerText();
  await axe(admin, "audit");
  await shot(admin, "admin-05-audit");

  // Models, live.
  await nav(admin, "models");
  await admin.locator('[data-testid="model-row"][data-ready="true"]').first().waitFor({ timeout: TIMEOUT });
  result.models = await admin.getByTestId("model-row").count();
  await axe(admin, "models");
  await shot(admin, "admin-06-models");

  // Cache: purge every entry, audited.
  await nav(admin, "cache");
  await admin.getByTestId("cache-stats").waitFor({ timeout: TIMEOUT });
  result.cacheEntriesBefore = Number(await admin.getByTestId("cache-entries").innerText());
  await admin.getByTestId("purge-all").click();
  await admin.getByTestId("confirm-purge").click();
  await admin.getByTestId("purge-result").waitFor({ timeout: TIMEOUT });
  result.purgeResult = await admin.getByTestId("purge-result").innerText();
  result.cacheEntriesAfter = Number(await admin.getByTestId("cache-entries").innerText());
  await axe(admin, "cache");
  await shot(admin, "admin-07-cache");

  // Dark scheme, phone width: still usable.
  await admin.emulateMedia({ colorScheme: "dark" });
  await admin.setViewportSize({ width: 390, height: 844 });
  await nav(admin, "keys");
  await axe(admin, "keys-phone-dark");
  await admin.setViewportSize({ width: 1360, height: 900 });
  await admin.emulateMedia({ colorScheme: "light" });

  // Sign out forgets the key.
  await admin.getByTestId("sign-out").click();
  await admin.getByTestId("admin-key-input").waitFor({ timeout: TIMEOUT });
  result.storageAfterSignOut = await admin.evaluate(() => sessionStorage.getItem("llmserver.adminKey"));
  result.keyInUrl = [admin.url(), ...urls].some((u) => u.includes(opts.key) || u.includes(secret));
  result.keyInConsole = result.console.some((line) => line.includes(opts.key) || line.includes(secret));
  result.adminChunkOnPlayground = urls.some((u) => u.includes("/ui/admin") && u.includes("AdminApp"));
  await context.close();
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
