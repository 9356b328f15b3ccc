// The content-safety gate on the reviewers' page, in Chromium, against the real handler with a
// real clamd beside it (Debian's, started here offline with a one-line signature database, on a
// free port, stopped by its PID): the verdict on a clean file's page, a blocked file's page
// (no preview, no decision), and the warning on a file that could not be scanned but went to
// review, with its archive's contents listed.
//
//   UI_TEST_HANDLER=target/debug/handler UI_TEST_STORE=embedded node --test tests/browser/

import { test, before, after } from "node:test";
import { spawn } from "node:child_process";
import fs from "node:fs";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import zlib from "node:zlib";
import { CHROMIUM, STORE, freePort, launchChromium, startHandler, waitFor } from "./harness.mjs";

const SHOTS = path.resolve(process.env.UI_TEST_SCREENSHOTS ?? "target/ui-screenshots", STORE);
const CLAMD = process.env.FILE_APPROVER_TEST_CLAMD ?? "/usr/sbin/clamd";
const ALICE = "alice-token-0123456789";
const BOB = "bob-token-0123456789abc";
const EICAR = "X5O!P%@AP[4\\PZX54(P^)7CC)7}$EICAR-STANDARD-ANTIVIRUS-TEST-FILE!$H+H*";

const missing = !fs.existsSync(CHROMIUM) ? `no Chromium at ${CHROMIUM} (apt-get install chromium)`
  : !fs.existsSync(CLAMD) ? `no clamd at ${CLAMD} (apt-get install clamav-daemon)`
    : STORE === "azure" && !process.env.UI_TEST_AZURE_STORAGE ? "UI_TEST_AZURE_STORAGE is not set" : null;
if (missing && process.env.CI) throw new Error(`browser scan tests cannot run: ${missing}`);
const uiTest = (name, fn) => test(`${name} [${STORE}]`, { skip: missing ?? false, timeout: 240_000 }, fn);

let clamd;
let handler;
let base;
let browser;
let work;

function clamdAnswers(port) {
  return new Promise((resolve) => {
    const socket = net.connect(port, "127.0.0.1", () => socket.write("zPING\0"));
    socket.on("data", (data) => { socket.destroy(); resolve(data.toString().startsWith("PONG")); });
    socket.on("error", () => resolve(false));
  });
}

before(async () => {
  if (missing) return;
  work = fs.mkdtempSync(path.join(os.tmpdir(), "file-approver-scan-ui-"));
  fs.mkdirSync(SHOTS, { recursive: true });
  const db = path.join(work, "db");
  fs.mkdirSync(db);
  fs.writeFileSync(path.join(db, "test.hdb"), "44d88612fea8a8f36de82e1278abb02f:68:Eicar-Test-Signature\n");
  const port = await freePort();
  const conf = path.join(work, "clamd.conf");
  fs.writeFileSync(conf, [`DatabaseDirectory ${db}`, `TCPSocket ${port}`, "TCPAddr 127.0.0.1",
    "Foreground yes", `LogFile ${path.join(work, "clamd.log")}`, "AlertEncrypted yes", ""].join("\n"));
  clamd = spawn(CLAMD, ["-c", conf], { stdio: "ignore" });
  await waitFor(() => clamdAnswers(port), "clamd", 60_000);
  const settings = {
    FILE_APPROVER_REVIEWERS: `alice:${ALICE},bob:${BOB}`,
    FILE_APPROVER_CLAMD: `tcp://127.0.0.1:${port}`,
    FILE_APPROVER_SCAN_UNSCANNABLE: "review",
    ...(STORE === "azure"
      ? { FILE_APPROVER_STORAGE: "azure", AzureWebJobsStorage: process.env.UI_TEST_AZURE_STORAGE }
      : { FILE_APPROVER_STORAGE: "embedded", FILE_APPROVER_DATA_DIR: path.join(work, "data") }),
  };
  ({ child: handler, base } = await startHandler(settings, path.join(work, "handler.log")));
  browser = await launchChromium();
});

after(async () => {
  await browser?.close();
  handler?.kill("SIGTERM");
  clamd?.kill("SIGTERM");
  if (process.exitCode && work) process.stderr.write(fs.readFileSync(path.join(work, "handler.log"), "utf8").slice(-4000));
  if (work) fs.rmSync(work, { recursive: true, force: true });
});

async function upload(name, bytes, type) {
  const response = await fetch(`${base}/api/files?name=${encodeURIComponent(name)}`, {
    method: "POST", headers: { "Content-Type": type, Authorization: `Bearer ${ALICE}` }, body: bytes,
  });
  if (response.status !== 201) throw new Error(`upload answered ${response.status}`);
  return (await response.json()).id;
}

