// File Approver's reviewer page. Plain DOM, no framework: three views (inbox, file, upload)
// behind hash routes, over the public HTTP API only. Everything shown from the API goes in
// through textContent, never as HTML; the page's Content-Security-Policy forbids inline script.

const SIGN_IN = document.querySelector('meta[name="file-approver-sign-in"]')?.content ?? "token";
const STAGES = ["AwaitingUploadApproval", "Analyzing", "AwaitingDownloadApproval", "ChangesRequested", "Approved",
  "Revoked", "Rejected", "Expired", "Failed", "Withdrawn", "Blocked", "Scanning", "Uploaded"];
const STAGE_WORDS = {
  Uploaded: "Uploaded, starting", Scanning: "Being scanned for malware",
  AwaitingUploadApproval: "Awaiting upload approval",
  Analyzing: "Being analysed", AwaitingDownloadApproval: "Awaiting download approval",
  ChangesRequested: "Changes requested",
  Approved: "Approved", Rejected: "Rejected", Expired: "Expired", Failed: "Failed",
  Withdrawn: "Withdrawn", Blocked: "Blocked by the malware scan", Revoked: "Revoked after approval",
};
const VERDICT_WORDS = {
  clean: "Clean", malicious: "Malicious", unscannable: "Could not be scanned",
  notScanned: "Not scanned (no scanner is configured)",
};
// Files up to this size go in one request to the app; larger ones straight to storage in blocks.
const DIRECT_ABOVE = 32 * 1024 * 1024;
const BLOCK_BYTES = 8 * 1024 * 1024;
// Stages whose bytes are still kept (a rejected, expired or withdrawn file's are deleted).
const PREVIEWABLE = new Set(["AwaitingUploadApproval", "Analyzing", "AwaitingDownloadApproval", "ChangesRequested", "Approved"]);

// ---- credentials: kept for this tab only (sessionStorage), sent as headers, never in a URL ----

const session = {
  get token() { return sessionStorage.getItem("fa.token") ?? ""; },
  get key() { return sessionStorage.getItem("fa.key") ?? ""; },
  save(token, key) {
    sessionStorage.setItem("fa.token", token);
    if (key) sessionStorage.setItem("fa.key", key); else sessionStorage.removeItem("fa.key");
  },
  clear() { sessionStorage.removeItem("fa.token"); sessionStorage.removeItem("fa.key"); },
};

function authHeaders() {
  const headers = {};
  if (SIGN_IN === "token" && session.token) headers.Authorization = `Bearer ${session.token}`;
  if (session.key) headers["x-functions-key"] = session.key;
  return headers;
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error?.message ?? `HTTP ${status}`);
    this.status = status;
    this.code = body?.error?.code ?? (status === 0 ? "NetworkError" : "HttpError");
    this.currentStage = body?.error?.currentStage;
  }
}

async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = authHeaders();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  } catch {
    throw new ApiError(0, { error: { message: "The app could not be reached." } });
  }
  if (!response.ok) {
    let parsed = null;
    try { parsed = await response.json(); } catch { /* not JSON */ }
    throw new ApiError(response.status, parsed);
  }
  return raw ? response : response.json();
}

// Refusals in words: what the reviewer did, and what to do about it.
function explain(error) {
  const stage = error.currentStage ? ` It is now: ${STAGE_WORDS[error.currentStage] ?? error.currentStage}.` : "";
  switch (error.code) {
    case "Unauthorized": return "You are not signed in, or your token was not recognised.";
    case "NotAReviewer": return "You are signed in, but not as a reviewer: only reviewers may do this.";
    case "NotAnUploader": return "You are signed in, but not as someone who may upload.";
    case "SelfApproval": return "You uploaded this file, so someone else must approve it (four-eyes rule).";
    case "SameReviewer": return "You approved the upload, so a different reviewer must approve the download (four-eyes rule).";
    case "WrongStage":
      return error.currentStage === "Expired"
        ? "The time to decide has passed: this file has expired."
        : `This file is not waiting for that decision.${stage}`;
    case "NotApproved": return `The file cannot be downloaded before both approvals.${stage}`;
    case "NotTheUploader": return "Only the person who uploaded the file may withdraw it.";
    case "ReasonRequired": return "Say why: a reason is required, and it is kept in the history.";
    case "FileRevoked": return `The file's approval was taken back: its links no longer give it.${stage}`;
    case "LinkExpired": return "The download link has expired; ask for a new one.";
    case "DownloadLimitReached": return "The file was downloaded as many times as this deployment allows.";
    case "LinkNotYours": return "This download link was asked for by someone else.";
    case "LinkInvalid": return "This is not a valid download link for this file.";
    case "NotFound": return "There is no such file (or it was removed).";
    case "TooLarge": case "DeclaredTooLarge": return "The file is larger than this deployment accepts.";
    case "EmptyFile": return "The file is empty.";
    case "InvalidName": return `The file name was refused: ${error.message}`;
    case "StorageUnavailable": return "Storage is not answering right now; try again in a moment.";
    case "NetworkError": return "The connection dropped; check the network and try again.";
    default: return error.message;
  }
}

// ---- small DOM helpers ----

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat(Infinity)) {
    if (child !== null && child !== undefined && child !== false) node.append(child);
  }
  return node;
}

const main = () => document.getElementById("main");

// Each route gets a number; a view still loading when the reader has moved on (a slow inbox,
// then a click on Upload) must not replace the newer view.
let generation = 0;

// The confirmation of what the reader just did: it stays through the redraws that follow
// (the new stage, the analysis arriving) until the reader moves to another view.
let lasting = null;

function show(gen, title, ...content) {
  if (gen !== generation) return;
  document.title = `${title} · File Approver`;
  const target = main();
  target.replaceChildren(el("h1", { text: title }), ...content.flat(Infinity).filter((c) => c !== null && c !== undefined));
  target.focus();
}

function message(kind, text) {
  return el("p", { class: kind, role: kind === "error" ? "alert" : "status", text });
}

