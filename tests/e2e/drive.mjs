// Drives the playground in headless Debian Chromium through playwright-core.
//
//   node tests/e2e/drive.mjs --url http://127.0.0.1:8000 --key llms_... --out tests/e2e/artifacts
//
// Prints one JSON object with what it observed; exits non-zero with a message on the first
// failed expectation. pytest (test_playground.py) runs it and asserts on the JSON as well.
import { join } from "node:path";
import { parseArgs } from "node:util";
import { launchChromium, root } from "./chromium.mjs";

const { values: opts } = parseArgs({
  options: {
    url: { type: "string" },
    key: { type: "string" },
    // "full": paste --key and go through every feature. "operator-key": the server injects
    // the key through config.js (LLMSERVER_UI_KEY); --key is that key, never typed in.
    // "embeddings": paste --key and compare texts in the Embeddings tab.
    scenario: { type: "string", default: "full" },
    out: { type: "string", default: join(root, "tests/e2e/artifacts") },
    model: { type: "string" },
    prompt: { type: "string", default: "Tell me a story about a lighthouse keeper." },
    "max-tokens": { type: "string", default: "64" },
    chromium: { type: "string", default: "/usr/bin/chromium" },
  },
});
if (!opts.url || !opts.key) throw new Error("--url and --key are required");

function expect(condition, message) {
  if (!condition) throw new Error(`expectation failed: ${message}`);
}

// Generous: the demo model shares two cores with whatever else the test run is doing.
const TIMEOUT = 120_000;
const result = { console: [], screenshots: [] };
const browser = await launchChromium(opts.chromium, TIMEOUT);

async function shot(page, name) {
  const path = join(opts.out, `${name}.png`);
  await page.screenshot({ path, fullPage: false });
  result.screenshots.push(path);
}

/** The last assistant turn's reply length at every DOM change, recorded inside the page. */
async function watchReply(page) {
  await page.evaluate(() => {
    window.__replyLengths = [];
    const record = () => {
      const turns = document.querySelectorAll('[data-testid="assistant-turn"]');
      const turn = turns[turns.length - 1];
      if (!turn) return;
      const reply = turn.querySelector('[data-testid="reply"]');
      window.__replyLengths.push({ length: reply ? reply.textContent.length : 0, status: turn.dataset.status });
    };
    new MutationObserver(record).observe(document.body, { subtree: true, childList: true, characterData: true, attributes: true });
  });
}

async function lastTurnDone(page) {
  const turn = page.getByTestId("assistant-turn").last();
  await turn.and(page.locator('[data-status="done"], [data-status="stopped"], [data-status="error"]')).waitFor({ timeout: TIMEOUT });
  return turn;
}

async function operatorKeyScenario(page) {
  await page.getByTestId("key-status").getByText("provided by this server").waitFor({ timeout: TIMEOUT });
  await page.waitForFunction(() => document.querySelector('[data-testid="model-select"]')?.value, null, { timeout: TIMEOUT });
  await page.getByTestId("prompt").fill("Hello from the operator's key.");
  await page.getByTestId("send").click();
  const turn = await lastTurnDone(page);
  result.status = await turn.getAttribute("data-status");
  result.usage = await turn.getByTestId("usage").innerText();
  result.storageEmpty = await page.evaluate(() => sessionStorage.length === 0 && localStorage.length === 0);
  await shot(page, "06-operator-key");
}

/** A chat switched to the Messages API: the reply streams in through /v1/messages. */
async function messagesScenario(page, requests) {
  await page.getByTestId("api-key-input").fill(opts.key);
  await page.getByTestId("save-key").click();
  await page.waitForFunction(() => document.querySelector('[data-testid="model-select"]')?.value, null, { timeout: TIMEOUT });
  await page.getByTestId("api-select").selectOption("messages");
  await page.getByTestId("system-prompt").fill("You are a concise assistant.");
  await page.getByTestId("max-tokens").fill("24");
  await page.getByTestId("prompt").fill(opts.prompt);
  await page.getByTestId("send").click();
  const turn = await lastTurnDone(page);
  result.status = await turn.getAttribute("data-status");
  result.reply = await turn.getByTestId("reply").textContent();
  result.usage = await turn.getByTestId("usage").innerText();
  result.posted = requests.filter((r) => r.method === "POST").map((r) => new URL(r.url).pathname);
  await turn.getByTestId("show-curl").click();
  result.curl = await turn.getByTestId("curl").textContent();
  await shot(page, "08-messages-api");
}

