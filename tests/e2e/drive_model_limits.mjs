// Drives the admin console's per-model limits in headless Chromium: a key gets an RPM, a
// TPM and a monthly token quota of 1 on one model in its edit dialog, is refused on that
// model (429 naming it), gets a larger quota and is answered, sees the tokens counted in
// the keys table, and loses its model limits again.
//
//   node tests/e2e/drive_model_limits.mjs --url http://127.0.0.1:8000 --key llms_<admin> --model ID
//
// Prints one JSON object with what it observed; test_admin_model_limits.py asserts on it.
import { join } from "node:path";
import { chat as chatAs, driverOptions, seriousViolations, signIn } from "./admin_kit.mjs";
import { launchChromium } from "./chromium.mjs";

const opts = driverOptions(true);
const TIMEOUT = 120_000;
const result = { console: [], axe: {} };
const browser = await launchChromium(opts.chromium, TIMEOUT);

/** One chat request with the new key (the playground is not under test). */
const chat = (secret) => chatAs(opts.url, secret, opts.model, "per-model quota");

try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.on("pageerror", (error) => result.console.push(`pageerror: ${error.message}`));
  await signIn(page, opts.url, opts.key, TIMEOUT);

  await page.getByTestId("open-create").click();
  await page.getByTestId("create-name").fill("e2e per-model key");
  await page.getByTestId("create-key").click();
  const secret = (await page.getByTestId("new-secret").innerText()).trim();
  await page.getByTestId("secret-done").click();
  const row = page.locator(`[data-testid="key-row"][data-prefix="${secret.split("_")[1]}"]`);
  await row.waitFor({ timeout: TIMEOUT });
  result.before = await row.getByTestId("key-model-limits").innerText();

  async function edit(change) {
    await row.getByTestId("edit-key").click();
    const dialog = page.getByTestId("edit-dialog");
    await change(dialog);
    await page.getByTestId("save-edit").click();
    await dialog.waitFor({ state: "detached", timeout: TIMEOUT });
  }
  const limit = row.locator(`[data-testid="model-limit"][data-model="${opts.model}"]`);

  // An RPM, a TPM and a quota of 1 token on the model.
  await edit(async (dialog) => {
    await dialog.getByTestId("model-limit-add").click();
    await dialog.getByTestId("model-limit-model").fill(opts.model);
    await dialog.getByTestId("model-limit-rpm").fill("30");
    await dialog.getByTestId("model-limit-tpm").fill("5000");
    await dialog.getByTestId("model-limit-quota").fill("1");
    result.axe["keys-edit-model-limits"] = await seriousViolations(page);
  });
  await limit.waitFor({ timeout: TIMEOUT });
  result.shown = await limit.innerText();
  result.refused = await chat(secret);

  // Raised: the next request is answered and its tokens are counted under the quota.
  await edit(async (dialog) => {
    result.quotaInEditor = await dialog.getByTestId("model-limit-quota").inputValue();
    await dialog.getByTestId("model-limit-quota").fill("100000");
  });
  result.answered = await chat(secret);
  await page.getByTestId("key-search").fill("e2e per-model");
  await page
    .waitForFunction(
      ([model, used]) => document.querySelector(`[data-testid="model-limit"][data-model="${model}"]`)?.dataset.used === String(used),
      [opts.model, result.answered.tokens],
      { timeout: 20_000 },
    )
    .catch(() => {});
  result.counted = await limit.innerText();
  result.screenshot = join(opts.out, "admin-08-model-limits.png");
  await page.screenshot({ path: result.screenshot, fullPage: true });

  // Removed: the key has no model limits and the model answers.
  await edit(async (dialog) => {
    await dialog.getByTestId("model-limit-remove").click();
  });
  await page.waitForFunction((cell) => cell.innerText === "none", await row.getByTestId("key-model-limits").elementHandle(), { timeout: TIMEOUT }).catch(() => {});
  result.after = await row.getByTestId("key-model-limits").innerText();
  result.afterRemoval = await chat(secret);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
