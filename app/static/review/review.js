// The review page: score a class set for one item, flagged rows first, evidence per row, corrections,
// CSV download for `scorer add-item`. Plain browser JavaScript, no framework and no build step, so the
// page works offline from the package. Answer text is only ever put into the page with textContent
// (never as HTML: answers are untrusted input) and is never logged.
"use strict";

const KEY_STORAGE = "scorer.review.apiKey"; // sessionStorage: the key lives only as long as the tab
const REASONS = {
  low_confidence: "low confidence",
  unknown_words: "unknown words",
  neighbours_disagree: "neighbours disagree",
};
const CSV_COLUMNS = ["id", "item_id", "answer", "score", "model_score", "corrected", "confidence",
  "needs_review", "review_reasons"];

const state = {
  key: sessionStorage.getItem(KEY_STORAGE) || "",
  items: new Map(), // item_id -> the /items entry
  itemId: null, // the item the current results belong to
  rows: [], // {index, id, answer, result, corrected}; `corrected` is null or the teacher's score
  open: null, // index of the row shown in the detail panel
};

const $ = (id) => document.getElementById(id);

// --- API -------------------------------------------------------------------------------------------

class ApiError extends Error {
  constructor(status, message, type) {
    super(message);
    this.status = status;
    this.type = type;
  }
}

// Every call carries the key (when one is set) exactly as an API client would send it.
async function api(path, body) {
  const headers = { Accept: "application/json" };
  if (state.key) headers.Authorization = `Bearer ${state.key}`;
  const init = { method: body === undefined ? "GET" : "POST", headers, cache: "no-store" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, "the service could not be reached", "network");
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    // not JSON (a proxy's error page, say): the status line is all we have
  }
  if (!response.ok) {
    throw new ApiError(response.status, (data && data.error) || response.statusText || "request failed",
      (data && data.error_type) || "http_error");
  }
  return data;
}

// What the teacher should do about an error, not just its code.
function explain(error) {
  if (!(error instanceof ApiError)) return `Something went wrong: ${error.message}`;
  const detail = `(${error.status ? error.status + ": " : ""}${error.message})`;
  switch (error.status) {
    case 401:
      return `The service needs a valid API key ${detail}. Enter your key under Access and choose “Use key”.`;
    case 403:
      return `This API key may not do that ${detail}.`;
    case 413:
      return `The set is too large for one request ${detail}. Split it into smaller files.`;
    case 429:
      return `The service is busy ${detail}. Try again in a minute.`;
    case 503:
      return `The service is not ready yet ${detail}. Try again in a moment.`;
    default:
      return `The request failed ${detail}.`;
  }
}

function showError(message) {
  const box = $("error");
  box.textContent = message;
  box.hidden = !message;
}

function announce(message) {
  $("status").textContent = message;
}

// --- Access and items ------------------------------------------------------------------------------

async function loadItems() {
  const select = $("item");
  const previous = select.value;
  select.replaceChildren(new Option("Loading items…", ""));
  try {
    const items = await api("/items");
    state.items = new Map(items.map((item) => [item.item_id, item]));
    select.replaceChildren(new Option("Choose an item", ""));
    for (const item of items) {
      const [lo, hi] = item.score_range;
      const label = item.status === "ready" ? `${item.item_id} (scores ${lo}–${hi})`
        : `${item.item_id} (being prepared)`;
      const option = new Option(label, item.item_id);
      option.disabled = item.status !== "ready"; // a preparing item is not scored yet
      select.append(option);
    }
    if (previous && state.items.has(previous)) select.value = previous;
    else if (items.length === 1) select.value = items[0].item_id;
    describeItem();
    showError("");
  } catch (error) {
    state.items = new Map();
    select.replaceChildren(new Option(error.status === 401 ? "Enter an API key to load the items" :
      "Items could not be loaded", ""));
    showError(explain(error));
  }
}

function describeItem() {
  const item = state.items.get($("item").value);
  let text = "";
  if (item) {
    text = `Version ${item.adapter_version}; review threshold ${Math.round(item.review_threshold * 100)} %; `;
    text += item.evidence ? `evidence: ${item.evidence.answers} scored answers, ${item.evidence.k} shown per row.`
      : "no evidence index (no similar answers can be shown).";
  }
  $("item-help").textContent = text;
}