/** /openapi with every request that leaves the server refused, as on a machine offline. */
async function openapiScenario(context, page) {
  const origin = new URL(opts.url).origin;
  result.refused = [];
  await context.route("**/*", (route) => {
    const url = route.request().url();
    if (new URL(url).origin === origin) return route.continue();
    result.refused.push(url);
    return route.abort("internetdisconnected");
  });
  await page.goto(`${opts.url}/openapi`, { waitUntil: "networkidle", timeout: TIMEOUT });
  const title = page.locator(".swagger-ui .info .title");
  await title.waitFor({ timeout: TIMEOUT });
  result.title = await title.innerText();
  result.paths = await page
    .locator(".opblock-summary-path")
    .evaluateAll((elements) => elements.map((el) => el.dataset.path));
  await shot(page, "07-openapi-offline");
}

try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, colorScheme: "light" });
  const page = await context.newPage();
  page.on("console", (msg) => result.console.push(`${msg.type()}: ${msg.text()}`));
  page.on("pageerror", (error) => result.console.push(`pageerror: ${error.message}`));
  const requests = [];
  page.on("request", (request) => requests.push(request.url()));
  const posts = [];
  page.on("request", (request) => posts.push({ method: request.method(), url: request.url() }));

  if (opts.scenario === "openapi") await openapiScenario(context, page);
  else {
    await page.goto(`${opts.url}/ui/`, { waitUntil: "networkidle", timeout: TIMEOUT });
    if (opts.scenario === "operator-key") await operatorKeyScenario(page);
    else if (opts.scenario === "embeddings") await embeddingsScenario(page);
    else if (opts.scenario === "messages") await messagesScenario(page, posts);
    else await fullScenario(context, page, requests);
  }
  await context.close();
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}

/** The Embeddings tab: the similarity of two different texts, then of a text with itself. */
async function embeddingsScenario(page) {
  await page.getByTestId("api-key-input").fill(opts.key);
  await page.getByTestId("save-key").click();
  await page.waitForFunction(() => document.querySelector('[data-testid="model-select"]')?.value, null, { timeout: TIMEOUT });
  result.chatModels = await page.getByTestId("model-select").locator("option").allTextContents();
  await page.getByTestId("tab-embeddings").click();
  const select = page.getByTestId("embedding-model");
  result.embeddingModels = await select.locator("option").allTextContents();
  result.chatHidden = await page.locator("main.chat").isHidden();
  const compare = async (first, second) => {
    await page.getByTestId("embedding-first").fill(first);
    await page.getByTestId("embedding-second").fill(second);
    await page.getByTestId("compare").click();
    await page.getByTestId("similarity").or(page.getByTestId("embedding-error")).waitFor({ timeout: TIMEOUT });
    await page.getByTestId("compare").getByText("Compare").waitFor({ timeout: TIMEOUT });
    return page.getByTestId("similarity").innerText();
  };
  result.different = await compare("The cat sat on the mat.", "Quarterly revenue grew by four percent.");
  await shot(page, "08-embeddings");
  result.same = await compare("The cat sat on the mat.", "The cat sat on the mat.");
}