function bytes(n) {
  if (n === undefined || n === null) return "";
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let i = 0; let v = n;
  while (v >= 1024 && i < units.length - 1) { v /= 1024; i += 1; }
  return i === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

function age(iso) {
  const seconds = Math.max(0, (Date.now() - Date.parse(iso)) / 1000);
  if (seconds < 90) return `${Math.round(seconds)} s`;
  if (seconds < 5400) return `${Math.round(seconds / 60)} min`;
  if (seconds < 172800) return `${Math.round(seconds / 3600)} h`;
  return `${Math.round(seconds / 86400)} days`;
}

const when = (iso) => (iso ? new Date(iso).toLocaleString() : "");
// A stage's colour says what it means: done well, ended badly, waiting on a person, or the
// app at work; the words say it too, for anyone who cannot tell the colours apart.
const TONE = {
  Approved: "ok", Rejected: "bad", Blocked: "bad", Failed: "bad", Revoked: "bad", Expired: "bad",
  AwaitingUploadApproval: "wait", AwaitingDownloadApproval: "wait", ChangesRequested: "wait",
  Uploaded: "work", Scanning: "work", Analyzing: "work",
};
const stageBadge = (stage) => el("span", { class: `stage tone-${TONE[stage] ?? "plain"}`, text: STAGE_WORDS[stage] ?? stage });

// ---- who is signed in ----

let me = { state: "unknown" }; // state: "signedIn" | "signedOut" | "open"; name, reviewer, uploader

// Reviewers decide; with nothing authenticated anyone may (recorded as anonymous).
const mayDecide = () => me.reviewer === true;

async function whoAmI() {
  if (SIGN_IN === "token" && !session.token) { me = { state: "signedOut" }; return me; }
  try {
    const who = await api("/api/me");
    me = { state: who.name === null ? "open" : "signedIn", ...who };
  } catch (error) {
    if (error.code === "Unauthorized") me = { state: "signedOut", error };
    else throw error;
  }
  return me;
}

function renderWho() {
  const who = document.getElementById("who");
  const parts = [];
  if (me.state === "signedIn") {
    const role = me.reviewer ? "reviewer" : "uploads only";
    parts.push(el("span", {}, "Signed in as ", el("strong", { id: "who-name", text: me.name }), ` (${role})`));
    parts.push(SIGN_IN === "easyAuth"
      ? el("a", { href: "/.auth/logout", text: "Sign out" })
      : el("button", { type: "button", onclick: () => { session.clear(); route(); }, text: "Sign out" }));
  }
  if (me.state === "open") parts.push(el("span", { text: "Open deployment: nobody signs in" }));
  who.replaceChildren(...parts);
}

function signInView(problem, gen) {
  if (SIGN_IN === "easyAuth") {
    const back = encodeURIComponent(`/api/ui/${location.hash}`);
    show(gen, "Sign in", problem ? message("error", explain(problem)) : null,
      el("p", {}, el("a", { href: `/.auth/login/aad?post_login_redirect_uri=${back}`, text: "Sign in with your organisation account" })));
    return;
  }
  const token = el("input", { id: "token", type: "password", autocomplete: "off", required: true });
  const key = el("input", { id: "function-key", type: "password", autocomplete: "off" });
  const form = el("form", { class: "signin", onsubmit: async (event) => {
    event.preventDefault();
    session.save(token.value.trim(), key.value.trim());
    route();
  } },
  el("label", { for: "token", text: "Your reviewer or uploader token" }), token,
  el("label", { for: "function-key", text: "Function key (only if this deployment asks for one)" }), key,
  el("div", { class: "buttons" }, el("button", { class: "primary", type: "submit", text: "Sign in" })),
  el("p", { class: "muted", text: "Kept for this browser tab only, and sent in request headers — never in a link." }));
  show(gen, "Sign in", problem ? message("error", explain(problem)) : null, form);
  token.focus();
}

// ---- inbox ----

function fileTable(files, { caption, empty }) {
  if (files.length === 0) return el("p", { class: "muted empty" }, empty);
  const cell = (label, attrs, ...content) => el("td", { "data-label": label, ...attrs }, ...content);
  return el("table", { class: "files" },
    el("caption", { class: "visually-hidden", text: caption }),
    el("thead", {}, el("tr", {}, ["Name", "Size", "Uploader", "Stage", "Age", "Deadline"]
      .map((h) => el("th", { scope: "col", text: h })))),
    el("tbody", {}, files.map((f) => el("tr", {},
      cell("Name", { class: "name" }, el("a", { href: `#/files/${f.id}`, text: f.name })),
      cell("Size", { class: "num", text: bytes(f.size) }),
      cell("Uploader", { text: f.uploader?.name ?? "anonymous" }),
      cell("Stage", {}, stageBadge(f.stage)),
      cell("Age", { class: "num", text: age(f.createdTime), title: when(f.createdTime) }),
      // A date and a time may go on two lines; the sizes and ages never wrap.
      cell("Deadline", { class: "when", text: f.deadline ? when(f.deadline) : "—" })))));
}

// A titled, paged list of files: its heading counts what is shown ("50+" while more pages
// follow), and "More" appends the next page.
async function listSection({ id, title, query, caption, empty }) {
  const heading = el("h2", { id: `${id}-title` });
  const holder = el("div");
  const more = el("button", { type: "button", text: "More", hidden: true });
  let token = null;
  let count = 0;
  const load = async () => {
    more.disabled = true;
    let files = [];
    // A page may be empty with more to follow (docs/API.md, "Inbox"): read on a little.
    for (let pages = 0; pages < 5; pages += 1) {
      const page = await api(`/api/files?${query}&top=50${token ? `&continuationToken=${token}` : ""}`);
      files = files.concat(page.files);
      token = page.continuationToken ?? null;
      if (files.length || !token) break;
    }
    count += files.length;
    if (files.length || count === 0) holder.append(fileTable(files, { caption, empty }));
    heading.textContent = `${title} (${count}${token ? "+" : ""})`;
    more.hidden = !token;
    more.disabled = false;
  };
  more.addEventListener("click", () => load().catch((e) => holder.append(message("error", explain(e)))));
  await load();
  return el("section", { id, "aria-labelledby": `${id}-title` }, heading, holder, more);
}

async function inboxView(gen) {
  const sections = [];
  if (mayDecide()) {
    sections.push(await listSection({ id: "awaiting", title: "Awaiting you", query: "awaiting=me",
      caption: "Files you may decide now, oldest first",
      empty: "Nothing awaits your decision. Files that need you appear here as soon as they are ready." }));
  }
  if (me.state === "signedIn") {
    sections.push(await listSection({ id: "mine", title: "My uploads", query: "uploadedBy=me",
      caption: "Files you uploaded, newest first",
      empty: ["You have not uploaded anything yet. ", el("a", { href: "#/upload", text: "Upload a file" }), " to start a review."] }));
  }
  // Every file in one stage, on demand: not a repeat of the lists above.
  const select = el("select", { id: "stage" }, el("option", { value: "", text: "Choose a stage…" }),
    STAGES.map((s) => el("option", { value: s, text: STAGE_WORDS[s] })));
  const byStage = el("div");
  select.addEventListener("change", async () => {
    if (!select.value) { byStage.replaceChildren(); return; }
    byStage.replaceChildren(message("muted", "Loading…"));
    try {
      const words = STAGE_WORDS[select.value];
      byStage.replaceChildren(await listSection({ id: "by-stage", title: words, query: `stage=${select.value}`,
        caption: `Files ${words.toLowerCase()}`, empty: `No file is ${words.toLowerCase()}.` }));
    } catch (error) { byStage.replaceChildren(message("error", explain(error))); }
  });
  sections.push(el("h2", { text: "All files by stage" }),
    el("p", {}, el("label", { for: "stage", text: "Stage " }), select), byStage);
  show(gen, mayDecide() ? "Inbox" : "My files", ...sections);
}

// ---- one file ----

const declaredType = (file) => (file.contentTypeDeclared === false ? "not declared" : file.contentType);

function analysisFacts(file) {
  const a = file.analysis;
  if (!a) {
    const ended = ["Approved", "Revoked", "Rejected", "Expired", "Withdrawn", "Blocked", "Failed"].includes(file.stage);
    const why = file.stage === "Analyzing" ? "The analysis is running."
      : ended ? "No analysis: the file ended before it was analysed."
        : "No analysis yet: it runs after the upload is approved.";
    return [el("p", { class: "muted", text: why })];
  }
  const rows = [
    ["Declared type", declaredType(file)], ["Detected type", a.detectedContentType],
    ["Size", a.size >= 1024 ? `${bytes(a.size)} (${a.size} bytes)` : bytes(a.size)], ["SHA-256", el("span", { class: "hash", text: a.sha256 })],
  ];
  if (a.isText) rows.push(["Lines", String(a.lineCount)], ["Words", String(a.wordCount)]);
  if (a.width) rows.push(["Image size", `${a.width} × ${a.height} pixels`]);
  rows.push(["Analysed", when(a.analyzedTime)]);
  return [
    a.contentTypeMatches ? null : el("p", { class: "warning", role: "note", id: "type-warning",
      text: `Warning: the file says it is ${file.contentType}, but its contents look like ${a.detectedContentType}.` }),
    el("dl", { class: "facts", id: "analysis" }, rows.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
    ...archiveFacts(a.archive),
  ];
}

// An archive's contents as its directory lists them, with what should make a reviewer pause.
function archiveFacts(archive) {
  if (!archive) return [];
  const warnings = [];
  if (archive.encryptedEntries) warnings.push(`${archive.encryptedEntries} encrypted ${archive.encryptedEntries === 1 ? "entry" : "entries"}: nobody can see inside them`);
  if (archive.nestedArchives) warnings.push(`${archive.nestedArchives} nested ${archive.nestedArchives === 1 ? "archive" : "archives"}`);
  if (archive.highCompressionRatio) warnings.push(`expands ${archive.compressionRatio}× (to ${bytes(archive.totalSize)}): how zip bombs look`);
  const rows = archive.entries.map((e) => el("tr", {},
    el("td", { text: e.name }), el("td", { text: bytes(e.size) }), el("td", { text: bytes(e.compressedSize) }),
    el("td", { text: e.encrypted ? "encrypted" : "" })));
  const more = archive.truncated ? ` (the first ${archive.entries.length} shown)` : "";
  return [
    el("h3", { text: `Archive: ${archive.entryCount} ${archive.entryCount === 1 ? "entry" : "entries"}${more}` }),
    warnings.length ? el("p", { class: "warning", role: "note", id: "archive-warning", text: `Warning: ${warnings.join("; ")}.` }) : null,
    el("table", { id: "archive", tabindex: "0" },
      el("thead", {}, el("tr", {}, ["Name", "Size", "Compressed", "Note"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows)),
  ];
}

// One request per version's preview and drawing of a file: the preview and the diff read the
// same bytes of the version under review. Each caller gets its own copy of the answer.
function previews(file) {
  const asked = new Map();
  return (version = file.version) => {
    if (!asked.has(version)) {
      asked.set(version, api(`/api/files/${file.id}/preview?version=${version}`, { raw: true }));
    }
    return asked.get(version).then((response) => response.clone());
  };
}

async function previewOf(file, preview) {
  if (!mayDecide() || !PREVIEWABLE.has(file.stage)) return null;
  const box = el("div", { id: "preview" });
  try {
    const response = await preview();
    const type = response.headers.get("content-type") ?? "";
    if (type.startsWith("image/")) {
      const url = URL.createObjectURL(await response.blob());
      box.append(el("img", { class: "preview", src: url, alt: `Preview of ${file.name}` }));
    } else {
      // A long preview scrolls inside its box: keyboard users reach it too.
      box.append(el("pre", { class: "preview", tabindex: "0", "aria-label": `Preview of ${file.name}`, text: await response.text() }));
      if (response.headers.get("x-preview-truncated") === "true") {
        box.append(el("p", { class: "muted", text: "Only the beginning of the file is shown." }));
      }
    }
  } catch (error) {
    box.append(el("p", { class: "muted", text: error.code === "NoPreview" ? `No preview: ${error.message}` : explain(error) }));
  }
  return [el("h2", { text: "Preview" }), box];
}

function historyList(steps) {
  // "analysisStarted" reads "analysis started", spelled as the rest of the page ("analysed");
  // a decision names its stage.
  const step = (name) => name.replace(/([a-z])([A-Z])/g, "$1 $2").toLowerCase().replace("analyz", "analys");
  // Outcomes in the page's words: the final stage as a person reads it, times in local time.
  const outcome = (s) => {
    if (!s.outcome) return "";
    if (s.step === "finished") return `— ${(STAGE_WORDS[s.outcome] ?? s.outcome).toLowerCase()}`;
    return `— ${s.outcome.replace("changesRequested", "changes requested").replace(/valid until (\S+)/, (_, iso) => `valid until ${when(iso)}`)}`;
  };
  const words = (s) => [s.stage ? `${s.stage}` : "", s.step === "note" ? "private note (reviewers only)" : step(s.step), s.actor ? `by ${s.actor.name}` : "",
    outcome(s)].filter(Boolean).join(" ");
  // A timeline: each event on its line, what people wrote set apart beneath it.
  return el("ol", { class: "history", id: "history" }, steps.map((s) => el("li", { class: s.comment ? "has-comment" : null },
    el("time", { datetime: s.time, text: when(s.time) }), " ", words(s),
    s.comment ? el("blockquote", { class: "comment" }, el("q", { text: s.comment })) : null)));
}

// What the server says the reader may do with this file now, and why the rest is withheld:
// the page offers only the first and explains the second before any click.
const may = (file, action) => file.allowedActions?.includes(action) ?? false;
const withheld = (file, action) => file.withheldActions?.find((w) => w.action === action);

function decisionForm(file, refresh) {
  const stage = file.stage === "AwaitingUploadApproval" ? "upload"
    : file.stage === "AwaitingDownloadApproval" ? "download" : null;
  if (!stage) return null;
  const approve = stage === "upload" ? "approveUpload" : "approveDownload";
  const offered = [approve, "requestChanges", "reject"].filter((a) => may(file, a));
  const held = [approve, "requestChanges", "reject"].map((a) => withheld(file, a)).filter(Boolean);
  if (!offered.length && !held.length) return null;
  const title = el("h2", { id: "decide-title", text: stage === "upload" ? "Decide on the upload" : "Decide on the download" });
  // Why a decision is not the reader's, said once: the approval's reason is the specific one.
  const why = held.length
    ? el("p", { class: "muted", id: "decision-withheld", text: held.find((w) => w.action === approve)?.message ?? held[0].message })
    : null;
  if (!offered.length) return el("section", { "aria-labelledby": "decide-title" }, title, why);
  const comment = el("textarea", { id: "comment", maxlength: "2000" });
  const result = el("div", { "aria-live": "assertive" });
  const done = { approve: "Approved.", reject: "Rejected.", requestChanges: "Changes requested: the file went back to its uploader." };
  const decide = (decision) => async () => {
    const text = comment.value.trim();
    // A refusal or a change request says why; the server holds the same rule.
    if (decision !== "approve" && !text) {
      result.replaceChildren(message("error", explain({ code: "ReasonRequired" })));
      comment.focus();
      return;
    }
    for (const b of buttons) b.disabled = true;
    try {
      // Names the version on screen: if a new one arrived meanwhile, the server refuses.
      const body = { decision, version: file.version ?? 1 };
      if (text) body.comment = text;
      await api(`/api/files/${file.id}/approvals/${stage}`, { method: "POST", body });
      lasting = message("notice", done[decision]);
      await refresh();
    } catch (error) {
      // Still awaiting this decision, but on another version: the one on screen was replaced.
      if (error.code === "WrongStage" && error.currentStage === file.stage) {
        lasting = message("error", `A new version arrived while you were deciding on version ${file.version ?? 1}: nothing was recorded. This is the version under review now.`);
        await refresh();
        return;
      }
      result.replaceChildren(message("error", explain(error)));
      for (const b of buttons) b.disabled = false;
    }
  };
  const buttons = [
    may(file, approve) ? el("button", { type: "button", class: "primary", onclick: decide("approve"), text: `Approve ${stage}` }) : null,
    may(file, "requestChanges") ? el("button", { type: "button", onclick: decide("requestChanges"), text: "Request changes" }) : null,
    may(file, "reject") ? el("button", { type: "button", class: "danger", onclick: decide("reject"), text: `Reject ${stage}` }) : null,
  ].filter(Boolean);
  const label = may(file, approve) ? "Comment (required to reject or request changes; shown in the history)"
    : "Reason (required; shown in the history)";
  return el("section", { "aria-labelledby": "decide-title" }, title, why,
    el("form", { class: "decide", onsubmit: (e) => e.preventDefault() },
      el("label", { for: "comment", text: label }), comment,
      el("div", { class: "buttons" }, buttons)),
    result);
}

// A section with one text box and one button that sends it: a withdrawal (why, optional), a
// private note (text required), a revocation (a reason required). On success the confirmation
// lasts and the file is drawn again; a refusal is said under the button.
function textForm({ id, title, intro, label, button: text, danger, needs, send, done, refresh }) {
  const box = el("textarea", { id, maxlength: "2000", required: needs === "reason" });
  const result = el("div", { "aria-live": "assertive" });
  const button = el("button", { type: "button", class: danger ? "danger" : null, text, onclick: async () => {
    const value = box.value.trim();
    if (needs && !value) {
      if (needs === "reason") result.replaceChildren(message("error", explain({ code: "ReasonRequired" })));
      box.focus();
      return;
    }
    button.disabled = true;
    try {
      await send(value);
      lasting = message("notice", done);
      await refresh();
    } catch (error) {
      result.replaceChildren(message("error", explain(error)));
      button.disabled = false;
    }
  } });
  return el("section", { "aria-labelledby": `${id}-title` },
    el("h2", { id: `${id}-title`, text: title }),
    intro ? el("p", { class: "muted", text: intro }) : null,
    el("form", { class: "decide", onsubmit: (e) => e.preventDefault() },
      el("label", { for: id, text: label }), box,
      el("div", { class: "buttons" }, button)),
    result);
}

// The uploader takes the file back while it is reviewed or while it is their turn.
function withdrawForm(file, refresh) {
  if (!may(file, "withdraw")) return null;
  return textForm({ id: "withdraw-comment", title: "Withdraw", label: "Why (optional, shown in the history)",
    button: "Withdraw the file", danger: true, refresh, done: "Withdrawn: the review has ended.",
    send: (text) => api(`/api/files/${file.id}/withdraw`, { method: "POST", body: text ? { comment: text } : {} }) });
}

function downloadSection(file) {
  if (!may(file, "download")) return null;
  const result = el("div", { "aria-live": "polite" });
  const button = el("button", { type: "button", class: "primary", id: "download", text: "Download", onclick: async () => {
    button.disabled = true;
    try {
      const grant = await api(`/api/files/${file.id}/download`);
      result.replaceChildren(message("notice", `Link valid until ${when(grant.expiresAt)}.`));
      // The link is read-only and signed for one hour; the browser saves what it serves.
      location.assign(grant.downloadUrl);
    } catch (error) {
      result.replaceChildren(message("error", explain(error)));
    } finally { button.disabled = false; }
  } });
  return el("section", {}, el("h2", { text: "Download" }), button, result);
}

// A reviewer's private note, at any stage: reviewers see it in the history, uploaders never.
function noteForm(file, refresh) {
  if (!may(file, "addNote")) return null;
  return textForm({ id: "note", title: "Private note", label: "Note for reviewers (the uploader never sees it)",
    button: "Add private note", needs: "text", refresh, done: "Note added: reviewers see it in the history.",
    send: (text) => api(`/api/files/${file.id}/notes`, { method: "POST", body: { note: text } }) });
}

// Taking an approval back: for reviewers, on an approved file, with a reason; every link
// handed out stops giving the file at once.
function revokeForm(file, refresh) {
  if (!may(file, "revoke")) return null;
  return textForm({ id: "revoke-reason", title: "Revoke the approval",
    intro: "Every download link handed out stops working at once; a download already under way may finish.",
    label: "Reason (required, shown in the history)", button: "Revoke approval", danger: true, needs: "reason", refresh,
    done: "Approval revoked: every download link has stopped working.",
    send: (text) => api(`/api/files/${file.id}/revoke`, { method: "POST", body: { comment: text } }) });
}

// Every version of a file, and what changed from one to the next: size, hash, type, lines,
// words.
function versionsSection(file) {
  if (!file.versions?.length) return null;
  const change = (v, prev) => {
    if (!prev) return "the upload";
    const parts = [];
    const delta = v.size - prev.size;
    parts.push(delta === 0 ? "same size" : `${delta > 0 ? "+" : "−"}${bytes(Math.abs(delta))}`);
    if (v.sha256 && prev.sha256) parts.push(v.sha256 === prev.sha256 ? "same bytes" : "other bytes");
    if (v.detectedContentType && prev.detectedContentType && v.detectedContentType !== prev.detectedContentType) {
      parts.push(`type ${prev.detectedContentType} → ${v.detectedContentType}`);
    }
    const count = (name, n, p) => (n !== undefined && p !== undefined && n !== p ? `${n - p > 0 ? "+" : ""}${n - p} ${name}` : null);
    parts.push(count("lines", v.lineCount, prev.lineCount), count("words", v.wordCount, prev.wordCount));
    return parts.filter(Boolean).join(", ");
  };
  const cell = (label, attrs, ...content) => el("td", { "data-label": label, ...attrs }, ...content);
  const rows = file.versions.map((v, i) => el("tr", { class: v.number === file.version ? "current" : null },
    cell("Version", { text: `${v.number}${v.number === file.version ? " (current)" : ""}` }),
    cell("Sent", { text: when(v.uploadedTime) }), cell("Size", { class: "num", text: bytes(v.size) }),
    cell("SHA-256", {}, v.sha256 ? el("span", { class: "hash", text: v.sha256.slice(0, 12) }) : "not analysed"),
    cell("What changed", { text: change(v, file.versions[i - 1]) })));
  return el("section", { "aria-labelledby": "versions-title" },
    el("h2", { id: "versions-title", text: `Versions (${file.versions.length})` }),
    el("table", { id: "versions", class: "cards" },
      el("thead", {}, el("tr", {}, ["Version", "Sent", "Size", "SHA-256", "What changed"].map((h) => el("th", { scope: "col", text: h })))),
      el("tbody", {}, rows)));
}

// The lines of two texts, each kept, removed or added: a longest-common-subsequence diff.
// Previews are at most 64 KiB; longer inputs are cut to 2,000 lines each.
function lineDiff(a, b) {
  const x = a.split("\n").slice(0, 2000);
  const y = b.split("\n").slice(0, 2000);
  const n = x.length;
  const m = y.length;
  const lcs = Array.from({ length: n + 1 }, () => new Uint16Array(m + 1));
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      lcs[i][j] = x[i] === y[j] ? lcs[i + 1][j + 1] + 1 : Math.max(lcs[i + 1][j], lcs[i][j + 1]);
    }
  }
  const out = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (x[i] === y[j]) { out.push([" ", x[i]]); i += 1; j += 1; }
    else if (lcs[i + 1][j] >= lcs[i][j + 1]) { out.push(["-", x[i]]); i += 1; }
    else { out.push(["+", y[j]]); j += 1; }
  }
  for (; i < n; i += 1) out.push(["-", x[i]]);
  for (; j < m; j += 1) out.push(["+", y[j]]);
  return out;
}

// For reviewers: the text diff between the version under review and the one before it, while
// both versions' bytes are kept. Unchanged runs are cut to two lines of context.
async function diffSection(file, preview) {
  const [prev, cur] = (file.versions ?? []).slice(-2);
  if (!prev || !cur || !mayDecide() || !PREVIEWABLE.has(file.stage)) return null;
  // Analysed as something else than text: nothing to compare line by line. Not analysed yet
  // (changes asked at the upload stage): the previews say.
  if ([prev, cur].some((v) => v.sha256 && v.lineCount === undefined)) return null;
  const title = el("h2", { id: "diff-title", text: `What changed in the text (version ${prev.number} → ${cur.number})` });
  let texts;
  try {
    const responses = await Promise.all([prev.number, cur.number].map((n) => preview(n)));
    if (!responses.every((r) => (r.headers.get("content-type") ?? "").startsWith("text/"))) return null;
    texts = await Promise.all(responses.map((r) => r.text()));
  } catch (error) {
    return el("section", { "aria-labelledby": "diff-title" }, title,
      el("p", { class: "muted", text: error.code === "NoPreview" ? `No text to compare: ${error.message}` : explain(error) }));
  }
  const lines = lineDiff(...texts);
  const near = (k) => lines.slice(Math.max(0, k - 2), k + 3).some(([mark]) => mark !== " ");
  const shown = [];
  lines.forEach(([mark, text], k) => {
    if (mark === "-") shown.push(el("del", {}, `− ${text}\n`));
    else if (mark === "+") shown.push(el("ins", {}, `+ ${text}\n`));
    else if (near(k)) shown.push(`  ${text}\n`);
    else if (shown.at(-1) !== "…\n") shown.push("…\n");
  });
  const changed = lines.filter(([mark]) => mark !== " ").length;
  return el("section", { "aria-labelledby": "diff-title" }, title,
    changed ? el("pre", { class: "diff", id: "diff", tabindex: "0", "aria-label": `Changes from version ${prev.number} to ${cur.number}` }, shown)
      : el("p", { class: "muted", text: "The text is the same." }));
}

// For reviewers: earlier files with the same bytes and how each ended, and the uploader's
// recent files.
async function relatedSection(file) {
  if (!mayDecide() || file.stage === "Uploaded") return null;
  let related;
  try { related = await api(`/api/files/${file.id}/related`); } catch { return null; }
  const item = (f) => {
    const how = (STAGE_WORDS[f.stage] ?? f.stage).toLowerCase();
    const who = f.decidedBy ? ` by ${f.decidedBy.name}${f.decidedTime ? ` on ${when(f.decidedTime)}` : ""}` : "";
    return el("li", {}, el("a", { href: `#/files/${f.id}`, text: f.name }),
      ` — ${how}${who}`, f.reason ? [": ", el("q", { text: f.reason })] : null);
  };
  const parts = [el("h2", { text: "Related files" })];
  parts.push(el("h3", { text: "The same bytes before" }), related.sameBytes.length
    ? el("ul", { id: "same-bytes" }, related.sameBytes.map(item))
    : el("p", { class: "muted", text: "No earlier file had these bytes." }));
  if (related.byUploader.length) {
    parts.push(el("h3", { text: `${file.uploader?.name ?? "The uploader"}'s recent files` }),
      el("ul", { id: "by-uploader" }, related.byUploader.map(item)));
  }
  return el("section", { id: "related" }, parts);
}

// The uploader's turn: a new version after a change request (or the file taken back).
function newVersionForm(file, refresh) {
  if (!may(file, "sendNewVersion")) return null;
  const input = el("input", { id: "new-version", type: "file" });
  const result = el("div", { "aria-live": "assertive" });
  const bar = el("progress", { max: "100", value: "0", "aria-label": "Upload progress", hidden: true });
  const numbers = el("p", { class: "meter", hidden: true });
  input.addEventListener("change", async () => {
    const chosen = input.files[0];
    if (!chosen) return;
    input.disabled = true;
    bar.hidden = false;
    numbers.hidden = false;
    const type = chosen.type || null;
    const meter = transferMeter(chosen.size, bar, numbers);
    try {
      if (chosen.size > DIRECT_ABOVE) {
        // Too large for one request: straight to storage, then the word that it is in.
        const ticket = await api(`/api/files/${file.id}/versions/uploads`, { method: "POST", body: { size: chosen.size } });
        await sendBlocks(ticket.uploadUrl, chosen, type, meter, (text) => { result.replaceChildren(message("notice", text)); });
        await api(ticket.links.complete, { method: "POST" });
      } else {
        await sendWithProgress({ method: "POST", url: `/api/files/${file.id}/versions`,
          headers: { ...authHeaders(), ...(type ? { "Content-Type": type } : {}) }, body: chosen,
          onProgress: (sent) => meter.partial("body", sent) });
      }
      lasting = message("notice", "New version sent: it is checked again, then its review starts over.");
      await refresh();
    } catch (error) {
      result.replaceChildren(message("error", error.code === "NotTheUploader"
        ? "Only the person who uploaded the file may send a new version." : explain(error)));
      input.disabled = false;
    }
  });
  return el("section", { "aria-labelledby": "new-version-title" },
    el("h2", { id: "new-version-title", text: "Send a new version" }),
    el("p", { class: "muted", text: "For the uploader: the new version is scanned and analysed, and its review starts again." }),
    el("p", {}, el("label", { for: "new-version", text: "Choose the new version" }), " ", input), bar, numbers, result);
}

let pollTimer = null;

// A file that has ended says how, by whom, when and why, before anything else.
function outcomeBanner(file, steps) {
  const last = (approved) => [...(file.approvals ?? [])].reverse().find((d) => d.approved === approved);
  const by = (d) => (d ? ` by ${d.reviewer} on ${when(d.decidedTime)}${d.comment ? `: “${d.comment}”` : ""}` : "");
  const text = {
    Approved: () => `Approved${by(last(true))}.`,
    Rejected: () => `Rejected${by(last(false))}.`,
    Expired: () => "Expired: nobody decided before the deadline.",
    Withdrawn: () => "Withdrawn by its uploader.",
    ChangesRequested: () => {
      const asked = [...(file.approvals ?? [])].reverse().find((d) => d.decision === "requestChanges");
      return `Changes requested${by(asked)}. Waiting for the uploader's new version${file.deadline ? ` (by ${when(file.deadline)})` : ""}.`;
    },
    Revoked: () => {
      const r = [...(steps ?? [])].reverse().find((s) => s.step === "revoked");
      return r ? `Approval revoked by ${r.actor?.name ?? "a reviewer"} on ${when(r.time)}: “${r.comment}”.` : "Approval revoked.";
    },
    Blocked: () => `Blocked by the malware scan: ${file.scan?.threats?.length ? `found ${file.scan.threats.join(", ")}` : file.scan?.reason ?? "no verdict"}.`,
    Failed: () => `Failed: ${file.failure?.message ?? "the workflow failed"}.`,
  }[file.stage];
  if (!text) return null;
  const kind = file.stage === "Approved" ? "notice" : "warning";
  return el("p", { class: `${kind} outcome`, role: "note", id: "outcome", text: text() });
}

// A file that goes to review without a scanner's verdict says so before anything else.
function scanWarning(file) {
  if (file.scan?.verdict !== "unscannable" || file.stage === "Blocked") return null;
  return el("p", { class: "warning", role: "note", id: "scan-warning",
    text: `Warning: this file could not be scanned for malware (${file.scan.reason}). Nobody has checked its contents: review it with care.` });
}

// What the scanner saw, in words: the verdict, the threats or the reason, the scanner.
function scanFact(scan) {
  if (!scan) return "Scanning…";
  const parts = [VERDICT_WORDS[scan.verdict] ?? scan.verdict];
  if (scan.threats?.length) parts.push(`found ${scan.threats.join(", ")}`);
  if (scan.reason) parts.push(scan.reason);
  if (scan.scanner) {
    const versions = [scan.scanner.engine, scan.scanner.signatures && `signatures ${scan.scanner.signatures}`]
      .filter(Boolean).join(", ");
    parts.push(`by ${scan.scanner.name}${versions ? ` (${versions})` : ""}`);
  }
  return el("span", { class: `scan scan-${scan.verdict}`, text: parts.join(" — ") });
}

async function fileView(id, gen) {
  const render = async () => {
    const [file, history] = await Promise.all([api(`/api/files/${id}`), api(`/api/files/${id}/history`)]);
    const shown = previews(file);
    const facts = [["Stage", stageBadge(file.stage)], ["Uploader", file.uploader?.name ?? "anonymous"],
      ["Uploaded", `${when(file.createdTime)} (${age(file.createdTime)} ago)`], ["Declared type", declaredType(file)], ["Size", bytes(file.size)]];
    if (file.version > 1) facts.push(["Version", `${file.version} (after ${file.version - 1} change ${file.version === 2 ? "request" : "requests"})`]);
    if (file.deadline) facts.push(["Decide by", when(file.deadline)]);
    if (file.failure) facts.push(["Failure", `${file.failure.code}: ${file.failure.message}`]);
    if (file.downloads) {
      const { count, limit } = file.downloads;
      facts.push(["Downloads", `${count} ${count === 1 ? "time" : "times"}${limit ? ` of ${limit} allowed` : ""}`]);
    }
    facts.push(["Malware scan", scanFact(file.scan)]);
    if (gen !== generation) return;
    // In the order a reviewer decides: what happened, the evidence, then the decision last.
    show(gen, file.name, lasting,
      outcomeBanner(file, history.steps), scanWarning(file),
      el("dl", { class: "facts", id: "facts" }, facts.map(([k, v]) => [el("dt", { text: k }), el("dd", {}, v)])),
      downloadSection(file),
      el("h2", { text: "Analysis" }), ...analysisFacts(file),
      ...((await previewOf(file, shown)) ?? []),
      versionsSection(file), await diffSection(file, shown), await relatedSection(file),
      el("h2", { text: "History" }), historyList(history.steps),
      decisionForm(file, render), newVersionForm(file, render), withdrawForm(file, render),
      revokeForm(file, render), noteForm(file, render));
    // Work in progress (the analysis, the workflow's start) is shown as it finishes.
    clearTimeout(pollTimer);
    if (file.stage === "Analyzing" || file.stage === "Uploaded" || file.stage === "Scanning") {
      pollTimer = setTimeout(() => {
        if (gen === generation) render().catch((e) => { if (unreachable(e)) connectionLost(e, render); });
      }, 1500);
    }
  };
  await render();
}

// ---- upload ----

// Blocks of one large upload sent at once (measured: docs/performance.md, "The page's uploads").
const BLOCKS_IN_FLIGHT = 4;

class Cancelled extends Error {}

// What a transfer under way can be asked to do: stop. Every request it started is aborted.
function transferControl() {
  const requests = new Set();
  return {
    cancelled: false,
    track(xhr) { requests.add(xhr); return () => requests.delete(xhr); },
    cancel() { this.cancelled = true; for (const xhr of requests) xhr.abort(); },
  };
}

function sendWithProgress({ method, url, headers, body, onProgress, control }) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    const untrack = control?.track(xhr) ?? (() => {});
    xhr.open(method, url);
    for (const [k, v] of Object.entries(headers ?? {})) xhr.setRequestHeader(k, v);
    xhr.upload.addEventListener("progress", (e) => onProgress?.(e.loaded));
    xhr.addEventListener("load", () => {
      untrack();
      let parsed = null;
      try { parsed = JSON.parse(xhr.responseText); } catch { /* not JSON */ }
      if (xhr.status >= 200 && xhr.status < 300) resolve(parsed);
      else reject(new ApiError(xhr.status, parsed));
    });
    xhr.addEventListener("error", () => { untrack(); reject(new ApiError(0, null)); });
    xhr.addEventListener("abort", () => { untrack(); reject(control?.cancelled ? new Cancelled() : new ApiError(0, null)); });
    xhr.send(body);
  });
}

