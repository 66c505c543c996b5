// What the browser toolset reads and sets inside a page, in one evaluation per call
// (cubicle/anthropic/browser.py passes this whole function to page.evaluate with a request).
//
// Element references: every element a listing shows gets `data-cubicle-ref="ref_N"`, kept
// while the element lives, so a ref from read_page or find names the same element in later
// calls. N comes from the driver's counter for the tab, so a new document never reuses an
// old number: a ref from before a navigation is reported as gone, not as another element.
(request) => {
  const ATTRIBUTE = "data-cubicle-ref";
  const SKIPPED = new Set(["SCRIPT", "STYLE", "NOSCRIPT", "TEMPLATE", "HEAD", "META", "LINK", "TITLE"]);
  const INPUT_ROLES = {
    button: "button", submit: "button", reset: "button", image: "button", checkbox: "checkbox",
    radio: "radio", range: "slider", number: "spinbutton", search: "searchbox", file: "button",
    color: "button",
  };
  const TAG_ROLES = {
    BUTTON: "button", TEXTAREA: "textbox", H1: "heading", H2: "heading", H3: "heading",
    H4: "heading", H5: "heading", H6: "heading", NAV: "navigation", MAIN: "main", ASIDE: "complementary",
    ARTICLE: "article", UL: "list", OL: "list", LI: "listitem", TABLE: "table", TR: "row", TD: "cell",
    TH: "columnheader", DIALOG: "dialog", SUMMARY: "button", FORM: "form", FIELDSET: "group",
    OPTION: "option", IMG: "img", P: "paragraph", LABEL: "label", HR: "separator", PROGRESS: "progressbar",
    IFRAME: "iframe", VIDEO: "video", AUDIO: "audio", DETAILS: "group", MENU: "list",
  };
  const INTERACTIVE_ROLES = new Set([
    "button", "link", "textbox", "searchbox", "checkbox", "radio", "combobox", "listbox", "slider",
    "spinbutton", "switch", "tab", "menuitem", "menuitemcheckbox", "menuitemradio", "option", "treeitem",
  ]);
  // Roles whose accessible name is their text: their own text is not listed again below them.
  const NAMED_BY_CONTENT = new Set([
    "button", "link", "heading", "checkbox", "radio", "option", "tab", "menuitem", "menuitemcheckbox",
    "menuitemradio", "treeitem", "cell", "columnheader", "rowheader", "switch", "label",
  ]);
  const NAME_MAX = 100;
  const TEXT_MAX = 200;

  const squash = (text) => (text || "").replace(/\s+/g, " ").trim();
  const cut = (text, max) => (text.length > max ? text.slice(0, max - 1) + "…" : text);
  const quoted = (text) => JSON.stringify(text);

  function roleOf(el) {
    const explicit = (el.getAttribute("role") || "").trim().split(/\s+/)[0];
    if (explicit && explicit !== "none" && explicit !== "presentation") return explicit;
    const tag = el.tagName;
    if (tag === "A" || tag === "AREA") return el.hasAttribute("href") ? "link" : null;
    if (tag === "INPUT") {
      const type = (el.getAttribute("type") || "text").toLowerCase();
      if (type === "hidden") return null;
      if (["text", "email", "tel", "url", "password", ""].includes(type) && el.getAttribute("list")) return "combobox";
      return INPUT_ROLES[type] || "textbox";
    }
    if (tag === "SELECT") return el.multiple || el.size > 1 ? "listbox" : "combobox";
    if (tag === "IMG") return el.getAttribute("alt") === "" ? null : "img";
    if (tag === "SECTION") return el.hasAttribute("aria-label") || el.hasAttribute("aria-labelledby") ? "region" : null;
    if (tag === "HEADER") return el.closest("article, aside, main, nav, section") ? null : "banner";
    if (tag === "FOOTER") return el.closest("article, aside, main, nav, section") ? null : "contentinfo";
    if (el.isContentEditable && !(el.parentElement && el.parentElement.isContentEditable)) return "textbox";
    return TAG_ROLES[tag] || null;
  }

  function textOf(el) {
    return squash(el.innerText !== undefined && el.offsetParent !== null ? el.innerText : el.textContent);
  }

  // A label's own words: not the text of the controls inside it (a select's options, a textarea's text).
  function labelText(label, control) {
    let words = "";
    const walker = document.createTreeWalker(label, NodeFilter.SHOW_TEXT);
    for (let node = walker.nextNode(); node; node = walker.nextNode()) {
      const parent = node.parentElement;
      if (control.contains(node) || (parent && parent.closest("select, textarea, button"))) continue;
      words += " " + node.textContent;
    }
    return squash(words);
  }

  function nameOf(el, role) {
    const labelledBy = el.getAttribute("aria-labelledby");
    if (labelledBy) {
      const text = labelledBy.split(/\s+/).map((id) => {
        const target = document.getElementById(id);
        return target ? squash(target.textContent) : "";
      }).join(" ").trim();
      if (text) return text;
    }
    const label = squash(el.getAttribute("aria-label"));
    if (label) return label;
    const tag = el.tagName;
    if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") {
      const type = (el.getAttribute("type") || "").toLowerCase();
      if (["button", "submit", "reset"].includes(type)) return el.value || (type === "reset" ? "Reset" : type === "submit" ? "Submit" : "");
      if (type === "image") return squash(el.getAttribute("alt")) || "Submit";
      const labels = el.labels ? Array.from(el.labels).map((l) => labelText(l, el)).join(" ").trim() : "";
      if (labels) return labels;
      if (type === "file") return "Choose file";
      const placeholder = squash(el.getAttribute("placeholder"));
      if (placeholder) return placeholder;
    }
    if (tag === "IMG" || tag === "AREA") {
      const alt = squash(el.getAttribute("alt"));
      if (alt) return alt;
    }
    if (tag === "FIELDSET") {
      const legend = el.querySelector(":scope > legend");
      if (legend) return squash(legend.textContent);
    }
    if (tag === "TABLE" && el.caption) return squash(el.caption.textContent);
    if (role && NAMED_BY_CONTENT.has(role)) {
      const text = textOf(el);
      if (text) return text;
    }
    return squash(el.getAttribute("title"));
  }

  function details(el, role) {
    const parts = [];
    const tag = el.tagName;
    if (role === "heading") {
      const level = el.getAttribute("aria-level") || (/^H[1-6]$/.test(tag) ? tag[1] : "");
      if (level) parts.push(`level=${level}`);
    }
    if (tag === "INPUT" || tag === "TEXTAREA") {
      const type = (el.getAttribute("type") || "text").toLowerCase();
      if (type === "file") {
        parts.push("type=file");
        if (el.files && el.files.length) parts.push(`files=${quoted(Array.from(el.files).map((f) => f.name).join(", "))}`);
      } else if (type === "checkbox" || type === "radio") {
        if (el.checked) parts.push("checked");
      } else if (!["button", "submit", "reset", "image"].includes(type)) {
        if (type === "password") {
          if (el.value) parts.push('value="••••"');
        } else if (el.value) {
          parts.push(`value=${quoted(cut(el.value, TEXT_MAX))}`);
        }
        if (type !== "text" && tag === "INPUT") parts.push(`type=${type}`);
      }
      if (el.required) parts.push("required");
      if (el.readOnly) parts.push("readonly");
    } else if (tag === "SELECT") {
      const chosen = Array.from(el.selectedOptions).map((o) => squash(o.textContent));
      if (chosen.length) parts.push(`value=${quoted(cut(chosen.join(", "), TEXT_MAX))}`);
      const options = Array.from(el.options).map((o) => squash(o.textContent));
      parts.push(`options=${quoted(cut(options.join(" | "), 300))}`);
    } else if (el.isContentEditable && role === "textbox") {
      const text = textOf(el);
      if (text) parts.push(`value=${quoted(cut(text, TEXT_MAX))}`);
    } else if (tag === "OPTION" && el.selected) {
      parts.push("selected");
    } else if (role === "link") {
      const href = el.getAttribute("href") || "";
      if (href && !href.startsWith("javascript:")) parts.push(`href=${quoted(cut(href, 150))}`);
    }
    for (const [attribute, word] of [["aria-checked", "checked"], ["aria-selected", "selected"], ["aria-pressed", "pressed"]]) {
      if (el.getAttribute(attribute) === "true" && !parts.includes(word)) parts.push(word);
    }
    const expanded = el.getAttribute("aria-expanded");
    if (expanded === "true" || (tag === "DETAILS" && el.open)) parts.push("expanded");
    else if (expanded === "false") parts.push("collapsed");
    if (el.disabled || el.getAttribute("aria-disabled") === "true") parts.push("disabled");
    if (el === document.activeElement && el !== document.body) parts.push("focused");
    return parts;
  }

  function hidden(el) {
    if (el.getAttribute("aria-hidden") === "true" || el.hidden) return true;
    if (typeof el.checkVisibility === "function") return !el.checkVisibility({ visibilityProperty: true });
    const style = getComputedStyle(el);
    return style.display === "none" || style.visibility === "hidden";
  }

  function inViewport(el) {
    const box = el.getBoundingClientRect();
    if (box.width === 0 && box.height === 0) return false;
    return box.bottom > 0 && box.right > 0 && box.top < innerHeight && box.left < innerWidth;
  }

  function clickable(el, role) {
    if (role && INTERACTIVE_ROLES.has(role)) return true;
    if (el.hasAttribute("onclick") || (el.tabIndex >= 0 && el.hasAttribute("tabindex"))) return true;
    if (el.isContentEditable) return true;
    const parent = el.parentElement;
    return getComputedStyle(el).cursor === "pointer" && !(parent && getComputedStyle(parent).cursor === "pointer");
  }

  let next = request.next;
  const seen = new Set();

  function refOf(el) {
    let ref = el.getAttribute(ATTRIBUTE);
    // a copy of a tagged element (cloneNode copies attributes) gets a number of its own
    if (!ref || seen.has(ref)) {
      ref = `ref_${next++}`;
      el.setAttribute(ATTRIBUTE, ref);
    }
    seen.add(ref);
    return ref;
  }

  function byRef(ref) {
    if (typeof ref !== "string" || !/^ref_\d+$/.test(ref)) return null;
    const selector = `[${ATTRIBUTE}="${ref}"]`;
    const found = document.querySelector(selector);
    if (found) return found;
    for (const host of document.querySelectorAll("*")) {  // inside open shadow roots
      const inner = host.shadowRoot && host.shadowRoot.querySelector(selector);
      if (inner) return inner;
    }
    return null;
  }

  function children(node) {
    const found = [];
    if (node.shadowRoot) found.push(...node.shadowRoot.childNodes);
    found.push(...node.childNodes);
    return found;
  }

  // One line per element that has a role (or is clickable), indented by how many listed
  // elements hold it; plain text as `text "..."` lines (not with the interactive filter).
  function readPage() {
    const filter = request.filter || "visible";
    const maxDepth = request.depth === null || request.depth === undefined ? 15 : request.depth;
    const maxChars = request.maxChars;
    const lines = [];
    let size = 0;
    let omitted = 0;
    let deeper = 0;

    function emit(line) {
      if (size + line.length + 1 > maxChars) {
        omitted += 1;
        return;
      }
      lines.push(line);
      size += line.length + 1;
    }

    function line(el, role, depth) {
      const name = cut(nameOf(el, role), NAME_MAX);
      const words = [`[${refOf(el)}]`, role || "generic"];
      if (name) words.push(quoted(name));
      words.push(...details(el, role));
      emit(`${"  ".repeat(depth)}${words.join(" ")}`);
      return name;
    }

    function visit(el, depth, quiet, forced) {
      const role = roleOf(el);
      const interactive = clickable(el, role);
      const listed = forced || (filter === "interactive" ? interactive : (role !== null || interactive));
      if (!(listed && (forced || filter === "all" || inViewport(el)))) {
        walk(el, depth, quiet);
        return;
      }
      if (depth > maxDepth) { deeper += 1; return; }
      const name = line(el, role, depth);
      if (el.tagName === "SELECT" || el.tagName === "IFRAME") return;
      walk(el, depth + 1, quiet || (role !== null && NAMED_BY_CONTENT.has(role) && !!name));
    }

    function walk(node, depth, quiet) {
      for (const child of children(node)) {
        if (child.nodeType === Node.TEXT_NODE) {
          if (filter === "interactive" || quiet) continue;
          const text = squash(child.textContent);
          if (!text || !child.parentElement) continue;
          if (filter === "visible") {
            const range = document.createRange();
            range.selectNodeContents(child);
            const box = range.getBoundingClientRect();
            if (box.bottom <= 0 || box.top >= innerHeight || (box.width === 0 && box.height === 0)) continue;
          }
          if (depth > maxDepth) { deeper += 1; continue; }
          emit(`${"  ".repeat(depth)}text ${quoted(cut(text, TEXT_MAX))}`);
        } else if (child.nodeType === Node.ELEMENT_NODE && !SKIPPED.has(child.tagName) && !hidden(child)) {
          visit(child, depth, quiet, false);
        }
      }
    }

    if (request.ref) {
      const root = byRef(request.ref);
      if (!root) return { error: "stale", next };
      visit(root, 0, false, true);  // the subtree, its root first
    } else if (document.body || document.documentElement) {
      walk(document.body || document.documentElement, 0, false);
    }
    const notes = [];
    if (deeper) notes.push(`${deeper} deeper elements not shown (past depth ${maxDepth}: read one with ref, or raise depth)`);
    if (omitted) notes.push(`cut at ${maxChars.toLocaleString("en")} characters: ${omitted} more lines not shown (read a part with ref, or use filter "interactive")`);
    if (!lines.length && !notes.length) {
      notes.push(filter === "all" ? "the page has no visible content" : "nothing visible in the viewport (scroll, or use filter \"all\")");
    }
    return { text: lines.concat(notes.map((n) => `[${n}]`)).join("\n"), next };
  }

  // Up to `limit` elements whose role, name, value or text holds every word of the query.
  function find() {
    const words = squash(request.query).toLowerCase().split(" ").filter(Boolean);
    const matches = [];
    let more = 0;
    const elements = (document.body || document.documentElement).querySelectorAll("*");
    for (const el of elements) {
      if (SKIPPED.has(el.tagName)) continue;
      const role = roleOf(el);
      const interactive = clickable(el, role);
      let own = "";
      for (const child of el.childNodes) if (child.nodeType === Node.TEXT_NODE) own += child.textContent;
      own = squash(own);
      if (role === null && !interactive && !own) continue;
      const name = nameOf(el, role);
      const extra = details(el, role).join(" ");
      const haystack = `${role || ""} ${name} ${extra} ${own} ${squash(el.getAttribute("placeholder"))}`.toLowerCase();
      if (!words.every((word) => haystack.includes(word))) continue;
      if (hidden(el)) continue;
      if (matches.length >= request.limit) { more += 1; continue; }
      const words_ = [`[${refOf(el)}]`, role || (interactive ? "generic" : "text")];
      const shown = name || own;
      if (shown) words_.push(quoted(cut(shown, NAME_MAX)));
      words_.push(...details(el, role));
      matches.push({ line: words_.join(" "), interactive });
    }
    matches.sort((a, b) => Number(b.interactive) - Number(a.interactive));
    const lines = matches.map((m) => m.line);
    if (more) lines.push(`[${more} more matches not shown: make the query more precise]`);
    return { text: lines.join("\n"), count: matches.length, next };
  }

  const TRUE_WORDS = new Set(["true", "on", "yes", "1", "checked", "selected"]);

  function setValue(el, value) {
    const prototype = el.tagName === "TEXTAREA" ? HTMLTextAreaElement.prototype : HTMLInputElement.prototype;
    // the prototype's setter: frameworks that track the value (React) see the change
    Object.getOwnPropertyDescriptor(prototype, "value").set.call(el, value);
  }

  function fire(el) {
    el.dispatchEvent(new Event("input", { bubbles: true, composed: true }));
    el.dispatchEvent(new Event("change", { bubbles: true }));
  }

  function formInput() {
    const el = byRef(request.ref);
    if (!el) return { error: "stale" };
    const value = request.value;
    const tag = el.tagName;
    const what = `${request.ref} is <${tag.toLowerCase()}${el.type ? ` type=${el.type}` : ""}>`;
    if (el.disabled) return { error: `${request.ref} is disabled; it cannot be set now.` };
    if (tag === "INPUT") {
      const type = (el.type || "text").toLowerCase();
      if (type === "file") return { error: `${what}: use file_upload to choose its files.` };
      if (["button", "submit", "reset", "image"].includes(type)) return { error: `${what}, a button: click it instead.` };
      if (el.readOnly) return { error: `${request.ref} is read-only.` };
      if (type === "checkbox" || type === "radio") {
        const want = typeof value === "boolean" ? value : typeof value === "number" ? value !== 0 : TRUE_WORDS.has(String(value).trim().toLowerCase());
        if (type === "radio" && !want) return { error: `${what}: a radio button is unchecked by checking another of its group.` };
        if (el.checked !== want) {
          el.checked = want;
          fire(el);
        }
        return { done: `${request.ref} is ${el.checked ? "checked" : "unchecked"}.` };
      }
      el.focus();
      setValue(el, String(value));
      fire(el);
      if (el.value !== String(value)) return { error: `${what} and did not take ${quoted(String(value))} (it now holds ${quoted(el.value)}).` };
      return {};
    }
    if (tag === "TEXTAREA") {
      if (el.readOnly) return { error: `${request.ref} is read-only.` };
      el.focus();
      setValue(el, String(value));
      fire(el);
      return {};
    }
    if (tag === "SELECT") {
      const wanted = el.multiple ? String(value).split(",").map(squash) : [squash(String(value))];
      const options = Array.from(el.options);
      const pick = (want) => options.find((o) => o.value === want) || options.find((o) => squash(o.textContent) === want)
        || options.find((o) => squash(o.textContent).toLowerCase() === want.toLowerCase());
      const picked = wanted.map(pick);
      const missing = wanted.filter((_, i) => !picked[i]);
      if (missing.length) {
        const names = options.map((o) => quoted(squash(o.textContent))).join(", ");
        return { error: `${request.ref} has no option ${quoted(missing[0])}; its options are ${cut(names, 500)}.` };
      }
      for (const option of options) option.selected = picked.includes(option);
      fire(el);
      return { done: `Selected ${picked.map((o) => quoted(squash(o.textContent))).join(", ")}.` };
    }
    if (el.isContentEditable) {
      el.focus();
      el.textContent = String(value);
      el.dispatchEvent(new InputEvent("input", { bubbles: true, composed: true }));
      return {};
    }
    return { error: `${what}, not a form field: use read_page to find the input, select or textarea.` };
  }

  function pageText() {
    const body = document.body ? document.body.innerText : document.documentElement.innerText || "";
    const text = body.replace(/[ \t]+\n/g, "\n").replace(/\n{3,}/g, "\n\n").trim();
    const header = `${document.title}\n${location.href}\n\n`;
    if (text.length > request.maxChars) {
      return { text: header + text.slice(0, request.maxChars) + `\n[cut at ${request.maxChars.toLocaleString("en")} characters of ${text.length.toLocaleString("en")}]` };
    }
    return { text: header + (text || "(the page has no text)") };
  }

  // Where an element is, after scrolling it into view: for file_upload's and scroll_to's checks.
  function locate() {
    const el = byRef(request.ref);
    if (!el) return { error: "stale" };
    if (request.scroll) el.scrollIntoView({ block: "center", inline: "center" });
    return { tag: el.tagName.toLowerCase(), type: (el.getAttribute("type") || "").toLowerCase(), multiple: !!el.multiple };
  }

  const operations = { readPage, find, formInput, pageText, locate };
  return operations[request.op]();
}
