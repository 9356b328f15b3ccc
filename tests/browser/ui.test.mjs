// The reviewers' web page in a real browser: Debian's Chromium, headless, driven by
// playwright-core (pinned in package.json), against the real handler on the store named by
// UI_TEST_STORE (embedded, or azure with UI_TEST_AZURE_STORAGE). scripts/test runs this file
// once per store; each page is saved as a screenshot under UI_TEST_SCREENSHOTS.
//
//   UI_TEST_HANDLER=target/debug/handler UI_TEST_STORE=embedded node --test tests/browser/

import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { CHROMIUM, STORE, launchChromium, seriousViolations, sidewaysOverflow, startHandler, waitFor } from "./harness.mjs";

const SHOTS = path.resolve(process.env.UI_TEST_SCREENSHOTS ?? "target/ui-screenshots", STORE);
const ALICE = "alice-token-0123456789";
const BOB = "bob-token-0123456789abc";
const CAROL = "carol-token-0123456789ab";
const UPLOADER = "uma-token-0123456789abcd";

// Without a browser nothing here can run: skipped, and said so, except in CI, where it fails.
const missing = !fs.existsSync(CHROMIUM)
  ? `no Chromium at ${CHROMIUM} (apt-get install chromium)`
  : STORE === "azure" && !process.env.UI_TEST_AZURE_STORAGE ? "UI_TEST_AZURE_STORAGE is not set" : null;
if (missing && process.env.CI) throw new Error(`browser tests cannot run: ${missing}`);
// A failing test leaves a screenshot of every open page behind, named after the test.
const uiTest = (name, fn) => test(`${name} [${STORE}]`, { skip: missing ?? false, timeout: 240_000 }, async () => {
  try {
    await fn();
  } catch (error) {
    let n = 0;
    for (const context of browser?.contexts() ?? []) {
      for (const page of context.pages()) {
        n += 1;
        await page.screenshot({ path: path.join(SHOTS, `FAILED-${name.slice(0, 40).replace(/\W+/g, "-")}-${n}.png`), fullPage: true }).catch(() => {});
      }
    }
    throw error;
  }
});

let handler;
let base;
let browser;
let work;

// Blob Storage refuses a page's cross-origin PUTs unless the account's CORS rules allow them,
// as an operator sets them for a real account (README: "The web page").
async function allowPageOrigin(connectionString, origin) {
  const { BlobServiceClient } = await import("@azure/storage-blob");
  const service = BlobServiceClient.fromConnectionString(connectionString);
  await service.setProperties({
    cors: [{ allowedOrigins: origin, allowedMethods: "GET,PUT,OPTIONS", allowedHeaders: "*",
      exposedHeaders: "*", maxAgeInSeconds: 600 }],
  });
}

before(async () => {
  if (missing) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), "file-approver-ui-"));
  fs.mkdirSync(SHOTS, { recursive: true });
  const settings = {
    FILE_APPROVER_REVIEWERS: `alice:${ALICE},bob:${BOB},carol:${CAROL}`,
    FILE_APPROVER_UPLOADERS: `uma:${UPLOADER}`,
    ...(STORE === "azure"
      ? { FILE_APPROVER_STORAGE: "azure", AzureWebJobsStorage: process.env.UI_TEST_AZURE_STORAGE }
      : { FILE_APPROVER_STORAGE: "embedded", FILE_APPROVER_DATA_DIR: path.join(work, "data") }),
  };
  ({ child: handler, base } = await startHandler(settings, path.join(work, "handler.log"), async (address) => {
    if (STORE === "azure") await allowPageOrigin(process.env.UI_TEST_AZURE_STORAGE, address);
  }));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  if (handler) {
    handler.kill("SIGTERM");
    if (process.exitCode && work) process.stderr.write(fs.readFileSync(path.join(work, "handler.log"), "utf8").slice(-4000));
  }
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

// One person in one tab: their token is kept by the tab, as the page keeps it.
async function personWith(token) {
  const context = await browser.newContext({ acceptDownloads: true, viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => { throw e; });
  await page.goto(`${base}/api/ui/`);
  await page.getByLabel("Your reviewer or uploader token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who").getByText("Signed in").waitFor();
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(SHOTS, `${name}.png`), fullPage: true });
}