const sleep = (ms) => new Promise((r) => { setTimeout(r, ms); });
// Worth another try: the connection dropped, or storage or the app is briefly unavailable.
const transient = (e) => e.status === 0 || e.status === 408 || e.status === 429 || e.status >= 500;

// How far a transfer is, in numbers: percentage, bytes, speed (of this session's bytes: blocks
// stored before a resume are counted as done, not as speed).
function transferMeter(total, bar, line) {
  const started = performance.now();
  let stored = 0;
  let resumed = 0;
  const partial = new Map();
  const draw = () => {
    const sent = Math.min(total, stored + [...partial.values()].reduce((a, b) => a + b, 0));
    bar.value = total ? (100 * sent) / total : 100;
    const secs = (performance.now() - started) / 1000;
    const speed = secs > 0.5 && sent > resumed ? ` · ${bytes((sent - resumed) / secs)}/s` : "";
    line.textContent = `${total ? Math.floor((100 * sent) / total) : 100} % · ${bytes(sent)} of ${bytes(total)}${speed}`;
  };
  return {
    resumedFrom(n) { stored += n; resumed = n; draw(); },
    partial(key, n) { partial.set(key, n); draw(); },
    stored(key, n) { partial.delete(key); stored += n; draw(); },
  };
}

// A large upload's journal: the blocks storage acknowledged, so that a reload, a closed tab or
// a lost connection resumes from there. Storage itself cannot be asked: Get Block List needs
// read permission, which an upload URL never carries. Kept in this browser, keyed by the
// file's name, size and modification time, until the upload completes or its URL expires.
const journals = {
  key: (file) => `fa.upload.${file.name}|${file.size}|${file.lastModified}`,
  load(file) {
    try {
      const j = JSON.parse(localStorage.getItem(this.key(file)) ?? "null");
      // A URL about to expire is not worth resuming with: the commit would be refused.
      return j && Date.parse(j.expiresAt) > Date.now() + 60_000 ? j : null;
    } catch { return null; }
  },
  save(file, journal) { try { localStorage.setItem(this.key(file), JSON.stringify(journal)); } catch { /* full or off: no resume */ } },
  drop(file) { localStorage.removeItem(this.key(file)); },
  // Uploads interrupted in this browser whose URLs still work: their names and how far they got.
  pending() {
    const found = [];
    for (let i = 0; i < localStorage.length; i += 1) {
      const key = localStorage.key(i);
      if (!key?.startsWith("fa.upload.")) continue;
      try {
        const j = JSON.parse(localStorage.getItem(key));
        if (Date.parse(j.expiresAt) > Date.now() + 60_000) found.push(j);
        else localStorage.removeItem(key);
      } catch { localStorage.removeItem(key); }
    }
    return found;
  },
};