// --- Reading the answers ---------------------------------------------------------------------------

// RFC 4180 CSV: quoted fields may hold the delimiter, doubled quotes and line breaks. The delimiter is
// the header line's most frequent of , ; and tab (spreadsheets in many locales export with ;).
function parseCsv(text) {
  text = text.replace(/^\uFEFF/, "");
  const header = text.split(/\r?\n/, 1)[0];
  const delimiter = [",", ";", "\t"].reduce((best, d) => (header.split(d).length > header.split(best).length ? d : best));
  const rows = [];
  let row = [];
  let field = "";
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    if (quoted) {
      if (c !== '"') field += c;
      else if (text[i + 1] === '"') { field += '"'; i++; }
      else quoted = false;
    } else if (c === '"' && field === "") {
      quoted = true;
    } else if (c === delimiter) {
      row.push(field);
      field = "";
    } else if (c === "\n" || c === "\r") {
      if (c === "\r" && text[i + 1] === "\n") i++;
      row.push(field);
      rows.push(row);
      row = [];
      field = "";
    } else {
      field += c;
    }
  }
  if (field !== "" || row.length) {
    row.push(field);
    rows.push(row);
  }
  return rows.filter((r) => r.length > 1 || r[0].trim() !== ""); // blank lines are not answers
}

function rowsFromCsv(text) {
  const table = parseCsv(text);
  if (!table.length) throw new Error("the CSV file is empty");
  const names = table[0].map((name) => name.trim().toLowerCase());
  const answerAt = names.indexOf("answer");
  const idAt = names.indexOf("id");
  if (answerAt < 0) throw new Error("the CSV file needs a header row with an “answer” column");
  return table.slice(1).map((cells, n) => ({
    id: idAt >= 0 && (cells[idAt] || "").trim() ? cells[idAt].trim() : String(n + 1),
    answer: cells[answerAt] ?? "",
  }));
}

function rowsFromText(text) {
  return text.split(/\r?\n/).filter((line) => line.trim() !== "")
    .map((answer, n) => ({ id: String(n + 1), answer }));
}

// --- Scoring ---------------------------------------------------------------------------------------