function writeFile(name, contents) {
  const file = path.join(work, name);
  fs.writeFileSync(file, contents);
  return file;
}

async function uploadThroughPage(page, file) {
  await page.getByRole("link", { name: "Upload", exact: true }).click();
  await page.getByLabel("Choose a file").setInputFiles(file);
  await page.waitForURL(/#\/files\/[0-9a-f-]{36}$/, { timeout: 180_000 });
  return page.url().split("#/files/")[1];
}

async function openFile(page, id) {
  // By way of the inbox: a page already showing the file would not load it again.
  await page.goto(`${base}/api/ui/#/`);
  await page.locator("h1").getByText(/Inbox|My files/).waitFor();
  await page.goto(`${base}/api/ui/#/files/${id}`);
  await page.locator("#facts").waitFor();
}

// The inbox lists oldest first, 50 at a time; on a store shared with other suites the file
// may be pages down.
async function findInInbox(page, id) {
  const link = page.locator(`a[href="#/files/${id}"]`);
  await page.locator("h1").getByText("Inbox").waitFor();
  // Not by role: a hidden button has none, and the last page hides it.
  const more = page.locator("button", { hasText: "More" }).first();
  for (let pages = 0; pages < 200; pages += 1) {
    await waitFor(async () => !(await more.isDisabled()), "a page of the inbox");
    if (await link.count() > 0) return;
    if (!(await more.isVisible())) break;
    await more.click();
  }
  assert.fail(`file ${id} is not in the inbox`);
}

async function decide(page, verb, stage, comment) {
  if (comment) await page.getByLabel(/^Comment/).fill(comment);
  await page.getByRole("button", { name: `${verb} ${stage}` }).click();
}

const stageShown = (page, words) => page.locator("#facts .stage").getByText(words, { exact: true }).waitFor({ timeout: 60_000 });

uiTest("a file goes from upload through both approvals to a download of the same bytes", async () => {
  const bytes = Buffer.from("quarterly numbers\nrevenue 12\ncosts 7\n");
  const alice = await personWith(ALICE);
  await shot(alice.page, "inbox");
  const id = await uploadThroughPage(alice.page, writeFile("numbers.txt", bytes));
  await stageShown(alice.page, "Awaiting upload approval");
  await alice.page.locator("#preview pre").getByText("revenue 12").waitFor();

  // Four eyes: the uploader is not offered the approval of her own upload, and the page says
  // why before any click; she may still stop it.
  await alice.page.locator("#decision-withheld").getByText("uploaded this file, so cannot approve it").waitFor();
  assert.equal(await alice.page.getByRole("button", { name: "Approve upload" }).count(), 0);
  assert.equal(await alice.page.getByRole("button", { name: "Reject upload" }).count(), 1);
  await shot(alice.page, "refused-four-eyes");

  const bob = await personWith(BOB);
  await findInInbox(bob.page, id);
  await shot(bob.page, "inbox-awaiting");
  await openFile(bob.page, id);
  await shot(bob.page, "file-awaiting-upload-approval");
  await decide(bob.page, "Approve", "upload", "fine to analyse");
  // The analysis is shown as soon as it is done, and the confirmation outlasts the redraws.
  await stageShown(bob.page, "Awaiting download approval");
  await bob.page.getByRole("status").getByText("Approved.", { exact: true }).waitFor();
  await bob.page.locator("#analysis").getByText("text/plain").first().waitFor();
  const sha = createHash("sha256").update(bytes).digest("hex");
  await bob.page.locator("#analysis").getByText(sha).waitFor();
  // Bob approved the upload, so the download needs someone else: not offered, said why.
  await bob.page.locator("#decision-withheld").getByText("someone else must approve the download").waitFor();
  assert.equal(await bob.page.getByRole("button", { name: "Approve download" }).count(), 0);

  const carol = await personWith(CAROL);
  await openFile(carol.page, id);
  await shot(carol.page, "file-analysed");
  await decide(carol.page, "Approve", "download", "ok to share");
  await stageShown(carol.page, "Approved");
  await shot(carol.page, "file-approved");

  await openFile(alice.page, id);
  const [download] = await Promise.all([
    alice.page.waitForEvent("download"),
    alice.page.getByRole("button", { name: "Download" }).click(),
  ]);
  const saved = path.join(work, "downloaded.txt");
  await download.saveAs(saved);
  assert.deepEqual(fs.readFileSync(saved), bytes);
  assert.equal(download.suggestedFilename(), "numbers.txt");
  await alice.page.locator("#history").getByText("ok to share").waitFor();

  // The fetch is counted and in the history; then a reviewer takes the approval back, with a
  // reason, and the page says so first.
  await openFile(alice.page, id);
  await alice.page.locator("#facts").getByText("1 time").waitFor();
  await alice.page.locator("#history").getByText(/downloaded — 37 bytes \(127.0.0.1/).waitFor();
  await alice.page.getByRole("button", { name: "Revoke approval" }).click();
  await alice.page.getByRole("alert").getByText("a reason is required").waitFor();
  await alice.page.getByLabel(/^Reason/).fill("shared with the wrong team");
  await alice.page.getByRole("button", { name: "Revoke approval" }).click();
  await stageShown(alice.page, "Revoked after approval");
  await alice.page.locator("#outcome").getByText(/Approval revoked by alice .*shared with the wrong team/).waitFor();
  assert.equal(await alice.page.getByRole("button", { name: "Download" }).count(), 0);
  await shot(alice.page, "file-revoked");
  for (const p of [alice, bob, carol]) await p.context.close();
});

uiTest("an uploader is offered only what she may do, and withdraws her file", async () => {
  const uma = await personWith(UPLOADER);
  await uploadThroughPage(uma.page, writeFile("draft.txt", "a draft\n"));
  await stageShown(uma.page, "Awaiting upload approval");
  // Not a reviewer: no decision, no note; what she may do is take the file back.
  for (const name of ["Approve upload", "Reject upload", "Request changes", "Add private note"]) {
    assert.equal(await uma.page.getByRole("button", { name }).count(), 0, `${name} is not offered`);
  }
  await uma.page.locator("#decision-withheld").getByText("may upload but not review").waitFor();
  await uma.page.getByLabel(/^Why/).fill("sent the wrong draft");
  await uma.page.getByRole("button", { name: "Withdraw the file" }).click();
  await stageShown(uma.page, "Withdrawn");
  await uma.page.locator("#outcome").getByText("Withdrawn by its uploader").waitFor();
  await uma.page.getByRole("status").getByText("Withdrawn: the review has ended.").waitFor();
  await uma.page.locator("#history").getByText("sent the wrong draft").waitFor();
  assert.equal(await uma.page.getByRole("button", { name: "Withdraw the file" }).count(), 0);
  await shot(uma.page, "file-withdrawn");
  await uma.context.close();
});

// The API as a client would call it, as the holder of `token`.
async function apiAs(token, path, { method = "GET", body, type } = {}) {
  const headers = { Authorization: `Bearer ${token}` };
  if (type) headers["Content-Type"] = type;
  const response = await fetch(`${base}${path}`, { method, headers,
    body: body === undefined ? undefined : (type === "application/json" ? JSON.stringify(body) : body) });
  assert.ok(response.ok, `${method} ${path}: ${response.status} ${await response.clone().text()}`);
  return response.json();
}

async function untilStage(id, stage) {
  await waitFor(async () => (await apiAs(ALICE, `/api/files/${id}`)).stage === stage, `file ${id} to be ${stage}`, 60_000);
}

// A file by uma, taken to `stage` through the API.
async function fileAt(stage, name) {
  const { id } = await apiAs(UPLOADER, `/api/files?name=${name}`, { method: "POST", type: "text/plain",
    // Long enough for its preview to scroll inside its box.
    body: Array.from({ length: 80 }, (_, i) => `line ${i + 1} of the board pack, with totals`).join("\n") });
  await untilStage(id, "AwaitingUploadApproval");
  const decide = (token, on, body) => apiAs(token, `/api/files/${id}/approvals/${on}`, { method: "POST", type: "application/json", body });
  if (stage === "Rejected") await decide(ALICE, "upload", { decision: "reject", comment: "wrong quarter" });
  if (stage === "ChangesRequested" || stage === "SecondVersion") {
    await decide(ALICE, "upload", { decision: "requestChanges", comment: "add the totals" });
  }
  if (stage === "SecondVersion") {
    await untilStage(id, "ChangesRequested");
    await apiAs(UPLOADER, `/api/files/${id}/versions`, { method: "POST", type: "text/plain",
      body: Array.from({ length: 80 }, (_, i) => `line ${i + 1} of the board pack, with the totals fixed`).join("\n") });
    await untilStage(id, "AwaitingUploadApproval");
    return id;
  }
  if (stage === "AwaitingDownloadApproval" || stage === "Approved") {
    await decide(ALICE, "upload", { decision: "approve" });
    await untilStage(id, "AwaitingDownloadApproval");
  }
  if (stage === "Approved") await decide(BOB, "download", { decision: "approve", comment: "fine to share" });
  await untilStage(id, stage);
  return id;
}

uiTest("a decision on a version replaced meanwhile is refused in words and the new version shown", async () => {
  const id = await fileAt("SecondVersion", "replaced-while-open.txt");
  const alice = await personWith(ALICE);
  await alice.page.goto(`${base}/api/ui/#/files/${id}`);
  await alice.page.locator("#versions").getByText("2 (current)").waitFor();
  // While Alice looks at version 2, Bob sends it back and its uploader sends version 3.
  await apiAs(BOB, `/api/files/${id}/approvals/upload`, { method: "POST", type: "application/json",
    body: { decision: "requestChanges", comment: "one more table" } });
  await untilStage(id, "ChangesRequested");
  await apiAs(UPLOADER, `/api/files/${id}/versions`, { method: "POST", type: "text/plain", body: "version three\n" });
  await untilStage(id, "AwaitingUploadApproval");

  await alice.page.getByRole("button", { name: "Approve upload" }).click();
  await alice.page.getByRole("alert").getByText("A new version arrived while you were deciding on version 2").waitFor();
  await alice.page.locator("#versions").getByText("3 (current)").waitFor();
  const status = await apiAs(ALICE, `/api/files/${id}`);
  assert.equal(status.version, 3);
  assert.deepEqual(status.approvals, []);
  await alice.context.close();
});

uiTest("every view fits every width from 320 px and has no serious accessibility violation", async () => {
  const files = {};
  for (const stage of ["AwaitingUploadApproval", "AwaitingDownloadApproval", "Approved", "Rejected", "ChangesRequested", "SecondVersion"]) {
    files[stage] = await fileAt(stage, `board-pack-with-a-long-name-${stage}.txt`);
  }
  const alice = await personWith(ALICE);
  const uma = await personWith(UPLOADER);
  const nobody = await browser.newContext();
  const signIn = await nobody.newPage();
  await signIn.goto(`${base}/api/ui/`);
  await signIn.getByLabel("Your reviewer or uploader token").waitFor();
  const views = [
    ["inbox", alice.page, `${base}/api/ui/#/`, "#awaiting"],
    ["my-files", uma.page, `${base}/api/ui/#/`, "#mine"],
    ["upload", alice.page, `${base}/api/ui/#/upload`, "#drop"],
    ["sign-in", signIn, `${base}/api/ui/`, "form.signin"],
    ...Object.entries(files).map(([stage, id]) => [`file-${stage}`, alice.page, `${base}/api/ui/#/files/${id}`, "#history"]),
    ["file-uploader-view", uma.page, `${base}/api/ui/#/files/${files.ChangesRequested}`, "#history"],
  ];
  const problems = [];
  for (const [name, page, url, ready] of views) {
    // Through another route first, so the view is drawn afresh.
    if (name !== "sign-in") {
      await page.goto(`${base}/api/ui/#/blank`);
      await page.locator("h1").getByText(/^(Inbox|My files)$/).waitFor();
    }
    await page.goto(url);
    await page.locator(ready).first().waitFor();
    // The evidence before the decision: the decision area comes after the analysis, the
    // preview and the history in document order.
    if (await page.locator("#decide-title").count()) {
      const after = await page.evaluate(() => ["#analysis", "#preview", "#history"].map((s) => {
        const evidence = document.querySelector(s);
        const decision = document.querySelector("#decide-title");
        return [s, evidence ? !!(evidence.compareDocumentPosition(decision) & Node.DOCUMENT_POSITION_FOLLOWING) : null];
      }));
      for (const [what, ok] of after) if (ok === false) problems.push(`${name}: the decision is not after ${what}`);
      // Before its analysis runs a file has none; once it waits for the download, it must.
      if (name === "file-AwaitingDownloadApproval" && after[0][1] === null) problems.push(`${name}: no analysis shown`);
    }
    for (const width of [320, 390, 768, 1280]) {
      await page.setViewportSize({ width, height: 900 });
      const overflow = await sidewaysOverflow(page);
      if (overflow.by > 0) problems.push(`${name} at ${width} px scrolls ${overflow.by} px sideways: ${overflow.culprits.join("; ")}`);
      if (width === 390 || width === 1280) {
        for (const v of await seriousViolations(page)) problems.push(`${name} at ${width} px: ${v}`);
        await shot(page, `view-${name}-${width}`);
      }
    }
  }
  assert.deepEqual(problems, []);
  await alice.context.close();
  await uma.context.close();
  await nobody.close();
});

uiTest("a lost connection keeps the view, says so and recovers by itself", async () => {
  const id = await fileAt("AwaitingUploadApproval", "offline.txt");
  const alice = await personWith(ALICE);
  await openFile(alice.page, id);
  await alice.context.setOffline(true);
  await alice.page.getByRole("link", { name: "Inbox", exact: true }).click();
  const banner = alice.page.locator("#connection");
  await banner.getByText("The connection dropped").waitFor();
  await banner.getByRole("button", { name: "Retry now" }).waitFor();
  // What the reader was looking at stays.
  await alice.page.locator("#facts").waitFor();
  await shot(alice.page, "connection-lost");
  await alice.context.setOffline(false);
  // Back by itself, without a click.
  await alice.page.locator("h1").getByText("Inbox").waitFor({ timeout: 30_000 });
  await waitFor(async () => await banner.isHidden(), "the banner to go");
  await alice.context.close();
});

uiTest("a rejection ends the file and its comment is in the history", async () => {
  const uma = await personWith(UPLOADER);
  const id = await uploadThroughPage(uma.page, writeFile("draft.txt", "not ready\n"));
  const bob = await personWith(BOB);
  await openFile(bob.page, id);
  await decide(bob.page, "Reject", "upload", "contains personal data");
  await stageShown(bob.page, "Rejected");
  // How it ended comes first, in words, with the reason; the evidence it never got says so.
  await bob.page.locator("#outcome").getByText(/^Rejected by bob on .*“contains personal data”/).waitFor();
  await bob.page.getByText("No analysis: the file ended before it was analysed.").waitFor();
  await bob.page.locator("#history").getByText("contains personal data").waitFor();
  await shot(bob.page, "file-rejected");
  // The uploader sees it too, and no decision or download is offered.
  await openFile(uma.page, id);
  await stageShown(uma.page, "Rejected");
  assert.equal(await uma.page.getByRole("button", { name: /Approve|Download/ }).count(), 0);
  await bob.context.close();
  await uma.context.close();
});

uiTest("a reviewer asks for changes, the uploader sends a new version, and its review starts again", async () => {
  // An earlier file of hers, for the related files (whatever ran before this test).
  await apiAs(UPLOADER, "/api/files?name=earlier.txt", { method: "POST", type: "text/plain", body: "an earlier file\n" });
  const uma = await personWith(UPLOADER);
  const id = await uploadThroughPage(uma.page, writeFile("budget.txt", "budget\ntotal 10\n"));
  const bob = await personWith(BOB);
  await openFile(bob.page, id);
  // A change request needs a reason, said before anything is sent.
  await bob.page.getByRole("button", { name: "Request changes" }).click();
  await bob.page.getByRole("alert").getByText("a reason is required").waitFor();
  await decide(bob.page, "Request", "changes", "the total is wrong");
  await stageShown(bob.page, "Changes requested");
  await bob.page.locator("#outcome").getByText(/Changes requested by bob .*“the total is wrong”/).waitFor();
  await bob.page.locator("#history").getByText(/changes requested/).waitFor();
  await bob.page.getByLabel(/^Note for reviewers/).fill("third time this month");
  await bob.page.getByRole("button", { name: "Add private note" }).click();
  await bob.page.locator("#history").getByText(/private note \(reviewers only\) by bob/).waitFor();

  await openFile(uma.page, id);
  await uma.page.getByLabel("Choose the new version").setInputFiles(writeFile("budget-2.txt", "budget\ntotal 12\nchecked twice\n"));
  await stageShown(uma.page, "Awaiting upload approval");
  await uma.page.locator("#versions").getByText("2 (current)").waitFor();
  await uma.page.locator("#facts").getByText(/^2 \(after 1 change request\)/).waitFor();
  await uma.page.locator("#history").getByText(/new version by uma — version 2/).waitFor();
  // The uploader never sees a reviewer's private note.
  assert.equal(await uma.page.locator("#history").getByText("third time this month").count(), 0);
  await shot(uma.page, "file-new-version");

  // The same reviewer decides the new version afresh; what changed is in the table, and the
  // text's changes line by line.
  await openFile(bob.page, id);
  const diff = bob.page.locator("#diff");
  await diff.locator("del").getByText("− total 10").waitFor();
  await diff.locator("ins").getByText("+ total 12").waitFor();
  await diff.locator("ins").getByText("+ checked twice").waitFor();
  await diff.getByText("budget").waitFor();
  await shot(bob.page, "file-text-diff");
  await decide(bob.page, "Approve", "upload");
  await stageShown(bob.page, "Awaiting download approval");
  // Asked at the upload stage, version 1 was never analysed: only its size compares.
  await bob.page.locator("#versions").getByText("+14 bytes").waitFor();
  // The uploader's other files are listed for reviewers.
  await bob.page.locator("#related").getByText(/recent files/).waitFor();
  await bob.context.close();
  await uma.context.close();
});

uiTest("a new version too large for one request goes to storage in blocks", async () => {
  const uma = await personWith(UPLOADER);
  const id = await uploadThroughPage(uma.page, writeFile("dataset.csv", "a,b\n1,2\n"));
  const bob = await personWith(BOB);
  await openFile(bob.page, id);
  await decide(bob.page, "Request", "changes", "the whole data set, please");
  await stageShown(bob.page, "Changes requested");
  // 33 MiB: over the page's one-request limit, so an upload URL and blocks.
  const big = Buffer.alloc(33 * 1024 * 1024, "x");
  await openFile(uma.page, id);
  await uma.page.getByLabel("Choose the new version").setInputFiles(writeFile("dataset-full.csv", big));
  await stageShown(uma.page, "Awaiting upload approval");
  await uma.page.locator("#facts").getByText("33.0 MiB").waitFor();
  await bob.context.close();
  await uma.context.close();
});

uiTest("contents that are not what the name says show a warning and an image preview", async () => {
  // A 1×1 PNG named .txt: declared text/plain by the browser, detected image/png.
  const png = Buffer.from("89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    + "1f15c4890000000d49444154789c6360f8cf00000301010018dd8db40000000049454e44ae426082", "hex");
  const uma = await personWith(UPLOADER);
  const id = await uploadThroughPage(uma.page, writeFile("notes.txt", png));
  const bob = await personWith(BOB);
  await openFile(bob.page, id);
  await bob.page.getByRole("img", { name: "Preview of notes.txt" }).waitFor();
  await decide(bob.page, "Approve", "upload");
  await stageShown(bob.page, "Awaiting download approval");
  await bob.page.locator("#type-warning").getByText("look like image/png").waitFor();
  await bob.page.locator("#analysis").getByText("1 × 1 pixels").waitFor();
  await shot(bob.page, "file-type-warning");
  await bob.context.close();
  await uma.context.close();
});

uiTest("a reviewer signs in, finds a file and rejects it with the keyboard alone", async () => {
  const uma = await personWith(UPLOADER);
  const id = await uploadThroughPage(uma.page, writeFile("keys.txt", "typed, not clicked\n"));
  await uma.context.close();
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/api/ui/`);
  // The token field has focus on arrival; Enter submits.
  await page.keyboard.type(BOB);
  await page.keyboard.press("Enter");
  await page.locator("#who").getByText("Signed in").waitFor();
  await page.goto(`${base}/api/ui/#/files/${id}`);
  await page.locator("#facts").waitFor();
  // Tab to the comment box, type, Tab past Approve and Request changes to Reject, and press
  // Enter.
  const focused = () => page.evaluate(() => document.activeElement?.id || document.activeElement?.textContent);
  for (let i = 0; i < 30 && (await focused()) !== "comment"; i += 1) await page.keyboard.press("Tab");
  assert.equal(await focused(), "comment", "the comment box is reachable by Tab");
  await page.keyboard.type("rejected from the keyboard");
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "Approve upload");
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "Request changes");
  await page.keyboard.press("Tab");
  assert.equal(await focused(), "Reject upload");
  await page.keyboard.press("Enter");
  await stageShown(page, "Rejected");
  await page.locator("#history").getByText("rejected from the keyboard").waitFor();
  await context.close();
});

uiTest("a wrong token is refused in words and nothing is shown", async () => {
  const context = await browser.newContext();
  const page = await context.newPage();
  await page.goto(`${base}/api/ui/`);
  await page.getByLabel("Your reviewer or uploader token").fill("not-a-real-token-000000");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("alert").getByText("your token was not recognised").waitFor();
  await shot(page, "sign-in-refused");
  assert.equal(await page.locator("table").count(), 0);
  // The token never appears in the address bar.
  assert.ok(!page.url().includes("not-a-real-token"));
  await context.close();
});

// A 300 MB file, random-looking, not zeros: what is compared at the end must be the bytes that
// were sent.
function bigFile(name, size = 300 * 1000 * 1000) {
  const big = path.join(work, name);
  const fd = fs.openSync(big, "w");
  const chunk = Buffer.alloc(1 << 20);
  for (let i = 0; i < chunk.length; i += 1) chunk[i] = (i * 2654435761) >>> 24;
  for (let written = 0; written < size; written += chunk.length) {
    fs.writeSync(fd, chunk, 0, Math.min(chunk.length, size - written));
  }
  fs.closeSync(fd);
  return { big, size };
}

const progressOf = (page) => page.locator("#progress").evaluate((p) => p.value).catch(() => 0);

uiTest("a 300 MB upload cancelled, then cut by a reload, resumes and sends fewer bytes than it holds", async () => {
  const { big, size } = bigFile("resume.bin");
  const uma = await personWith(UPLOADER);
  // The block bytes storage acknowledged, counted from the browser's side: each Put Block that
  // was answered 201, sized by its block's place in the file (its id names it).
  const BLOCK = 8 * 1024 * 1024;
  let sent = 0;
  let blocks = 0;
  uma.page.on("requestfinished", async (request) => {
    const url = new URL(request.url());
    if (request.method() !== "PUT" || url.searchParams.get("comp") !== "block") return;
    if ((await request.response())?.status() !== 201) return;
    const n = Number(atob(url.searchParams.get("blockid")).replace("block-", ""));
    sent += Math.min(BLOCK, size - n * BLOCK);
    blocks += 1;
  });
  await uma.page.getByRole("link", { name: "Upload", exact: true }).click();
  assert.ok(await uma.page.locator("#progress").isHidden(), "no bar before an upload");
  await uma.page.getByLabel("Choose a file").setInputFiles(big);
  await uma.page.locator("#upload-meter").getByText(/\d+ % · .* of .*\/s/).waitFor();
  await waitFor(async () => (await progressOf(uma.page)) > 10, "10 % sent", 120_000);
  await uma.page.getByRole("button", { name: "Cancel upload" }).click();
  await uma.page.locator("#upload-status").getByText("Cancelled.").waitFor();

  // Chosen again, it resumes; then a reload cuts it.
  await uma.page.getByLabel("Choose a file").setInputFiles(big);
  await uma.page.locator("#upload-status").getByText(/^Resuming resume.bin: [1-9]\d* of 36 blocks/).waitFor();
  await waitFor(async () => (await progressOf(uma.page)) > 40, "40 % sent", 120_000);
  await uma.page.reload();
  const beforeReload = sent;
  await uma.page.getByText(/The upload of resume.bin .* stopped at \d+ %/).waitFor();
  await uma.page.getByLabel("Choose a file").setInputFiles(big);
  await uma.page.locator("#upload-status").getByText(/^Resuming resume.bin/).waitFor();
  await uma.page.waitForURL(/#\/files\/[0-9a-f-]{36}$/, { timeout: 200_000 });
  const afterReload = sent - beforeReload;
  console.log(`resumed upload: ${blocks} blocks, ${sent} bytes acknowledged in all for ${size}; ${afterReload} of them after the reload`);
  assert.ok(beforeReload >= 4 * BLOCK, `before the reload ${beforeReload} bytes were stored`);
  // Fewer bytes than the file holds: only what the journal lacked, give or take the blocks in
  // flight when the reload cut them.
  assert.ok(afterReload > 0 && afterReload <= size - beforeReload + 4 * BLOCK && afterReload < size,
    `after the reload ${afterReload} bytes of ${size} were sent, ${beforeReload} having been stored before`);
  // Nothing stored twice beyond the blocks in flight when it was cut.
  assert.ok(sent >= size && sent <= size + 2 * 4 * BLOCK, `${sent} bytes sent for ${size}`);
  const id = uma.page.url().split("#/files/")[1];
  const status = await (await fetch(`${base}/api/files/${id}`, { headers: { Authorization: `Bearer ${UPLOADER}` } })).json();
  assert.equal(status.size, size);
  assert.equal(await uma.page.evaluate(() => Object.keys(localStorage).filter((k) => k.startsWith("fa.upload.")).length), 0,
    "the journal is gone once the upload completed");
  await uma.context.close();
  fs.rmSync(big);
});

uiTest("a 300 MB upload goes to storage in blocks with a moving progress bar, through a dropped connection", async () => {
  const { big, size } = bigFile("big.bin");
  const uma = await personWith(UPLOADER);
  await uma.page.getByRole("link", { name: "Upload", exact: true }).click();
  await uma.page.getByLabel("Choose a file").setInputFiles(big);
  const seen = new Set();
  let dropped = false;
  let screenshot = false;
  const deadline = Date.now() + 200_000;
  while (!/#\/files\//.test(uma.page.url())) {
    assert.ok(Date.now() < deadline, "the upload did not finish in time");
    const value = await uma.page.locator("#progress").evaluate((p) => p.value).catch(() => null);
    if (value !== null) seen.add(Math.round(value));
    if (!screenshot && value > 10) { await shot(uma.page, "upload-progress"); screenshot = true; }
    if (!dropped && value > 30) {
      // The connection drops mid-upload and comes back: only the interrupted block is resent.
      dropped = true;
      await uma.context.setOffline(true);
      await uma.page.locator("#upload-status").getByText("Connection lost").waitFor({ timeout: 30_000 });
      await new Promise((r) => { setTimeout(r, 1500); });
      await uma.context.setOffline(false);
    }
    await new Promise((r) => { setTimeout(r, 100); });
  }
  const moving = [...seen].filter((v) => v > 0 && v < 100);
  assert.ok(moving.length >= 5, `the bar moved through ${JSON.stringify([...seen].sort((a, b) => a - b))}`);
  assert.ok(dropped, "the connection was dropped during the upload");
  const id = uma.page.url().split("#/files/")[1];
  const status = await (await fetch(`${base}/api/files/${id}`, { headers: { Authorization: `Bearer ${UPLOADER}` } })).json();
  assert.equal(status.size, size);
  assert.equal(status.name, "big.bin");
  await uma.context.close();
  fs.rmSync(big);
});