const blockId = (n) => btoa(`block-${String(n).padStart(6, "0")}`);

// A file to an upload URL in blocks (Put Block, then Put Block List): a few at a time, each
// sent again on a dropped connection (only that block), skipping the blocks in `done`.
async function sendBlocks(uploadUrl, file, type, meter, say, { done = new Set(), onStored = () => {}, control } = {}) {
  const count = Math.ceil(file.size / BLOCK_BYTES);
  const size = (n) => Math.min(BLOCK_BYTES, file.size - n * BLOCK_BYTES);
  meter.resumedFrom([...done].reduce((sum, n) => sum + size(n), 0));
  const pending = [...Array(count).keys()].filter((n) => !done.has(n));
  let next = 0;
  const worker = async () => {
    while (next < pending.length) {
      const n = pending[next];
      next += 1;
      const chunk = file.slice(n * BLOCK_BYTES, n * BLOCK_BYTES + size(n));
      for (let attempt = 1; ; attempt += 1) {
        try {
          await sendWithProgress({ method: "PUT", url: `${uploadUrl}&comp=block&blockid=${encodeURIComponent(blockId(n))}`,
            body: chunk, onProgress: (sent) => meter.partial(n, sent), control });
          break;
        } catch (error) {
          meter.partial(n, 0);
          if (error instanceof Cancelled || !transient(error) || attempt >= 30) throw error;
          say(`Connection lost; retrying block ${n + 1} (attempt ${attempt + 1})…`);
          await sleep(Math.min(1000 * 2 ** (attempt - 1), 10000));
        }
      }
      meter.stored(n, chunk.size);
      onStored(n);
    }
  };
  await Promise.all(Array.from({ length: Math.min(BLOCKS_IN_FLIGHT, pending.length) }, worker));
  const list = `<?xml version="1.0" encoding="utf-8"?><BlockList>${[...Array(count).keys()].map((n) => `<Latest>${blockId(n)}</Latest>`).join("")}</BlockList>`;
  for (let attempt = 1; ; attempt += 1) {
    try {
      await sendWithProgress({ method: "PUT", url: `${uploadUrl}&comp=blocklist`, control,
        headers: { ...(type ? { "x-ms-blob-content-type": type } : {}), "Content-Type": "application/xml" }, body: list });
      break;
    } catch (error) {
      if (error instanceof Cancelled || !transient(error) || attempt >= 30) throw error;
      await sleep(Math.min(1000 * 2 ** (attempt - 1), 10000));
    }
  }
}

