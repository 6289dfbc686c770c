// A small code editor: a transparent <textarea> (the real input, so typing, selection, undo and
// screen readers behave as usual) over a <pre> painted with Python highlighting, and a gutter of
// line numbers. An error answer marks its line in both. Tab indents; Escape then Tab leaves.

const KEYWORDS = new Set(("False None True and as assert async await break class continue def del elif else " +
  "except finally for from global if import in is lambda nonlocal not or pass raise return try while with yield match case").split(" "));
const BUILTINS = new Set(("print len range int float str list dict tuple set bool super isinstance self " +
  "min max sum abs zip enumerate map filter open type object tf nn torch np").split(" "));

const TOKEN = new RegExp([
  /(#[^\n]*)/.source,                                                     // 1 comment
  /((?:[rRbBuUfF]{1,2})?(?:"""[\s\S]*?(?:"""|$)|'''[\s\S]*?(?:'''|$)|"(?:\\.|[^"\\\n])*"?|'(?:\\.|[^'\\\n])*'?))/.source, // 2 string
  /(@[A-Za-z_][\w.]*)/.source,                                            // 3 decorator
  /(\b\d[\d_]*(?:\.\d*)?(?:[eE][+-]?\d+)?j?\b|\b0[xXoObB][\da-fA-F_]+\b)/.source, // 4 number
  /([A-Za-z_]\w*)/.source,                                                // 5 name
].join("|"), "g");

const escape = (s) => s.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");

/** Python source → HTML with token spans (every character kept, so it lines up with the textarea). */
export function highlight(source) {
  let out = "";
  let last = 0;
  let previous = "";
  for (const m of source.matchAll(TOKEN)) {
    out += escape(source.slice(last, m.index));
    const [text, comment, string, decorator, number, name] = m;
    let kind = null;
    if (comment) kind = "com";
    else if (string) kind = "str";
    else if (decorator) kind = "dec";
    else if (number) kind = "num";
    else if (name) kind = KEYWORDS.has(name) ? "kw" : (previous === "def" || previous === "class") ? "fn" : BUILTINS.has(name) ? "bi" : null;
    out += kind ? `<span class="tok-${kind}">${escape(text)}</span>` : escape(text);
    if (name) previous = name;
    last = m.index + text.length;
  }
  return out + escape(source.slice(last));
}

export class CodeEditor {
  constructor(host, { name, rows = 12, label } = {}) {
    this.host = host;
    this.badLine = null;
    host.classList.add("editor");
    this.gutter = document.createElement("div");
    this.gutter.className = "gutter";
    this.gutter.setAttribute("aria-hidden", "true");
    const pane = document.createElement("div");
    pane.className = "pane";
    this.pre = document.createElement("pre");
    this.pre.setAttribute("aria-hidden", "true");
    this.area = document.createElement("textarea");
    this.area.id = name;
    this.area.name = name;
    this.area.rows = rows;
    this.area.spellcheck = false;
    this.area.wrap = "off";
    this.area.setAttribute("autocapitalize", "off");
    this.area.setAttribute("autocomplete", "off");
    if (label) this.area.setAttribute("aria-label", label);
    pane.append(this.pre, this.area);
    host.append(this.gutter, pane);
    this.area.addEventListener("input", () => { this.badLine = null; this.paint(); });
    this.area.addEventListener("scroll", () => this.sync());
    let escaped = false;
    this.area.addEventListener("keydown", (event) => {
      if (event.key === "Escape") { escaped = true; return; }
      if (event.key === "Tab" && !escaped && !event.shiftKey) {
        event.preventDefault();
        document.execCommand ? document.execCommand("insertText", false, "    ") : this.insert("    ");
      }
      escaped = false;
    });
    new ResizeObserver(() => this.sync()).observe(this.area);
    this.paint();
  }

  insert(text) {
    const { selectionStart: a, selectionEnd: b, value } = this.area;
    this.area.value = value.slice(0, a) + text + value.slice(b);
    this.area.selectionStart = this.area.selectionEnd = a + text.length;
    this.paint();
  }

  get value() { return this.area.value; }
  set value(text) { this.area.value = text || ""; this.badLine = null; this.paint(); }

  /** Marks line n (1-based) as the one at fault, and scrolls it into view. */
  markLine(n) {
    this.badLine = n;
    this.paint();
    const lineHeight = 20;
    this.area.scrollTop = Math.max(0, (n - 3) * lineHeight);
    this.sync();
  }

  paint() {
    const source = this.area.value;
    const lines = highlight(source + "\n").split("\n");
    lines.pop();
    // Spans never cross a newline except in multi-line strings: re-open them per line for the marker.
    if (this.badLine && this.badLine <= lines.length) {
      lines[this.badLine - 1] = `<span class="line-bad" data-line="${this.badLine}">${lines[this.badLine - 1] || " "}</span>`;
    }
    this.pre.innerHTML = lines.join("\n") + "\n";
    const count = Math.max(1, source.split("\n").length);
    let numbers = "";
    for (let i = 1; i <= count; i++) numbers += i === this.badLine ? `<span class="bad" data-bad-line="${i}">${i}</span>` : `<span>${i}</span>`;
    this.gutter.innerHTML = numbers;
    this.sync();
  }

  sync() {
    this.pre.scrollTop = this.area.scrollTop;
    this.pre.scrollLeft = this.area.scrollLeft;
    this.gutter.scrollTop = this.area.scrollTop;
    this.pre.style.height = `${this.area.offsetHeight}px`;
  }
}
