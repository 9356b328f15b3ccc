// What the browser test files share: where the handler and Chromium are, starting the handler
// on a free port, launching Chromium the way this machine allows. Not a test file itself
// (node's runner picks `*.test.mjs`).

import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import { chromium } from "playwright-core";

export const HANDLER = process.env.UI_TEST_HANDLER ?? "target/debug/handler";
export const CHROMIUM = process.env.UI_TEST_CHROMIUM ?? "/usr/bin/chromium";
export const STORE = process.env.UI_TEST_STORE ?? "embedded";

export function freePort() {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, "127.0.0.1", () => { const { port } = server.address(); server.close(() => resolve(port)); });
  });
}

export async function waitFor(check, what, ms = 30_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    try { if (await check()) return; } catch { /* not yet */ }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => { setTimeout(r, 100); });
  }
}

/// The handler in local mode on a free port, with `settings` besides; its output goes to
/// `logFile`. `configure(base, env)` may add settings that need the address first.
export async function startHandler(settings, logFile, configure = async () => {}) {
  const port = await freePort();
  const base = `http://127.0.0.1:${port}`;
  const env = { ...process.env, PORT: String(port), RUST_LOG: "warn", ...settings };
  await configure(base, env);
  const log = fs.openSync(logFile, "w");
  const child = spawn(HANDLER, [], { env, stdio: ["ignore", log, log] });
  await waitFor(async () => (await fetch(`${base}/`)).ok, "the handler");
  return { child, base };
}

export function launchChromium() {
  return chromium.launch({
    executablePath: CHROMIUM,
    // As root on a machine with no outside network: no sandbox, and none of Chromium's
    // background calls home.
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
}