// A large file straight to storage, resumed from its journal when this browser sent part of it
// before.
async function uploadDirect(file, type, meter, say, control) {
  let journal = journals.load(file);
  if (journal) {
    say(`Resuming ${file.name}: ${journal.done.length} of ${Math.ceil(file.size / BLOCK_BYTES)} blocks were already stored.`);
  } else {
    const ticket = await api("/api/files/uploads", { method: "POST",
      body: type ? { name: file.name, size: file.size, contentType: type } : { name: file.name, size: file.size } });
    journal = { id: ticket.id, name: file.name, size: file.size, uploadUrl: ticket.uploadUrl,
      expiresAt: ticket.expiresAt, complete: ticket.links.complete, done: [] };
    journals.save(file, journal);
  }
  await sendBlocks(journal.uploadUrl, file, type, meter, say, { done: new Set(journal.done), control,
    onStored: (n) => { journal.done.push(n); journals.save(file, journal); } });
  // Where no storage event starts the workflow (local mode on Azure Storage); harmless elsewhere.
  await api(journal.complete, { method: "POST" });
  journals.drop(file);
  return journal.id;
}

async function uploadSmall(file, type, meter, control) {
  const status = await sendWithProgress({ method: "POST", url: `/api/files?name=${encodeURIComponent(file.name)}`,
    headers: { ...authHeaders(), ...(type ? { "Content-Type": type } : {}) }, body: file, control,
    onProgress: (sent) => meter.partial("body", sent) });
  return status.id;
}

