"""HTML pages of the report's LaTeX tables, for `snakemake --report` and a browser.

The tables are made once, as booktabs LaTeX (fersnet.reports.tables.render); this reads that
output back (caption, header and body rows, `\\multicolumn`, rules, the note under the table) and
turns the few LaTeX constructs the tables use into HTML: bold, italics, `$\\pm$`, arrows,
super/subscripts, escaped characters, dashes, and two-line cells (a one-column tabular, lines
joined by `<br>`). So the page shows the same cells as the PDF.
Standard library only.
"""
from __future__ import annotations

import html
import re
import unicodedata

_RULES = {"\\toprule", "\\midrule", "\\bottomrule"}
_TAGS = {"textbf": "b", "emph": "i", "texttt": "code"}
_TEXT_SYMBOLS = {"textbackslash": "\\", "textasciitilde": "~", "textasciicircum": "^"}
_MATH_SYMBOLS = {"pm": "±", "uparrow": "↑", "downarrow": "↓", "times": "×", "surd": "√", "approx": "≈",
                 "dagger": "†", "leq": "≤", "geq": "≥", "cdot": "·", "ldots": "…"}
_ACCENTS = {"'": "\u0301", "`": "\u0300", '"': "\u0308", "^": "\u0302", "~": "\u0303"}
_LAYOUT = {"par", "smallskip", "medskip", "footnotesize", "small", "raggedright", "centering", "noindent"}

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; border-top: 2px solid #222; border-bottom: 2px solid #222; }
caption { caption-side: top; text-align: left; max-width: 60em; padding-bottom: 0.6em; }
th, td { padding: 0.25em 0.7em; text-align: center; white-space: nowrap; }
th:first-child, td:first-child, td.index { text-align: left; }
thead tr:last-child th { border-bottom: 1px solid #222; }
tr.group td { border-top: 1px solid #222; }
p.note { font-size: 0.85em; max-width: 60em; }
"""


def _esc(text: str) -> str:
    return html.escape(text, quote=False)


def _group(s: str, i: int) -> tuple[str, int]:
    """The content of the brace group starting at s[i] (spaces before it skipped) and the index after it."""
    while i < len(s) and s[i] == " ":
        i += 1
    if i >= len(s) or s[i] != "{":
        return (s[i], i + 1) if i < len(s) else ("", i)
    depth, j = 0, i
    while j < len(s):
        if s[j] == "\\":
            j += 2
            continue
        depth += {"{": 1, "}": -1}.get(s[j], 0)
        if depth == 0:
            return s[i + 1:j], j + 1
        j += 1
    return s[i + 1:], len(s)


def _command(s: str, i: int) -> tuple[str, int]:
    """The name of the command at s[i] (a backslash) and the index after it."""
    m = re.match(r"\\([A-Za-z]+|.)", s[i:])
    return (m.group(1), i + len(m.group(0))) if m else ("", i + 1)


def _math(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            name, i = _command(s, i)
            out.append(_esc(_MATH_SYMBOLS.get(name, name)))
        elif c in "^_":
            arg, i = _group(s, i + 1)
            tag = "sup" if c == "^" else "sub"
            out.append(f"<{tag}>{_math(arg)}</{tag}>")
        elif c == "{":
            arg, i = _group(s, i)
            out.append(_math(arg))
        elif c.isalpha():
            out.append(f"<i>{c}</i>")
            i += 1
        else:
            out.append(_esc(c))
            i += 1
    return "".join(out)


def _nested_tabular(s: str, i: int) -> tuple[str, int]:
    """A `\\begin{tabular}[pos]{spec}...\\end{tabular}` inside a cell (tables.stacked), from just after
    `\\begin`: its lines as HTML joined by <br>, and the index after `\\end{tabular}`."""
    _, i = _group(s, i)                                   # {tabular}
    if s.startswith("[", i):
        i = s.index("]", i) + 1
    _, i = _group(s, i)                                   # column spec
    end = s.find("\\end{tabular}", i)
    end = len(s) if end < 0 else end
    lines = [re.sub(r"^\{\}", "", ln) for ln in s[i:end].split("\\\\")]
    return "<br>".join(inline(ln) for ln in lines), min(len(s), end + len("\\end{tabular}"))


def inline(s: str) -> str:
    """LaTeX text of a cell, caption or note as HTML."""
    out, i = [], 0
    while i < len(s):
        c = s[i]
        if c == "\\":
            name, i = _command(s, i)
            if name == "begin" and s.startswith("{tabular}", i):
                text, i = _nested_tabular(s, i)
                out.append(text)
            elif name in _TAGS:
                arg, i = _group(s, i)
                out.append(f"<{_TAGS[name]}>{inline(arg)}</{_TAGS[name]}>")
            elif name in _ACCENTS:
                arg, i = _group(s, i)
                out.append(_esc(unicodedata.normalize("NFC", arg[:1] + _ACCENTS[name] + arg[1:])))
            elif name in _TEXT_SYMBOLS:
                if s.startswith("{}", i):
                    i += 2
                out.append(_esc(_TEXT_SYMBOLS[name]))
            elif name in _LAYOUT:
                while i < len(s) and s[i] == " ":
                    i += 1
            elif name == " ":
                out.append(" ")
            elif name == ",":
                out.append("\u2009")
            elif len(name) == 1:                 # \% \& \_ \# \$ \{ \}
                out.append(_esc(name))
            else:                                # an unknown command: its name, never a backslash
                out.append(_esc(name))
        elif c == "$":
            end = i + 1
            while end < len(s) and not (s[end] == "$" and s[end - 1] != "\\"):
                end += 1
            out.append(_math(s[i + 1:end]))
            i = end + 1
        elif c == "{":
            arg, i = _group(s, i)
            out.append(inline(arg))
        elif c == "}":
            i += 1
        elif s.startswith("---", i):
            out.append("—")
            i += 3
        elif s.startswith("--", i):
            out.append("–")
            i += 2
        elif c == "~":
            out.append("\u00a0")
            i += 1
        else:
            out.append(_esc(c))
            i += 1
    return "".join(out)


def _cells(row: str, tag: str, index_columns: int) -> str:
    cells = []
    for n, cell in enumerate(re.split(r"(?<!\\)&", row)):
        cell, span = cell.strip(), 1
        m = re.match(r"\\multicolumn\{(\d+)\}\{[^}]*\}", cell)
        if m:
            span = int(m.group(1))
            cell, _ = _group(cell, m.end())
        attrs = (f' colspan="{span}"' if span > 1 else "") + (' class="index"' if n < index_columns else "")
        cells.append(f"<{tag}{attrs}>{inline(cell)}</{tag}>")
    return "".join(cells)


def _after(tex: str, command: str) -> str | None:
    """The argument of the first `command` (past an optional `[...]`, e.g. \\caption[short]{long})."""
    at = tex.find(command)
    if at < 0:
        return None
    i = at + len(command)
    if tex.startswith("[", i):
        i = tex.index("]", i) + 1
    return _group(tex, i)[0]


def table_page(tex: str, title: str) -> str:
    """A standalone HTML page of one table made by tables.render: caption, table, note."""
    caption = _after(tex, "\\caption")
    spec = _after(tex, "\\begin{tabular}") or ""
    index_columns = len(re.match(r"l*", spec).group(0))
    # the outer tabular: from the first \begin to the last \end (two-line cells nest their own)
    body = tex.split("\\begin{tabular}", 1)[1].split("\n", 1)[1].rsplit("\\end{tabular}", 1)[0]
    head, rows, in_head, new_group = [], [], True, False
    for line in (ln.strip() for ln in body.splitlines()):
        if line in _RULES:
            if line == "\\midrule":
                if in_head:
                    in_head = False
                else:
                    new_group = True
            continue
        if not line.endswith("\\\\"):
            continue
        line = line[:-2]
        if in_head:
            head.append(f"<tr>{_cells(line, 'th', 0)}</tr>")
        else:
            group = ' class="group"' if new_group else ""
            rows.append(f"<tr{group}>{_cells(line, 'td', index_columns)}</tr>")
            new_group = False
    after = tex.rsplit("\\end{tabular}", 1)[1]
    at = after.find("{\\footnotesize")
    note = _group(after, at)[0] if at >= 0 else None
    parts = ["<!DOCTYPE html>", '<html lang="en">', "<head>", '<meta charset="utf-8">',
             f"<title>{html.escape(title)}</title>", f"<style>{STYLE}</style>", "</head>", "<body>", "<table>"]
    if caption is not None:
        parts.append(f"<caption>{inline(caption)}</caption>")
    parts += ["<thead>", *head, "</thead>", "<tbody>", *rows, "</tbody>", "</table>"]
    if note:
        parts.append(f'<p class="note">{inline(note)}</p>')
    parts += ["</body>", "</html>", ""]
    return "\n".join(parts)
