// Builds the dashboard into the Python package so `pip install` / `make run` need no Node.
// index.html is served at "/" by shoal.dashboard; hashed assets under "/static/assets/" are cached forever.
import { defineConfig } from "vite";

export default defineConfig({
  base: "/static/",
  build: {
    outDir: "../src/shoal/dashboard/static",
    emptyOutDir: true,
    sourcemap: false,
    target: "es2022",
    modulePreload: { polyfill: false },
    reportCompressedSize: true,
  },
  server: {
    // `npm run dev` against a running `shoal serve` on :8080
    proxy: {
      "^/(v1|api|dashboard|search_payload|metrics|ready|health)": "http://127.0.0.1:8080",
      "/ws": { target: "ws://127.0.0.1:8080", ws: true },
    },
  },
});