function uploadView(gen) {
  const input = el("input", { id: "file", type: "file" });
  // No bar until there is something to measure.
  const bar = el("progress", { id: "progress", max: "100", value: "0", "aria-label": "Upload progress", hidden: true });
  const numbers = el("p", { id: "upload-meter", class: "meter", hidden: true });
  const status = el("p", { id: "upload-status", role: "status", "aria-live": "polite" });
  const cancel = el("button", { type: "button", id: "cancel-upload", text: "Cancel upload", hidden: true });
  const drop = el("div", { class: "drop", id: "drop" },
    el("p", {}, el("label", { for: "file", text: "Choose a file" }), " or drop one here."), input);
  const interrupted = journals.pending().map((j) => el("p", { class: "warning", role: "note",
    text: `The upload of ${j.name} (${bytes(j.size)}) stopped at ${Math.floor((100 * j.done.length * BLOCK_BYTES) / Math.max(j.size, 1))} %: choose the same file to resume it.` }));
  const start = async (file) => {
    if (!file) return;
    input.disabled = true;
    const type = file.type || null;
    const control = transferControl();
    const meter = transferMeter(file.size, bar, numbers);
    const say = (text) => { status.textContent = text; };
    bar.hidden = false;
    numbers.hidden = false;
    cancel.hidden = false;
    cancel.onclick = () => control.cancel();
    say(`Uploading ${file.name} (${bytes(file.size)})…`);
    try {
      const id = file.size > DIRECT_ABOVE
        ? await uploadDirect(file, type, meter, say, control)
        : await uploadSmall(file, type, meter, control);
      bar.value = 100;
      say("Uploaded.");
      location.hash = `#/files/${id}`;
    } catch (error) {
      if (error instanceof Cancelled) {
        say(file.size > DIRECT_ABOVE
          ? "Cancelled. The blocks already sent are kept for a while: choose the same file to resume."
          : "Cancelled: nothing was stored.");
      } else {
        status.replaceChildren(message("error", explain(error)));
      }
      cancel.hidden = true;
      // Cleared, so that choosing the same file again (to resume) counts as a choice.
      input.value = "";
      input.disabled = false;
    }
  };
  input.addEventListener("change", () => start(input.files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); start(e.dataTransfer.files[0]); });
  show(gen, "Upload a file", interrupted, drop, bar, numbers, cancel, status,
    el("p", { class: "muted", text: `Files over ${bytes(DIRECT_ABOVE)} go straight to storage in ${bytes(BLOCK_BYTES)} blocks, ${BLOCKS_IN_FLIGHT} at a time; a dropped connection resends only the blocks it interrupted, and a reload or a closed tab resumes when the same file is chosen again.` }));
}

