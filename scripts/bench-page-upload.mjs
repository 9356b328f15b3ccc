// How fast the reviewers' page sends a large file, with one block in flight against four:
// the figure behind the page's BLOCKS_IN_FLIGHT. Headless Chromium (as the browser tests run
// it) uploads the same 300 MB file through the page to the release handler, alternating the two
// settings, three runs each; the page's app.js is served with the setting replaced, so the
// product carries no switch for it. Embedded store always; Azurite too when
// UI_TEST_AZURE_STORAGE is set (scripts/test sets it; Azurite must run with
// --skipApiVersionCheck and allow the page's origin by CORS, which this script sets).
//
//   cargo build --release --bin handler
//   UI_TEST_HANDLER=target/release/handler node scripts/bench-page-upload.mjs

import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { launchChromium, startHandler } from "../tests/browser/harness.mjs";

const SIZE = 300 * 1000 * 1000;
const RUNS = 3;
const TOKEN = "uma-token-0123456789abcd";

const work = fs.mkdtempSync(path.join(os.tmpdir(), "page-upload-bench-"));
const big = path.join(work, "bench.bin");
{
  const fd = fs.openSync(big, "w");
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i += 1) chunk[i] = (i * 2654435761) >>> 24;
  for (let written = 0; written < SIZE; written += chunk.length) fs.writeSync(fd, chunk, 0, Math.min(chunk.length, SIZE - written));
  fs.closeSync(fd);
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function measure(store, settings, configure) {
  const { child, base } = await startHandler({ FILE_APPROVER_UPLOADERS: `uma:${TOKEN}`, FILE_APPROVER_REVIEWERS: "alice:alice-token-0123456789", ...settings },
    path.join(work, `${store}.log`), configure);
  const browser = await launchChromium();
  const times = { 1: [], 4: [] };
  try {
    for (let run = 0; run < RUNS; run += 1) {
      for (const inFlight of [1, 4]) {
        const context = await browser.newContext();
        const page = await context.newPage();
        await page.route("**/api/ui/app.js", async (route) => {
          const response = await route.fetch();
          const body = (await response.text()).replace(/const BLOCKS_IN_FLIGHT = \d+;/, `const BLOCKS_IN_FLIGHT = ${inFlight};`);
          await route.fulfill({ response, body });
        });
        await page.goto(`${base}/api/ui/`);
        await page.getByLabel("Your reviewer or uploader token").fill(TOKEN);
        await page.getByRole("button", { name: "Sign in" }).click();
        await page.locator("#who-name").waitFor();
        await page.getByRole("link", { name: "Upload", exact: true }).click();
        const started = performance.now();
        await page.getByLabel("Choose a file").setInputFiles(big);
        await page.waitForURL(/#\/files\//, { timeout: 600_000 });
        times[inFlight].push((performance.now() - started) / 1000);
        await context.close();
      }
    }
  } finally {
    await browser.close();
    child.kill("SIGTERM");
  }
  const mibs = (secs) => SIZE / 1048576 / secs;
  const one = median(times[1]);
  const four = median(times[4]);
  console.log(`${store}: 1 block in flight ${mibs(one).toFixed(0)} MiB/s (median of ${RUNS}, [${times[1].map((t) => mibs(t).toFixed(0)).join(", ")}]); `
    + `4 in flight ${mibs(four).toFixed(0)} MiB/s ([${times[4].map((t) => mibs(t).toFixed(0)).join(", ")}]); ratio ${(one / four).toFixed(2)}×`);
}

try {
  await measure("embedded", { FILE_APPROVER_STORAGE: "embedded", FILE_APPROVER_DATA_DIR: path.join(work, "data") });
  if (process.env.UI_TEST_AZURE_STORAGE) {
    await measure("Azurite", { FILE_APPROVER_STORAGE: "azure", AzureWebJobsStorage: process.env.UI_TEST_AZURE_STORAGE }, async (origin) => {
      const { BlobServiceClient } = await import("@azure/storage-blob");
      await BlobServiceClient.fromConnectionString(process.env.UI_TEST_AZURE_STORAGE).setProperties({
        cors: [{ allowedOrigins: origin, allowedMethods: "GET,PUT,OPTIONS", allowedHeaders: "*", exposedHeaders: "*", maxAgeInSeconds: 600 }],
      });
    });
  }
} finally {
  fs.rmSync(work, { recursive: true, force: true });
}
