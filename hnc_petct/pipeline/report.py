"""Render a report (sections of paragraphs, tables and images) to HTML and to Markdown.

One document model, two renderers, so the HTML and its Markdown twin never disagree.
Image paths are stored relative to the report folder.
"""

from __future__ import annotations

import html
from dataclasses import dataclass, field


@dataclass
class Table:
    columns: list[str]
    rows: list[list]
    caption: str = ""


@dataclass
class Image:
    path: str  # relative to the report folder
    caption: str = ""


@dataclass
class Section:
    title: str
    blocks: list = field(default_factory=list)  # str (paragraph) | Table | Image | ("code", str)

    def p(self, text: str) -> "Section":
        self.blocks.append(text)
        return self

    def table(self, columns, rows, caption: str = "") -> "Section":
        self.blocks.append(Table(list(columns), [list(r) for r in rows], caption))
        return self

    def image(self, path: str, caption: str = "") -> "Section":
        self.blocks.append(Image(path, caption))
        return self

    def code(self, text: str) -> "Section":
        self.blocks.append(("code", text))
        return self


def fmt(v, digits: int = 3) -> str:
    """Numbers to short strings; None/NaN to an en dash."""
    if v is None:
        return "–"
    if isinstance(v, float):
        if v != v:  # NaN
            return "–"
        return f"{v:.{digits}f}"
    return str(v)


_CSS = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{border-bottom:2px solid #345}h2{margin-top:2em;color:#345}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #bbb;padding:4px 8px;text-align:right}
th{background:#eef}td:first-child,th:first-child{text-align:left}caption{caption-side:top;text-align:left;
font-weight:600;padding:4px 0}figure{display:inline-block;margin:0.5em}img{max-width:100%;border:1px solid #ccc}
figcaption{font-size:90%;color:#555}pre{background:#f5f5f5;padding:8px;overflow-x:auto;font-size:85%}
"""


def to_html(title: str, sections: list[Section]) -> str:
    out = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
           f"<style>{_CSS}</style></head><body><h1>{html.escape(title)}</h1>"]
    for s in sections:
        out.append(f"<h2>{html.escape(s.title)}</h2>")
        for b in s.blocks:
            if isinstance(b, str):
                out.append(f"<p>{html.escape(b)}</p>")
            elif isinstance(b, Table):
                cap = f"<caption>{html.escape(b.caption)}</caption>" if b.caption else ""
                head = "".join(f"<th>{html.escape(str(c))}</th>" for c in b.columns)
                body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(v))}</td>" for v in r) + "</tr>"
                               for r in b.rows)
                out.append(f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif isinstance(b, Image):
                out.append(f"<figure><img src='{html.escape(b.path)}' alt='{html.escape(b.caption)}'>"
                           f"<figcaption>{html.escape(b.caption)}</figcaption></figure>")
            else:
                out.append(f"<pre>{html.escape(b[1])}</pre>")
    out.append("</body></html>")
    return "\n".join(out)


def to_markdown(title: str, sections: list[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            if isinstance(b, str):
                out += [b, ""]
            elif isinstance(b, Table):
                if b.caption:
                    out += [f"**{b.caption}**", ""]
                out.append("| " + " | ".join(str(c) for c in b.columns) + " |")
                out.append("|" + "---|" * len(b.columns))
                out += ["| " + " | ".join(fmt(v).replace("|", "\\|") for v in r) + " |" for r in b.rows]
                out.append("")
            elif isinstance(b, Image):
                out += [f"![{b.caption}]({b.path})", ""]
            else:
                out += ["```", b[1], "```", ""]
    return "\n".join(out)