async function fileStage(id) {
  return (await (await fetch(`${base}/api/files/${id}`)).json()).stage;
}

async function reviewerOn(id) {
  const context = await browser.newContext({ viewport: { width: 1100, height: 900 } });
  const page = await context.newPage();
  page.on("pageerror", (e) => { throw e; });
  await page.goto(`${base}/api/ui/`);
  await page.getByLabel("Your reviewer or uploader token").fill(BOB);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.locator("#who").getByText("Signed in").waitFor();
  await page.goto(`${base}/api/ui/#/files/${id}`);
  await page.locator("#facts").waitFor();
  return { context, page };
}

// A stored zip whose one entry is marked encrypted (general-purpose flag bit 0), written by
// hand: clamd reports it as Heuristics.Encrypted.Zip, and nobody can see inside.
function encryptedZip(name, data) {
  const n = Buffer.from(name);
  const crc = zlib.crc32(data);
  const local = Buffer.alloc(30);
  local.writeUInt32LE(0x04034b50, 0); local.writeUInt16LE(20, 4); local.writeUInt16LE(1, 6);
  local.writeUInt32LE(crc, 14); local.writeUInt32LE(data.length, 18); local.writeUInt32LE(data.length, 22);
  local.writeUInt16LE(n.length, 26);
  const central = Buffer.alloc(46);
  central.writeUInt32LE(0x02014b50, 0); central.writeUInt16LE(20, 4); central.writeUInt16LE(20, 6);
  central.writeUInt16LE(1, 8); central.writeUInt32LE(crc, 16); central.writeUInt32LE(data.length, 20);
  central.writeUInt32LE(data.length, 24); central.writeUInt16LE(n.length, 28);
  const end = Buffer.alloc(22);
  const directoryAt = local.length + n.length + data.length;
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(1, 8); end.writeUInt16LE(1, 10);
  end.writeUInt32LE(central.length + n.length, 12); end.writeUInt32LE(directoryAt, 16);
  return Buffer.concat([local, n, data, central, n, end]);
}

uiTest("a clean file's page shows the scanner's verdict", async () => {
  const id = await upload("notes.txt", "quarterly numbers\n", "text/plain");
  await waitFor(async () => (await fileStage(id)) === "AwaitingUploadApproval", "the scan");
  const bob = await reviewerOn(id);
  await bob.page.locator("#facts .scan-clean").getByText(/^Clean — by clamav/).waitFor();
  await bob.page.locator("#preview pre").getByText("quarterly numbers").waitFor();
  await bob.page.screenshot({ path: path.join(SHOTS, "scan-clean.png"), fullPage: true });
  await bob.context.close();
});

uiTest("a blocked file's page says what was found and offers nothing to open or decide", async () => {
  const id = await upload("eicar.com", EICAR, "application/octet-stream");
  await waitFor(async () => (await fileStage(id)) === "Blocked", "the block");
  const bob = await reviewerOn(id);
  await bob.page.locator("#facts .stage").getByText("Blocked by the malware scan").waitFor();
  await bob.page.locator("#facts .scan-malicious").getByText(/Eicar-Test-Signature/).waitFor();
  if (await bob.page.getByRole("button", { name: /Approve/ }).count() > 0) throw new Error("a blocked file offers a decision");
  if (await bob.page.locator("#preview").count() > 0) throw new Error("a blocked file offers a preview");
  await bob.page.screenshot({ path: path.join(SHOTS, "scan-blocked.png"), fullPage: true });
  await bob.context.close();
});

uiTest("a file nobody could scan goes to review under a warning, its archive listed", async () => {
  const id = await upload("secret.zip", encryptedZip("secret.txt", Buffer.from("0123456789abcdef0123")), "application/zip");
  await waitFor(async () => (await fileStage(id)) === "AwaitingUploadApproval", "the scan");
  const bob = await reviewerOn(id);
  await bob.page.locator("#scan-warning").getByText(/could not be scanned for malware \(an encrypted archive/).waitFor();
  await bob.page.getByRole("button", { name: "Approve upload" }).waitFor();
  // The analysis (made in the scan's pass) is shown once the upload is approved.
  await bob.page.getByRole("button", { name: "Approve upload" }).click();
  await waitFor(async () => (await fileStage(id)) === "AwaitingDownloadApproval", "the analysis");
  await bob.page.goto(`${base}/api/ui/#/`);
  await bob.page.goto(`${base}/api/ui/#/files/${id}`);
  await bob.page.locator("#archive").getByText("secret.txt").waitFor();
  await bob.page.locator("#archive-warning").getByText(/1 encrypted entry/).waitFor();
  await bob.page.screenshot({ path: path.join(SHOTS, "scan-unscannable-review.png"), fullPage: true });
  await bob.context.close();
});
