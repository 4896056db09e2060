// Drives the admin console's Teams page in headless Chromium: creates a team with every
// limit, sees the API's refusals in words (a taken name, a budget over the most), puts a
// new key in the team on the Keys page, sees the team's RPM refuse the key (429 naming the
// team), raises that RPM in the team's editor and sees the new limit enforced, then moves
// the key to another team and out of any. axe-core runs on each state of the page.
//
//   node tests/e2e/drive_teams.mjs --url http://127.0.0.1:8000 --key llms_<admin> --model ID
//
// Prints one JSON object with what it observed; test_admin_teams.py asserts on it.
import { join } from "node:path";
import { chat as chatAs, driverOptions, nav as navTo, seriousViolations, signIn } from "./admin_kit.mjs";
import { launchChromium } from "./chromium.mjs";

const opts = driverOptions(true);
const TIMEOUT = 120_000;
const TEAM = "e2e team";
const OTHER = "other team";
const result = { console: [], axe: {}, errors: {}, teamReads: { list: 0, listWithUsage: 0, one: 0 } };
const browser = await launchChromium(opts.chromium, TIMEOUT);

/** One chat request with the key (the playground is not under test). */
const chat = (secret) => chatAs(opts.url, secret, opts.model, "team limits");

try {
  const page = await browser.newPage({ viewport: { width: 1360, height: 900 } });
  page.on("pageerror", (error) => result.console.push(`pageerror: ${error.message}`));
  // How the page reads the teams: one listing with every team's usage, never a read per team.
  page.on("request", (request) => {
    const url = new URL(request.url());
    if (request.method() !== "GET" || !url.pathname.startsWith("/admin/teams")) return;
    if (url.pathname === "/admin/teams") {
      result.teamReads[url.searchParams.get("with_usage") === "true" ? "listWithUsage" : "list"] += 1;
    } else {
      result.teamReads.one += 1;
    }
  });
  await signIn(page, opts.url, opts.key, TIMEOUT);

  const nav = (name) => navTo(page, name, TIMEOUT);

  /** Submits with `button` and waits for the form's error to say something new. */
  async function refusal(scope, button) {
    const error = scope.getByTestId("form-error");
    const before = (await error.count()) ? await error.innerText() : null;
    await page.getByTestId(button).click();
    await page.waitForFunction(
      ([el, was]) => el.querySelector('[data-testid="form-error"]') && el.querySelector('[data-testid="form-error"]').innerText !== was,
      [await scope.elementHandle(), before],
      { timeout: TIMEOUT },
    );
    return error.innerText();
  }

  await nav("teams");
  await page.getByTestId("no-teams").waitFor({ timeout: TIMEOUT });
  result.axe["teams-empty"] = await seriousViolations(page);

  // A team with every limit.
  const create = page.locator("details.create-key");
  await page.getByTestId("open-create-team").click();
  await page.getByTestId("team-create-name").fill(TEAM);
  await page.getByTestId("team-create-rpm").fill("2");
  await page.getByTestId("team-create-quota").fill("1000000");
  await page.getByTestId("team-create-tpm").fill("100000");
  await page.getByTestId("team-create-parallel").fill("4");
  await page.getByTestId("team-create-budget").fill("5");
  await page.getByTestId("team-create-window").selectOption("week");
  await page.getByTestId("create-team").click();
  const team = page.locator(`[data-testid="team-row"][data-name="${TEAM}"]`);
  await team.waitFor({ timeout: TIMEOUT });
  result.created = {};
  for (const cell of ["members", "rpm", "quota", "tpm", "parallel", "budget"]) result.created[cell] = await team.getByTestId(`team-${cell}`).innerText();
  result.formCleared = (await page.getByTestId("team-create-name").inputValue()) === "";

  // Refusals, in words: the console's own check, then the API's.
  await page.getByTestId("team-create-name").fill(TEAM);
  result.errors.taken = await refusal(create, "create-team");
  result.axe["teams-create-error"] = await seriousViolations(page);
  await page.getByTestId("team-create-name").fill(OTHER);
  await page.getByTestId("team-create-rpm").fill("0");
  result.errors.rpm = await refusal(create, "create-team");
  await page.getByTestId("team-create-rpm").fill("");
  await page.getByTestId("team-create-budget").fill("2000000");
  result.errors.budget = await refusal(create, "create-team");
  await page.getByTestId("team-create-budget").fill("");
  await page.getByTestId("create-team").click();
  await page.locator(`[data-testid="team-row"][data-name="${OTHER}"]`).waitFor({ timeout: TIMEOUT });

  // A new key in the team.
  await nav("keys");
  await page.getByTestId("open-create").click();
  await page.getByTestId("create-name").fill("e2e team key");
  await page.getByTestId("create-key-team").selectOption({ label: TEAM });
  await page.getByTestId("create-key").click();
  const secret = (await page.getByTestId("new-secret").innerText()).trim();
  await page.getByTestId("secret-done").click();
  const key = page.locator(`[data-testid="key-row"][data-prefix="${secret.split("_")[1]}"]`);
  await key.waitFor({ timeout: TIMEOUT });
  result.keyTeam = await key.getByTestId("key-team").innerText();

  // The team's RPM of 2 refuses the third request of the minute.
  result.sent = [];
  for (let i = 0; i < 3; i++) result.sent.push(await chat(secret));

  await nav("teams");
  await page.waitForFunction(
    (name) => document.querySelector(`[data-testid="team-row"][data-name="${name}"] [data-testid="team-usage"]`)?.dataset.requests === "2",
    TEAM,
    { timeout: 20_000 },
  ).catch(() => {});
  result.usage = await team.getByTestId("team-usage").innerText();
  result.members = await team.getByTestId("team-members").innerText();
  result.spent = await team.getByTestId("team-budget").getAttribute("data-spent");
  result.budgetShown = await team.getByTestId("team-budget").innerText();
  result.axe["teams-list"] = await seriousViolations(page);
  result.screenshot = join(opts.out, "admin-09-teams.png");
  await page.screenshot({ path: result.screenshot, fullPage: true });

  // Its editor: a taken name is refused in words; an RPM of 3 is saved and enforced.
  await team.getByTestId("edit-team").click();
  const dialog = page.getByTestId("team-edit-dialog");
  result.rpmInEditor = await dialog.getByTestId("team-edit-rpm").inputValue();
  result.windowInEditor = await dialog.getByTestId("team-edit-window").inputValue();
  await dialog.getByTestId("team-edit-name").fill(OTHER);
  result.errors.rename = await refusal(dialog, "save-team-edit");
  result.axe["teams-edit"] = await seriousViolations(page);
  await dialog.getByTestId("team-edit-name").fill(TEAM);
  await dialog.getByTestId("team-edit-rpm").fill("3");
  await page.getByTestId("save-team-edit").click();
  await dialog.waitFor({ state: "detached", timeout: TIMEOUT });
  await page.waitForFunction((cell) => cell.innerText === "3", await team.getByTestId("team-rpm").elementHandle(), { timeout: TIMEOUT }).catch(() => {});
  result.rpmShown = await team.getByTestId("team-rpm").innerText();
  // Admitted until the window holds 3 (fewer if the first two have left it), then refused.
  result.afterEdit = [];
  for (let i = 0; i < 5; i++) {
    const answer = await chat(secret);
    result.afterEdit.push(answer);
    if (answer.status !== 200) break;
  }

  // The key moves to the other team (no limits: answered), then out of any.
  await nav("keys");
  async function moveKey(label) {
    await key.getByTestId("edit-key").click();
    await page.getByTestId("edit-key-team").selectOption({ label });
    await page.getByTestId("save-edit").click();
    await page.getByTestId("edit-dialog").waitFor({ state: "detached", timeout: TIMEOUT });
    await page.waitForFunction(([cell, want]) => cell.innerText === want, [await key.getByTestId("key-team").elementHandle(), label], { timeout: TIMEOUT }).catch(() => {});
    return key.getByTestId("key-team").innerText();
  }
  result.movedTo = await moveKey(OTHER);
  result.afterMove = await chat(secret);
  result.clearedTo = await moveKey("none");
  const audit = await fetch(`${opts.url}/admin/audit?action=key.update&target=${await key.getAttribute("data-key-id")}`, {
    headers: { Authorization: `Bearer ${opts.key}` },
  });
  result.keyAudit = (await audit.json()).data.map((entry) => entry.after);

  // Dark scheme, phone width.
  await nav("teams");
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 390, height: 844 });
  await team.waitFor({ timeout: TIMEOUT });
  result.axe["teams-phone-dark"] = await seriousViolations(page);
  console.log(JSON.stringify(result));
} finally {
  await browser.close();
}
