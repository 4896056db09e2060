import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import type { Plugin } from "vite";
import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// The server's /openapi page loads Swagger UI from /ui/swagger/, not from a public CDN, so the
// API docs render offline. The files are copied from the swagger-ui-dist package as they are.
const SWAGGER_FILES = [
  "swagger-ui-bundle.js",
  "swagger-ui-standalone-preset.js",
  "swagger-ui.css",
  "LICENSE",
];

function swaggerUi(): Plugin {
  const root = dirname(createRequire(import.meta.url).resolve("swagger-ui-dist/package.json"));
  return {
    name: "llmserver-swagger-ui",
    apply: "build",
    generateBundle() {
      for (const name of SWAGGER_FILES) {
        this.emitFile({
          type: "asset",
          fileName: `swagger/${name}`,
          source: readFileSync(join(root, name)),
        });
      }
    },
  };
}

// `npm run dev` proxies the API and the server-generated config.js to a running
// `llmserver serve`, so the dev page behaves like the one the app serves at /ui.
const server = process.env.LLMSERVER_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  base: "/ui/",
  plugins: [react(), swaggerUi()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: {
      "/v1": { target: server, changeOrigin: true },
      "/ui/config.js": { target: server, changeOrigin: true },
    },
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