function jobThreshold() {
  const fromQuery = new URLSearchParams(location.search).get("job_threshold");
  const value = Number(fromQuery ?? document.body.dataset.jobThreshold);
  return Number.isFinite(value) && value >= 0 ? value : 200;
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function showProgress(done, total, status) {
  $("progress-box").hidden = false;
  $("progress").max = Math.max(total, 1);
  $("progress").value = done;
  $("progress-text").textContent = `Scoring as a background job (${status}): ${done} of ${total} answers done.`;
}

// Large sets go through a job: one long /batch request would show no progress and could hit the
// per-request row limit; the job reports done/total while it runs.
async function scoreAsJob(payload) {
  const total = payload.answers.length;
  showProgress(0, total, "sending");
  const { job_id: jobId } = await api("/jobs", payload);
  let delay = 300;
  for (;;) {
    const job = await api(`/jobs/${encodeURIComponent(jobId)}`);
    showProgress(job.done, job.total, job.status);
    if (job.status === "done") return job.results;
    if (["failed", "cancelled", "deleted"].includes(job.status)) {
      throw new ApiError(0, `the job ${job.status}${job.error ? ": " + job.error : ""}`, `job_${job.status}`);
    }
    await sleep(delay);
    delay = Math.min(delay * 1.5, 2000); // quick first answers for small jobs, gentle polling for long ones
  }
}

async function score(event) {
  event.preventDefault();
  showError("");
  const itemId = $("item").value;
  if (!state.items.has(itemId)) {
    showError(state.items.size ? "Choose an item first." : "No items are loaded: check the API key under Access.");
    $("item").focus();
    return;
  }
  let inputs;
  try {
    const file = $("answers-file").files[0];
    inputs = file ? rowsFromCsv(await file.text()) : rowsFromText($("answers-text").value);
  } catch (error) {
    showError(`The answers could not be read: ${error.message}.`);
    return;
  }
  if (!inputs.length) {
    showError("There are no answers: paste them one per line or choose a CSV file.");
    $("answers-text").focus();
    return;
  }

  const payload = {
    answers: inputs.map((row) => ({ id: row.id, item_id: itemId, answer: row.answer })),
    explain: true, // ask for each row's evidence (its nearest scored answers)
  };
  const useJob = inputs.length > jobThreshold();
  $("score-button").disabled = true;
  $("results").setAttribute("aria-busy", "true");
  $("progress-box").hidden = !useJob;
  announce(`Scoring ${inputs.length} answers${useJob ? " as a background job" : ""}…`);
  try {
    const results = useJob ? await scoreAsJob(payload) : (await api("/batch", payload)).results;
    // Results come back in the order sent (both /batch and jobs), one per row.
    state.itemId = itemId;
    state.rows = inputs.map((row, index) => ({ index, ...row, result: results[index], corrected: null }));
    state.open = null;
    renderResults();
    const flagged = state.rows.filter((row) => row.result.needs_review).length;
    const failed = state.rows.filter((row) => row.result.error).length;
    announce(`Scored ${inputs.length} answers for ${itemId}${useJob ? " (background job)" : ""}: ` +
      `${flagged} flagged for review, ${failed} not scored.`);
  } catch (error) {
    announce("");
    showError(explain(error));
  } finally {
    $("score-button").disabled = false;
    $("results").removeAttribute("aria-busy");
  }
}

// --- Results table ---------------------------------------------------------------------------------

// Failed rows, then flagged rows (least confident first), then the rest in the order given.
function reviewOrder(a, b) {
  const rank = (row) => (row.result.error ? 0 : row.result.needs_review ? 1 : 2);
  if (rank(a) !== rank(b)) return rank(a) - rank(b);
  if (rank(a) === 1 && a.result.confidence !== b.result.confidence) return a.result.confidence - b.result.confidence;
  return a.index - b.index;
}

const percent = (value) => (typeof value === "number" ? `${Math.round(value * 100)} %` : "–");
const reasonsText = (result) => (result.review_reasons || []).map((r) => REASONS[r] || r).join(", ");

function cell(tag, text, className) {
  const element = document.createElement(tag);
  element.textContent = text;
  if (className) element.className = className;
  return element;
}

function scoreCell(row) {
  const td = document.createElement("td");
  if (row.result.error) {
    td.textContent = row.corrected === null ? "–" : String(row.corrected);
  } else if (row.corrected !== null) {
    td.append(cell("strong", String(row.corrected)), ` (model ${row.result.score})`);
  } else {
    td.textContent = String(row.result.score);
  }
  return td;
}

function renderResults() {
  const body = $("results-body");
  const rows = [...state.rows].sort(reviewOrder);
  body.replaceChildren(...rows.map((row) => {
    const tr = document.createElement("tr");
    tr.dataset.index = row.index;
    tr.dataset.flagged = row.result.error ? "error" : row.result.needs_review ? "yes" : "no";
    tr.classList.toggle("is-open", state.open === row.index);
    const th = document.createElement("th");
    th.scope = "row";
    // A real button per row: reachable with Tab, opened with Enter or Space, announced as a button.
    const button = cell("button", "", "open-row");
    button.type = "button";
    button.append(cell("span", "Open row ", "visually-hidden"), String(row.id));
    button.setAttribute("aria-controls", "detail");
    button.setAttribute("aria-expanded", String(state.open === row.index));
    button.addEventListener("click", () => openRow(row.index));
    th.append(button);
    const answer = cell("td", row.answer, "answer");
    const review = row.result.error ? cell("td", `error: ${row.result.error}`, "reason error-text")
      : cell("td", row.result.needs_review ? reasonsText(row.result) || "flagged" : "–", "reason");
    tr.append(th, answer, scoreCell(row), cell("td", percent(row.result.confidence), "num"), review);
    if (row.corrected !== null) tr.classList.add("corrected");
    return tr;
  }));
  const flagged = state.rows.filter((row) => row.result.needs_review).length;
  const failed = state.rows.filter((row) => row.result.error).length;
  const corrected = state.rows.filter((row) => row.corrected !== null).length;
  $("summary").textContent = `${state.rows.length} answers for ${state.itemId}: ${flagged} flagged for review, ` +
    `${failed} not scored, ${corrected} corrected.`;
  $("results").hidden = false;
}

// Up and down arrows move between the rows' buttons, so a long table needs no Tab through every row.
function moveBetweenRows(event) {
  if (!event.target.classList.contains("open-row") || !["ArrowDown", "ArrowUp"].includes(event.key)) return;
  const buttons = [...document.querySelectorAll("#results-body .open-row")];
  const next = buttons[buttons.indexOf(event.target) + (event.key === "ArrowDown" ? 1 : -1)];
  if (next) {
    event.preventDefault();
    next.focus();
  }
}

// --- Detail panel: facts, evidence, correction -----------------------------------------------------

function fact(list, term, value) {
  list.append(cell("dt", term), cell("dd", value));
}

function table(caption, headings, rows) {
  const element = document.createElement("table");
  element.className = "evidence-table";
  element.append(cell("caption", caption));
  const head = document.createElement("tr");
  head.append(...headings.map((h) => {
    const th = cell("th", h);
    th.scope = "col";
    return th;
  }));
  const thead = document.createElement("thead");
  thead.append(head);
  const tbody = document.createElement("tbody");
  for (const values of rows) {
    const tr = document.createElement("tr");
    tr.append(...values.map((v) => cell("td", v)));
    tbody.append(tr);
  }
  element.append(thead, tbody);
  return element;
}

function renderEvidence(row) {
  const box = $("evidence");
  box.replaceChildren();
  const evidence = row.result.evidence;
  const item = state.items.get(state.itemId);
  if (row.result.error) {
    box.append(cell("p", "No evidence: this answer was not scored."));
    return;
  }
  if (!evidence) {
    // Not every export builds an evidence index: say so rather than show an empty table.
    box.append(cell("p", item && item.evidence ? "The service returned no evidence for this answer."
      : "This item has no evidence index: there are no similar scored answers to show.", "no-evidence"));
    return;
  }
  const neighbours = evidence.neighbours || [];
  const withText = neighbours.some((n) => typeof n.text === "string");
  const agreement = evidence.agrees ? "agrees with" : "disagrees with";
  box.append(cell("p", `The ${neighbours.length} most similar scored answers point to score ` +
    `${evidence.neighbour_score}, which ${agreement} the model's ${row.result.score}.`,
  evidence.agrees ? "agrees" : "disagrees"));
  const headings = ["Answer id", "Score", "Similarity"].concat(withText ? ["Text"] : []);
  box.append(table("Most similar scored answers", headings, neighbours.map((n) =>
    [String(n.id), String(n.score), n.similarity.toFixed(2)].concat(withText ? [n.text ?? ""] : []))));
  if (evidence.nearest_by_score && evidence.nearest_by_score.length) {
    box.append(table("Closest scored answer at each score", ["Score", "Answer id", "Similarity"],
      evidence.nearest_by_score.map((n) => [String(n.score), String(n.id), n.similarity.toFixed(2)])));
  }
}

function openRow(index) {
  const row = state.rows[index];
  state.open = index;
  const result = row.result;
  $("detail-heading").textContent = `Row ${row.id}`;
  $("detail-answer").textContent = row.answer;
  const facts = $("detail-facts");
  facts.replaceChildren();
  if (result.error) {
    fact(facts, "Error", `${result.error} (${result.error_type})`);
  } else {
    fact(facts, "Model score", String(result.score));
    fact(facts, "Confidence", percent(result.confidence));
    const [lo] = state.items.get(state.itemId)?.score_range ?? [0];
    fact(facts, "Probabilities", (result.probabilities || []).map((p, k) => `${lo + k}: ${percent(p)}`).join(", "));
    fact(facts, "Review", result.needs_review ? reasonsText(result) || "flagged" : "not flagged");
    if (result.truncated) fact(facts, "Note", "the answer was longer than the model reads and was cut");
    fact(facts, "Scored by", (result.members || []).join(", ") || result.adapter_version);
  }
  if (row.corrected !== null) fact(facts, "Your score", String(row.corrected));
  renderEvidence(row);

  const [lo, hi] = state.items.get(state.itemId)?.score_range ?? [0, 0];
  const select = $("correct-score");
  select.replaceChildren();
  for (let s = lo; s <= hi; s++) select.append(new Option(String(s), String(s)));
  select.value = String(row.corrected ?? result.score ?? lo);

  $("detail").hidden = false;
  renderResults();
  $("detail-heading").focus(); // the panel's heading, so a screen reader starts reading the row
}

function focusRowButton(index) {
  const button = document.querySelector(`#results-body tr[data-index="${index}"] .open-row`);
  if (button) button.focus();
}

function closeDetail() {
  const index = state.open;
  state.open = null;
  $("detail").hidden = true;
  renderResults();
  if (index !== null) focusRowButton(index); // back where the teacher was in the table
}

function setCorrection(value) {
  const row = state.rows[state.open];
  // Choosing the model's own score is no correction: the CSV's `corrected` column says no.
  row.corrected = value === null || value === row.result.score ? null : value;
  const index = state.open;
  openRow(index);
  $("correct-save").focus();
  announce(row.corrected === null ? `Row ${row.id}: the model's score ${row.result.score ?? "(none)"} is kept.`
    : `Row ${row.id}: your score ${row.corrected} replaces the model's ${row.result.score ?? "(none)"}.`);
}

// --- CSV download ----------------------------------------------------------------------------------

function csvField(value) {
  const text = value === null || value === undefined ? "" : String(value);
  return /[",\r\n]|^\s|\s$/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
}

// add-item reads `answer` and `score` (an integer and a non-blank answer on every row) and `item_id`:
// rows without a score or without text are left out, so the file loads as it is.
const exported = (row) => (row.corrected ?? row.result.score) != null && row.answer.trim() !== "";

function buildCsv() {
  const lines = [CSV_COLUMNS.join(",")];
  for (const row of state.rows) {
    if (!exported(row)) continue;
    const result = row.result;
    const values = {
      id: row.id,
      item_id: state.itemId,
      answer: row.answer,
      score: row.corrected ?? result.score,
      model_score: result.score,
      corrected: row.corrected === null ? "no" : "yes",
      confidence: result.confidence,
      needs_review: result.error ? "" : result.needs_review ? "yes" : "no",
      review_reasons: (result.review_reasons || []).join(";"),
    };
    lines.push(CSV_COLUMNS.map((name) => csvField(values[name])).join(","));
  }
  // The byte-order mark lets spreadsheet programs read the UTF-8 correctly; add-item skips it.
  return "\uFEFF" + lines.join("\r\n") + "\r\n";
}

function download() {
  const blob = new Blob([buildCsv()], { type: "text/csv;charset=utf-8" });
  const url = URL.createObjectURL(blob);
  const link = document.createElement("a");
  link.href = url;
  link.download = `review-${state.itemId}-${new Date().toISOString().slice(0, 10)}.csv`;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  const left = state.rows.filter((row) => !exported(row)).length;
  announce(`Downloaded ${link.download}${left ? `; ${left} row${left === 1 ? "" : "s"} without a score or text left out` : ""}.`);
}

// --- Wiring ----------------------------------------------------------------------------------------

function init() {
  $("api-key").value = state.key;
  $("key-form").addEventListener("submit", (event) => {
    event.preventDefault();
    state.key = $("api-key").value.trim();
    if (state.key) sessionStorage.setItem(KEY_STORAGE, state.key);
    else sessionStorage.removeItem(KEY_STORAGE);
    announce(state.key ? "Key saved for this tab." : "No key: requests are sent without one.");
    loadItems();
  });
  $("key-forget").addEventListener("click", () => {
    state.key = "";
    $("api-key").value = "";
    sessionStorage.removeItem(KEY_STORAGE);
    announce("Key forgotten.");
    loadItems();
  });
  $("item").addEventListener("change", describeItem);
  $("file-clear").addEventListener("click", () => {
    $("answers-file").value = ""; // back to the text box
    $("answers-text").focus();
  });
  $("score-form").addEventListener("submit", score);
  $("download").addEventListener("click", download);
  $("results-body").addEventListener("keydown", moveBetweenRows);
  $("correct-form").addEventListener("submit", (event) => {
    event.preventDefault();
    setCorrection(Number($("correct-score").value));
  });
  $("correct-undo").addEventListener("click", () => setCorrection(null));
  $("detail-close").addEventListener("click", closeDetail);
  $("detail").addEventListener("keydown", (event) => {
    if (event.key === "Escape") closeDetail();
  });
  loadItems();
}

init();
