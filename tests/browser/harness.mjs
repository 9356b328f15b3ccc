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

// axe-core (pinned in package.json), evaluated in the page through the debugging protocol, which
// the page's Content-Security-Policy does not govern (an injected <script> would be refused).
const AXE = fs.readFileSync(new URL("../../node_modules/axe-core/axe.min.js", import.meta.url), "utf8");

/// The page's accessibility violations of impact serious or critical, as `rule: target` lines.
export async function seriousViolations(page) {
  if (!(await page.evaluate(() => typeof window.axe !== "undefined"))) await page.evaluate(AXE);
  const violations = await page.evaluate(async () => {
    const result = await window.axe.run(document, { resultTypes: ["violations"] });
    return result.violations.map((v) => ({ id: v.id, impact: v.impact, help: v.help,
      targets: v.nodes.map((n) => n.target.join(" ")) }));
  });
  return violations.filter((v) => v.impact === "serious" || v.impact === "critical")
    .map((v) => `${v.id} (${v.impact}: ${v.help}) at ${v.targets.slice(0, 3).join(", ")}`);
}

/// How far the page scrolls sideways at its current width (0: not at all), and the elements
/// that reach past its right edge (the innermost few, to say what to fix).
export function sidewaysOverflow(page) {
  return page.evaluate(() => {
    const width = document.documentElement.clientWidth;
    const by = document.documentElement.scrollWidth - width;
    if (by <= 0) return { by: 0, culprits: [] };
    // Boxes that reach past the edge, and boxes whose own text spills out of them.
    const past = [...document.querySelectorAll("body *")].filter((e) => e.getBoundingClientRect().right > width + 0.5
      || (e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX === "visible" && e.clientWidth > 0));
    const innermost = past.filter((e) => !past.some((other) => other !== e && e.contains(other)));
    const name = (e) => `${e.tagName.toLowerCase()}${e.id ? `#${e.id}` : ""}${e.className && typeof e.className === "string" ? `.${e.className.split(" ").join(".")}` : ""}`;
    return { by, culprits: innermost.slice(0, 4).map((e) => `${name(e)} "${(e.textContent ?? "").trim().slice(0, 30)}"`) };
  });
}
