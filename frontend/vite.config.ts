import { defineConfig } from "vitest/config";
import react from "@vitejs/plugin-react";

// `npm run dev` proxies the API and the server-generated config.js to a running
// `llmserver serve`, so the dev page behaves like the one the app serves at /ui.
const server = process.env.LLMSERVER_URL ?? "http://127.0.0.1:8000";

export default defineConfig({
  base: "/ui/",
  plugins: [react()],
  build: { outDir: "dist", emptyOutDir: true, sourcemap: false },
  server: {
    proxy: {
      "/v1": { target: server, changeOrigin: true },
      "/ui/config.js": { target: server, changeOrigin: true },
    },
  },
  test: { include: ["src/**/*.test.ts"], environment: "node" },
});