// ---- a lost connection ----

// Worth waiting out: the network, the app or its storage briefly away.
const unreachable = (e) => e.code === "NetworkError" || e.status === 502 || e.status === 503 || e.status === 504;
let reconnectTimer = null;
// Counts losses: a retry whose redraw lost the connection again leaves the new banner up.
let losses = 0;

// The view stays as it was, under a banner that says what happened, retries by itself with a
// growing pause, and offers to retry now; `again` redraws the view once the app answers.
function connectionLost(error, again, attempt = 1) {
  clearTimeout(reconnectTimer);
  losses += 1;
  const loss = losses;
  const banner = document.getElementById("connection");
  const wait = Math.min(1000 * 2 ** (attempt - 1), 15000);
  const retry = async () => {
    clearTimeout(reconnectTimer);
    try {
      await again();
      if (loss === losses) reconnected();
    } catch (e) {
      if (unreachable(e)) connectionLost(e, again, attempt + 1);
      else { banner.hidden = true; show(generation, "Something went wrong", message("error", explain(e))); }
    }
  };
  banner.replaceChildren(
    el("span", { text: `${explain(error)} Trying again in ${Math.round(wait / 1000)} s…` }),
    el("button", { type: "button", onclick: retry, text: "Retry now" }));
  banner.hidden = false;
  reconnectTimer = setTimeout(retry, wait);
}

