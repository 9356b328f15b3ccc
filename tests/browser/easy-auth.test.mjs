// The web page under App Service Authentication (Easy Auth): no token to type; the platform
// signs people in and passes who they are in X-MS-CLIENT-PRINCIPAL on every request that
// reaches the app. Here the browser context adds those headers as the platform would (the
// platform itself cannot run here), from the same fixtures the API tests use.
//
//   UI_TEST_HANDLER=target/debug/handler node --test tests/browser/

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { CHROMIUM, STORE, launchChromium, startHandler } from "./harness.mjs";
const FIXTURES = path.resolve("tests/fixtures/easy-auth");

// The sign-in flow does not depend on the store: it runs once, on the embedded store.
const missing = !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM} (apt-get install chromium)`
  : STORE !== "embedded" ? "the Easy Auth page runs on the embedded store only" : null;
if (missing && process.env.CI && STORE === "embedded") throw new Error(`browser tests cannot run: ${missing}`);
const uiTest = (name, fn) => test(`${name} [easy auth]`, { skip: missing ?? false, timeout: 120_000 }, fn);

let handler;
let base;
let browser;
let work;

/// The headers the platform would add for the person in `fixture`.
function platformHeaders(fixture) {
  const { headers, principal } = JSON.parse(fs.readFileSync(path.join(FIXTURES, `${fixture}.json`), "utf8"));
  return { ...headers, "X-MS-CLIENT-PRINCIPAL": Buffer.from(JSON.stringify(principal)).toString("base64") };
}

before(async () => {
  if (missing) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), "file-approver-ui-easy-"));
  ({ child: handler, base } = await startHandler({ FILE_APPROVER_EASY_AUTH: "true",
    FILE_APPROVER_STORAGE: "embedded", FILE_APPROVER_DATA_DIR: path.join(work, "data") },
  path.join(work, "handler.log")));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  handler?.kill("SIGTERM");
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

uiTest("without a sign-in the page sends people to the platform's sign-in, not a token form", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/api/ui/#/upload`);
  const link = page.getByRole("link", { name: "Sign in with your organisation account" });
  await link.waitFor();
  const href = await link.getAttribute("href");
  assert.ok(href.startsWith("/.auth/login/aad?post_login_redirect_uri="), href);
  assert.ok(decodeURIComponent(href).endsWith("/api/ui/#/upload"), "back where the person was");
  assert.equal(await page.getByLabel(/token/).count(), 0);
  await context.close();
});

uiTest("a signed-in reviewer sees the inbox and signs out through the platform", async () => {
  const context = await browser.newContext({ extraHTTPHeaders: platformHeaders("aad-reviewer") });
  const page = await context.newPage();
  await page.goto(`${base}/api/ui/`);
  // Greeted by name, with what they are.
  await page.locator("#who-name").getByText("dana@contoso.com").waitFor();
  await page.locator("#who").getByText("(reviewer)").waitFor();
  await page.locator("h1").getByText("Inbox").waitFor();
  assert.equal(await page.getByRole("link", { name: "Sign out" }).getAttribute("href"), "/.auth/logout");
  await context.close();
});

uiTest("a signed-in uploader without the reviewer role uploads and sees no decisions", async () => {
  const context = await browser.newContext({ extraHTTPHeaders: platformHeaders("aad-uploader") });
  const page = await context.newPage();
  await page.goto(`${base}/api/ui/`);
  await page.locator("#who-name").getByText("uma@contoso.com").waitFor();
  await page.locator("#who").getByText("(uploads only)").waitFor();
  // No inbox for someone who does not review: their own files, and what to do first.
  await page.locator("h1").getByText("My files").waitFor();
  await page.locator("#mine").getByText("You have not uploaded anything yet.").waitFor();
  await page.getByRole("link", { name: "Upload", exact: true }).click();
  const file = path.join(work, "from-easy-auth.txt");
  fs.writeFileSync(file, "signed in by the platform\n");
  await page.getByLabel("Choose a file").setInputFiles(file);
  await page.waitForURL(/#\/files\/[0-9a-f-]{36}$/);
  await page.locator("#facts").waitFor();
  assert.equal(await page.getByRole("button", { name: /Approve|Reject/ }).count(), 0);
  await page.locator("#history").getByText("uploaded by").waitFor();
  await context.close();
});
