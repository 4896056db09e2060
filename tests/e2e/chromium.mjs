// Headless Debian Chromium through playwright-core, as every e2e driver launches it.
import { createRequire } from "node:module";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

export const root = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
// playwright-core (and axe-core) are devDependencies of the frontend; resolve them from there.
export const frontendRequire = createRequire(join(root, "frontend/package.json"));

export function launchChromium(executablePath, timeout) {
  const { chromium } = frontendRequire("playwright-core");
  // launch() gives every run a fresh throwaway profile. Keep Chromium from phoning home or
  // updating itself: the test machine may be offline.
  return chromium.launch({
    executablePath,
    args: [
      "--headless",
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
    timeout,
  });
}