function reconnected() {
  clearTimeout(reconnectTimer);
  const banner = document.getElementById("connection");
  banner.hidden = true;
  banner.replaceChildren();
}

async function route() {
  clearTimeout(pollTimer);
  generation += 1;
  lasting = null;
  const gen = generation;
  try {
    await whoAmI();
  } catch (error) {
    // The page already shows something: keep it, and come back when the app does.
    if (unreachable(error) && main().childElementCount) { connectionLost(error, routeOrThrow); return; }
    show(gen, "File Approver", message("error", explain(error)));
    return;
  }
  reconnected();
  renderWho();
  if (me.state === "signedOut") { signInView(me.error, gen); return; }
  const hash = location.hash || "#/";
  try {
    const file = hash.match(/^#\/files\/([0-9a-f-]{36})$/);
    if (file) await fileView(file[1], gen);
    else if (hash === "#/upload") uploadView(gen);
    else await inboxView(gen);
  } catch (error) {
    if (error.code === "Unauthorized") { signInView(error, gen); return; }
    if (unreachable(error)) { connectionLost(error, routeOrThrow); return; }
    show(gen, "Something went wrong", message("error", explain(error)));
  }
}

// The route again, failing (for the retry to see) when the app is still away.
async function routeOrThrow() {
  await whoAmI();
  await route();
}

window.addEventListener("hashchange", route);
route();