async function fullScenario(context, page, requests) {
  await shot(page, "01-empty");

  // Enter the key; the model list loads with it.
  await page.getByTestId("api-key-input").fill(opts.key);
  await page.getByTestId("save-key").click();
  await page.getByTestId("key-status").getByText("Your key, this tab only").waitFor({ timeout: TIMEOUT });
  const select = page.getByTestId("model-select");
  await page.waitForFunction(() => {
    const el = document.querySelector('[data-testid="model-select"]');
    return el && !el.disabled && el.options.length > 0 && el.value !== "";
  }, null, { timeout: TIMEOUT });
  result.models = await select.locator("option").allTextContents();
  if (opts.model) await select.selectOption(opts.model);
  result.model = await select.inputValue();

  // Send a prompt and watch the reply grow. The demo model samples at random and, rarely,
  // ends a reply within a token or two (seen once: 6 characters in one update), which
  // cannot show growth: then it asks again in a new chat, three times at most.
  await page.getByTestId("system-prompt").fill("You are a concise assistant.");
  await page.getByTestId("max-tokens").fill(opts["max-tokens"]);
  await watchReply(page);
  let turn;
  for (let attempt = 1; ; attempt++) {
    if (attempt > 1) await page.getByTestId("reset").click();
    await page.getByTestId("prompt").fill(opts.prompt);
    await page.evaluate(() => { window.__replyLengths = []; });
    await page.getByTestId("send").click();
    turn = await lastTurnDone(page);
    result.lengths = await page.evaluate(() => window.__replyLengths);
    result.attempts = attempt;
    const grown = result.lengths.filter((o) => o.status === "streaming" && o.length > 0);
    if (new Set(grown.map((o) => o.length)).size >= 2 || attempt === 3) break;
  }
  result.status = await turn.getAttribute("data-status");
  result.reply = await turn.getByTestId("reply").textContent();
  result.usage = await turn.getByTestId("usage").innerText();
  expect(result.status === "done", `reply finished as ${result.status}`);

  // The curl command carries the variable, never the key.
  await turn.getByTestId("show-curl").click();
  result.curl = await turn.getByTestId("curl").textContent();
  await shot(page, "02-reply-desktop");

  // The key lives in sessionStorage, nowhere in the URL or console.
  result.sessionKeyStored = (await page.evaluate(() => sessionStorage.getItem("llmserver.apiKey"))) === opts.key;
  result.localStorageEmpty = (await page.evaluate(() => localStorage.length)) === 0;
  result.keyInUrl = [page.url(), ...requests].some((u) => u.includes(opts.key));
  result.keyInConsole = result.console.some((line) => line.includes(opts.key));

  // Stop: a long reply, cancelled after its first tokens. The download is throttled so the
  // reply is still streaming when Stop is clicked, however fast the model is.
  const cdp = await context.newCDPSession(page);
  await cdp.send("Network.enable");
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: 1500, uploadThroughput: -1,
  });
  // The demo model samples at random and, rarely, ends a reply after a few tokens: then the
  // Stop step has nothing to stop, so it asks again (each time in a new chat, so the long
  // reply fits the demo model's small context).
  let streamingTurn;
  for (let attempt = 1; ; attempt++) {
    await page.getByTestId("reset").click();
    await page.getByTestId("prompt").fill("Write a very long essay about the sea.");
    await page.getByTestId("max-tokens").fill("300");
    await page.getByTestId("send").click();
    streamingTurn = page.getByTestId("assistant-turn").last();
    await streamingTurn
      .getByTestId("reply").filter({ hasText: /\S/ })
      .or(streamingTurn.getByTestId("error"))
      .waitFor({ timeout: TIMEOUT });
    const streaming = await streamingTurn.getAttribute("data-status") === "streaming";
    if (streaming || attempt === 3) {
      expect(streaming, `long reply not streaming: ${await streamingTurn.innerText()}`);
      break;
    }
    await lastTurnDone(page);
  }
  await page.getByRole("button", { name: "Stop" }).click({ timeout: TIMEOUT });
  const stopped = await lastTurnDone(page);
  result.stopStatus = await stopped.getAttribute("data-status");
  result.stoppedReply = await stopped.getByTestId("reply").textContent();
  await cdp.send("Network.emulateNetworkConditions", {
    offline: false, latency: 0, downloadThroughput: -1, uploadThroughput: -1,
  });
  await page.getByTestId("max-tokens").fill("256");

  // Phone width, dark scheme.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.locator(".messages").evaluate((el) => el.scrollTo(0, el.scrollHeight));
  await shot(page, "03-phone-dark");
  await page.getByRole("button", { name: "Settings" }).click();
  await shot(page, "04-phone-settings");
  await page.getByRole("button", { name: "Done" }).click();

  // Reset clears the conversation.
  await page.getByTestId("reset").click();
  result.turnsAfterReset = await page.getByTestId("assistant-turn").count();

  // A bad key is explained as a 401.
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.emulateMedia({ colorScheme: "light" });
  await page.getByRole("button", { name: "Forget" }).click();
  await page.getByTestId("api-key-input").fill("llms_aaaaaaaaaaaa_notarealkey");
  await page.getByTestId("save-key").click();
  await page.getByTestId("models-error").waitFor({ timeout: TIMEOUT });
  result.badKeyError = await page.getByTestId("models-error").innerText();
  await shot(page, "05-bad-key");
}
