// Azurite 3.35 checks a user-delegation SAS for a blob snapshot (sr=bs) against a
// string-to-sign without the blob's name and without the snapshot time (Azurite issue #1857,
// open). Blob Storage, the official SDKs (azure_storage_sas among them) and Azurite's own
// account-key check all sign both, so Azurite refuses every such link that Azure accepts. The
// app pins a file's bytes to a snapshot and hands out user-delegation links to it under a
// managed identity; this one change lets the keyless tests check those links against Azurite.
// It runs after `npm ci` (package.json's postinstall), changes nothing for any other link, and
// fails loudly if Azurite's code no longer looks as expected (a new version needs a look).
"use strict";
const fs = require("fs");
const path = require("path");

const file = path.join(
  __dirname, "..", "node_modules", "azurite", "dist", "src", "blob",
  "authentication", "IBlobSASSignatureValues.js");
const MARK = "file-approver: snapshot in user-delegation SAS";
let source = fs.readFileSync(file, "utf8");
if (source.includes(MARK)) {
  process.exit(0);
}
const start = source.indexOf("function generateBlobSASBlobSASSignatureWithUDK20201206(");
const end = source.indexOf("\nfunction ", start + 1);
if (start < 0 || end < 0) {
  throw new Error(`${file}: the user-delegation signer was not found; is this Azurite 3.35?`);
}
const replacements = [
  [
    "resource === BlobSASResourceType_1.BlobSASResourceType.Blob\n",
    "resource === BlobSASResourceType_1.BlobSASResourceType.Blob ||\n" +
      "            resource === BlobSASResourceType_1.BlobSASResourceType.BlobSnapshot\n",
  ],
  [
    "undefined, // blob version timestamp,",
    `blobSASSignatureValues.snapshot, // ${MARK}`,
  ],
];
let body = source.slice(start, end);
for (const [from, to] of replacements) {
  if (!body.includes(from)) {
    throw new Error(`${file}: ${JSON.stringify(from)} not found; is this Azurite 3.35?`);
  }
  body = body.replace(from, to);
}
fs.writeFileSync(file, source.slice(0, start) + body + source.slice(end));
console.log("patched Azurite's user-delegation snapshot SAS check (Azurite issue #1857)");
