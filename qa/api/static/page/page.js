// The question page: ask, read the cited answer, open it in its article.
// Article and answer text is only ever inserted as text nodes (textContent), never as HTML.
"use strict";

(() => {
  const $ = (id) => document.getElementById(id);
  const ui = {
    form: $("ask-form"), question: $("question"), askButton: $("ask-button"),
    result: $("result"), status: $("status"), answer: $("answer"), answerText: $("answer-text"),
    confidence: $("confidence"), cardsHeading: $("cards-heading"), cards: $("cards"),
    reader: $("reader"), readerClose: $("reader-close"), readerMeta: $("reader-meta"), readerTitle: $("reader-title"),
    readerStatus: $("reader-status"), readerText: $("reader-text"),
    corpusStatus: $("corpus-status"), corpusList: $("corpus-list"),
  };

  const documents = new Map(); // doc_id -> {doc_id, title, date, chars}
  const articles = new Map(); // doc_id -> Promise of the full article
  let documentsLoaded = null; // Promise, settled once the list has been fetched (or has failed)
  let askSeq = 0; // a newer question makes older answers stale
  let readerSeq = 0;
  let readerOpener = null; // the card or list item that opened the reader, to return focus to

  // ---------------------------------------------------------------- API
  class ApiError extends Error {
    constructor(message, code, status, retryAfterS) {
      super(message);
      this.code = code;
      this.status = status;
      this.retryAfterS = retryAfterS;
    }
  }

  const capitalize = (s) => (s ? s.charAt(0).toUpperCase() + s.slice(1) : s);

  /** Fetch JSON from the API; a failure becomes an ApiError whose message reads as plain words. */
  async function api(path, options = {}) {
    let resp;
    try {
      resp = await fetch(path, { ...options, headers: { Accept: "application/json", ...(options.headers || {}) } });
    } catch {
      throw new ApiError("Could not reach the server. Check that it is running, then try again.", "network", 0);
    }
    let body = null;
    try {
      body = await resp.json();
    } catch {
      body = null;
    }
    if (!resp.ok) {
      const err = body && body.error && typeof body.error.message === "string" ? body.error : null;
      const retry = Number.parseInt(resp.headers.get("Retry-After") || "", 10);
      const message = err
        ? `${capitalize(err.message)}.`.replace(/\.\.$/, ".")
        : `The server could not answer (HTTP ${resp.status}). Try again in a moment.`;
      throw new ApiError(message, err ? err.code : "http_error", resp.status, Number.isFinite(retry) ? retry : null);
    }
    if (body === null) {
      throw new ApiError("The server sent an answer this page cannot read. Try again.", "bad_response", resp.status);
    }
    return body;
  }

  function getArticle(docId) {
    if (!articles.has(docId)) {
      const p = api(`/documents/${encodeURIComponent(docId)}`);
      p.catch(() => articles.delete(docId)); // a failed fetch is retried next time
      articles.set(docId, p);
    }
    return articles.get(docId);
  }

  // ---------------------------------------------------------------- offsets
  /** UTF-16 index in `text` of the code-point offset `cp`: the API counts code points (Python's
   *  str), JavaScript strings count UTF-16 units, so each astral character (emoji) counts twice here. */
  function utf16Index(text, cp) {
    let i = 0;
    for (let n = 0; n < cp && i < text.length; n++) {
      i += text.codePointAt(i) > 0xffff ? 2 : 1;
    }
    return i;
  }

  function codePointLength(text) {
    let n = 0;
    for (const _ of text) n++;
    return n;
  }

  /** Where the answer sits in the citation's context, as UTF-16 [from, to]: from the server's
   *  `context_start`/`context_end` (code points into `context`), so a sentence that holds the
   *  answer twice is marked where it was cited; null for a citation without them. */
  function answerInContext(citation) {
    const ctx = citation.context || "";
    if (!Number.isInteger(citation.context_start) || !Number.isInteger(citation.context_end)) return null;
    return [utf16Index(ctx, citation.context_start), utf16Index(ctx, citation.context_end)];
  }

  // ---------------------------------------------------------------- DOM helpers
  function el(tag, className, text) {
    const node = document.createElement(tag);
    if (className) node.className = className;
    if (text !== undefined && text !== null) node.textContent = text;
    return node;
  }

  /** Fill `container` with `text`, the UTF-16 range [from, to) wrapped in a <mark>; returns the mark. */
  function fillWithMark(container, text, from, to) {
    const mark = el("mark", "", text.slice(from, to));
    container.replaceChildren(document.createTextNode(text.slice(0, from)), mark,
      document.createTextNode(text.slice(to)));
    return mark;
  }

  function setStatus(node, message, kind) {
    node.textContent = message || "";
    node.classList.toggle("loading", kind === "loading");
    node.classList.toggle("error", kind === "error");
  }

  function docTitle(docId) {
    const d = documents.get(docId);
    return d && d.title ? d.title : docId;
  }

  function docMeta(doc) {
    const parts = [doc && doc.date ? formatDate(doc.date) : "Undated"];
    if (doc && Number.isFinite(doc.chars)) parts.push(`${doc.chars.toLocaleString("en")} characters`);
    return parts.join(" · ");
  }

  function formatDate(iso) {
    const d = new Date(`${iso}T00:00:00Z`);
    if (Number.isNaN(d.getTime())) return iso;
    return d.toLocaleDateString("en-GB", { day: "numeric", month: "long", year: "numeric", timeZone: "UTC" });
  }

  // ---------------------------------------------------------------- articles in the corpus
  function loadDocuments() {
    documentsLoaded = (async () => {
      for (;;) {
        try {
          const all = [];
          let cursor = null;
          do {  // a page at a time, until the last
            const body = await api(`/documents?limit=1000${cursor ? `&cursor=${encodeURIComponent(cursor)}` : ""}`);
            all.push(...body.documents);
            cursor = body.next_cursor;
          } while (cursor);
          documents.clear();
          for (const d of all) documents.set(d.doc_id, d);
          renderDocuments();
          return;
        } catch (err) {
          if (err.code === "not_ready" || err.code === "busy") {
            setStatus(ui.corpusStatus, "The server is still starting; the list of articles follows shortly…", "loading");
            await new Promise((r) => setTimeout(r, 1000 * Math.min(Math.max(err.retryAfterS || 1, 1), 10)));
            continue;
          }
          setStatus(ui.corpusStatus, `The list of articles could not be loaded. ${err.message}`, "error");
          return;
        }
      }
    })();
    return documentsLoaded;
  }

  function renderDocuments() {
    const items = [...documents.values()].map((d) => {
      const li = el("li");
      const btn = el("button", "doc");
      btn.type = "button";
      btn.dataset.docId = d.doc_id;
      btn.append(el("span", "doc-title", d.title || d.doc_id), el("span", "meta", docMeta(d)));
      btn.title = d.title || d.doc_id;
      btn.addEventListener("click", () => navigate({ doc: d.doc_id }, btn));
      li.append(btn);
      return li;
    });
    ui.corpusList.replaceChildren(...items);
    setStatus(ui.corpusStatus, items.length
      ? `${items.length} article${items.length === 1 ? "" : "s"}; choose one to read it in full.`
      : "No articles yet.");
    markCurrent();
  }

  // ---------------------------------------------------------------- asking
  async function ask(question) {
    const seq = ++askSeq;
    ui.result.setAttribute("aria-busy", "true");
    ui.askButton.disabled = true;
    ui.askButton.textContent = "Asking…";
    ui.answer.hidden = true;
    ui.cardsHeading.hidden = true;
    ui.cards.replaceChildren();
    setStatus(ui.status, "Searching the articles…", "loading");
    try {
      const answer = await api("/ask", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ question }),
      });
      if (seq !== askSeq) return;
      const ids = [...answer.retrieved, ...answer.citations.map((c) => c.doc_id)];
      if (documentsLoaded) await documentsLoaded;
      if (ids.some((id) => !documents.has(id))) await loadDocuments(); // added since the page loaded
      if (seq !== askSeq) return;
      renderAnswer(answer);
    } catch (err) {
      if (seq !== askSeq) return;
      setStatus(ui.status, err.message, "error");
    } finally {
      if (seq === askSeq) {
        ui.result.setAttribute("aria-busy", "false");
        ui.askButton.disabled = false;
        ui.askButton.textContent = "Ask";
      }
    }
  }

  function renderAnswer(answer) {
    setStatus(ui.status, "");
    ui.answer.hidden = false;
    if (answer.answer === null) {
      ui.answerText.textContent = "Not in the articles";
      ui.answerText.classList.add("none");
      const best = answer.best_candidate;
      const guess = best
        ? ` The best candidate, “${best.text}”, has a ${Math.round(best.score * 100)}% chance of being right`
          + (answer.min_confidence !== null && answer.min_confidence !== undefined
            ? ` (below the ${Math.round(answer.min_confidence * 100)}% required).` : ".")
        : "";
      ui.confidence.replaceChildren(el("span", "", (answer.retrieved.length
        ? "No article answers this question. These came closest; open one to read it."
        : "No article answers this question.") + guess));
      ui.cardsHeading.textContent = "Closest articles";
      ui.cards.replaceChildren(...answer.retrieved.map((id) => passageCard(id)));
    } else {
      const when = answer.citations.length ? resolvedLabel(answer.citations[0]) : null;
      ui.answerText.textContent = when ? `${answer.answer} (${when})` : answer.answer;
      ui.answerText.classList.remove("none");
      const pct = Math.round(answer.score * 100);
      const meter = el("span", "meter");
      meter.setAttribute("aria-hidden", "true");
      const fill = el("span");
      fill.style.width = `${Math.min(Math.max(pct, 0), 100)}%`;
      meter.append(fill);
      ui.confidence.replaceChildren(el("span", "", `Confidence ${pct}% (the chance this answer is right)`), meter);
      const n = answer.citations.length;
      ui.cardsHeading.textContent = n === 1 ? "Source" : `Sources (${n})`;
      ui.cards.replaceChildren(...answer.citations.map((c) => citationCard(c)));
    }
    ui.cardsHeading.hidden = ui.cards.children.length === 0;
    markCurrent();
  }

  function cardButton(docId) {
    const btn = el("button", "card");
    btn.type = "button";
    btn.dataset.docId = docId;
    const doc = documents.get(docId);
    btn.append(el("span", "card-title", docTitle(docId)), el("span", "meta", docMeta(doc)));
    return btn;
  }

  /** "2 June 2025" (or "9 – 15 June 2025") for a citation whose span is a relative date. */
  function resolvedLabel(c) {
    if (c.resolved_date) return formatDate(c.resolved_date);
    if (c.resolved_start && c.resolved_end) return `${formatDate(c.resolved_start)} – ${formatDate(c.resolved_end)}`;
    return null;
  }

  /** Whether `url` is an http(s) address (a link to anything else is not made). */
  function isWebAddress(url) {
    try {
      return ["http:", "https:"].includes(new URL(url).protocol);
    } catch (e) {
      return false;
    }
  }

  function citationCard(c) {
    const li = el("li");
    const btn = cardButton(c.doc_id);
    btn.classList.add("citation");
    if (c.title) btn.querySelector(".card-title").textContent = c.title;
    const meta = [c.date ? formatDate(c.date) : "Undated"];
    if (c.source) meta.push(c.source);
    btn.querySelector(".meta").textContent = meta.join(" · ");
    btn.dataset.start = String(c.start);
    btn.dataset.end = String(c.end);
    const quote = el("span", "card-quote");
    const range = answerInContext(c);
    if (range) {
      fillWithMark(quote, c.context, range[0], range[1]);
    } else {
      quote.append(el("mark", "", c.text));
    }
    const when = resolvedLabel(c);
    if (when) btn.append(el("span", "card-resolved", `“${c.text}” = ${when}`));
    btn.append(quote, el("span", "card-open", "Read it in the article →"));
    btn.setAttribute("aria-label", `${c.text}, in ${c.title || docTitle(c.doc_id)}: ${c.context}. Open the article.`);
    btn.addEventListener("click", () => navigate({ doc: c.doc_id, start: c.start, end: c.end }, btn));
    li.append(btn);
    if (c.url && isWebAddress(c.url)) {
      const link = el("a", "card-url", c.source ? `${c.source}: ${c.url}` : c.url);
      link.href = c.url;
      link.target = "_blank";
      link.rel = "noopener noreferrer";
      li.append(link);
    }
    return li;
  }

  function passageCard(docId) {
    const li = el("li");
    const btn = cardButton(docId);
    btn.classList.add("passage");
    btn.append(el("span", "card-open", "Read the article →"));
    btn.addEventListener("click", () => navigate({ doc: docId }, btn));
    li.append(btn);
    return li;
  }

  // ---------------------------------------------------------------- reading an article
  // The open article lives in the URL (#doc=ID&start=S&end=E), so Back closes it and a link reopens it.
  function parseHash() {
    const params = new URLSearchParams(window.location.hash.slice(1));
    const doc = params.get("doc");
    if (!doc) return null;
    const start = Number.parseInt(params.get("start") || "", 10);
    const end = Number.parseInt(params.get("end") || "", 10);
    const span = Number.isInteger(start) && Number.isInteger(end) ? { start, end } : null;
    return { doc, span };
  }

  function navigate(target, opener) {
    const params = new URLSearchParams({ doc: target.doc });
    if (target.start !== undefined) {
      params.set("start", String(target.start));
      params.set("end", String(target.end));
    }
    history.pushState(null, "", `#${params}`);
    readerOpener = opener || null;
    applyHash();
  }

  function applyHash() {
    const target = parseHash();
    if (target) openArticle(target.doc, target.span);
    else closeReader(false);
  }

  async function openArticle(docId, span) {
    const seq = ++readerSeq;
    document.body.classList.add("reading");
    ui.reader.hidden = false;
    ui.reader.dataset.docId = docId;
    ui.reader.setAttribute("aria-busy", "true");
    ui.readerTitle.textContent = docTitle(docId);
    ui.readerMeta.textContent = docMeta(documents.get(docId));
    ui.readerText.replaceChildren();
    ui.readerText.scrollTop = 0;
    setStatus(ui.readerStatus, "Loading the article…", "loading");
    markCurrent();
    let article;
    try {
      article = await getArticle(docId);
    } catch (err) {
      if (seq !== readerSeq) return;
      ui.reader.setAttribute("aria-busy", "false");
      setStatus(ui.readerStatus, err.code === "document_not_found"
        ? "This article is no longer in the corpus." : `The article could not be loaded. ${err.message}`, "error");
      ui.readerTitle.focus({ preventScroll: true });
      revealReader();
      return;
    }
    if (seq !== readerSeq) return;
    ui.reader.setAttribute("aria-busy", "false");
    ui.readerTitle.textContent = article.title || docId;
    ui.readerMeta.textContent = docMeta(article);
    setStatus(ui.readerStatus, "");
    const text = article.text;
    const n = span ? codePointLength(text) : 0;
    if (span && span.start >= 0 && span.start < span.end && span.end <= n) {
      // Offsets index code points (Python's str); convert, never search for the cited text.
      const mark = fillWithMark(ui.readerText, text, utf16Index(text, span.start), utf16Index(text, span.end));
      mark.id = "reader-mark";
      ui.readerTitle.focus({ preventScroll: true });
      scrollToMark(mark);
    } else {
      ui.readerText.textContent = text;
      if (span) setStatus(ui.readerStatus, "The cited place is outside this article (it may have changed since the answer).", "error");
      ui.readerTitle.focus({ preventScroll: true });
      revealReader();
    }
  }

  /** Scroll the page to the article unless its top is already in sight (as it is beside the answer on
   *  wide screens). */
  function revealReader() {
    const top = ui.reader.getBoundingClientRect().top;
    if (top < 0 || top > window.innerHeight / 3) ui.reader.scrollIntoView({ block: "start" });
  }

  /** Centre the highlight: inside the article's own scroll box where it has one (wide screens, so the
   *  question and answer stay in view), else in the page. */
  function scrollToMark(mark) {
    const box = ui.readerText;
    if (box.scrollHeight > box.clientHeight + 1 && getComputedStyle(box).overflowY !== "visible") {
      const top = mark.getBoundingClientRect().top - box.getBoundingClientRect().top + box.scrollTop;
      box.scrollTop = Math.max(0, top - (box.clientHeight - mark.offsetHeight) / 2);
      mark.scrollIntoView({ block: "nearest" });
    } else {
      mark.scrollIntoView({ block: "center" });
    }
  }

  function closeReader(pushHistory) {
    readerSeq++;
    if (pushHistory && window.location.hash) history.pushState(null, "", window.location.pathname + window.location.search);
    ui.reader.hidden = true;
    document.body.classList.remove("reading");
    delete ui.reader.dataset.docId;
    markCurrent();
    const opener = readerOpener;
    readerOpener = null;
    if (opener && document.body.contains(opener)) opener.focus();
  }

  /** aria-current on the card or list item whose article is open. */
  function markCurrent() {
    const open = ui.reader.hidden ? null : ui.reader.dataset.docId;
    for (const b of document.querySelectorAll(".doc, .card")) {
      if (open && b.dataset.docId === open) b.setAttribute("aria-current", "true");
      else b.removeAttribute("aria-current");
    }
  }

  // ---------------------------------------------------------------- wiring
  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const question = ui.question.value.trim();
    if (!question) {
      setStatus(ui.status, "Type a question first, for example: When was the second Istanbul round?", "error");
      ui.question.focus();
      return;
    }
    ask(question);
  });
  ui.readerClose.addEventListener("click", () => closeReader(true));
  ui.readerText.tabIndex = 0; // a scrollable region: reachable with Tab, scrolled with the arrow keys
  ui.readerText.setAttribute("aria-label", "Article text");
  document.addEventListener("keydown", (event) => {
    if (event.key === "Escape" && !ui.reader.hidden) {
      event.preventDefault();
      closeReader(true);
    } else if (event.key === "/" && document.activeElement !== ui.question) {
      event.preventDefault();
      ui.question.focus();
      ui.question.select();
    }
  });
  window.addEventListener("popstate", applyHash);

  loadDocuments();
  applyHash();
})();
