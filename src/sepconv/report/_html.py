"""Report blocks (see `_content`) as one self-contained HTML page.

Figures are embedded as base64 `data:` URIs and the style sheet is inline, so the file
can be mailed or archived alone: it loads nothing from anywhere.
"""

import base64
import html
import os

from sepconv.report._content import numeric

_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 1rem 0; }
th, td { border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: left; }
.num { text-align: right; }
th { background: #f3f3f3; }
.note { background: #fff4d6; border-left: 4px solid #e0a800; padding: 0.6rem 1rem; font-weight: 600; }
figure { margin: 1.5rem 0; }
figure img { max-width: 100%; }
figcaption { color: #555; font-size: 0.9rem; }
pre { background: #f6f6f6; padding: 0.6rem; overflow-x: auto; }
"""


def render_html(blocks, folder):
    """The page; figure files are read from `folder`."""
    body = [_block(kind, content, folder) for kind, *content in blocks]
    title = next((content[0] for kind, *content in blocks if kind == "title"), "sepconv report")
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{html.escape(title)}</title>\n<style>{_STYLE}</style>\n</head>\n<body>\n"
        + "\n".join(body)
        + "\n</body>\n</html>\n"
    )


def _block(kind, content, folder):
    escape = html.escape
    if kind == "title":
        return f"<h1>{escape(content[0])}</h1>"
    if kind == "heading":
        return f"<h2>{escape(content[0])}</h2>"
    if kind == "text":
        return f"<p>{escape(content[0])}</p>"
    if kind == "note":
        return f'<p class="note">{escape(content[0])}</p>'
    if kind == "table":
        header, rows = content
        columns = list(zip(*rows)) or [()] * len(header)
        kinds = [' class="num"' if numeric(column) else "" for column in columns]
        head = "".join(f"<th{kind}>{escape(str(cell))}</th>" for kind, cell in zip(kinds, header))
        body = "".join(
            "<tr>" + "".join(f"<td{kind}>{escape(str(cell))}</td>" for kind, cell in zip(kinds, row)) + "</tr>"
            for row in rows
        )
        return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if kind == "figure":
        name, caption = content
        with open(os.path.join(folder, name), "rb") as f:
            data = base64.b64encode(f.read()).decode("ascii")
        return (
            f'<figure><img src="data:image/png;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>"
        )
    if kind == "code":
        return f"<pre><code>{escape(content[0])}</code></pre>"
    if kind == "items":
        return "<ul>" + "".join(f"<li>{escape(item)}</li>" for item in content[0]) + "</ul>"
    raise ValueError(f"Unknown report block kind. Received: kind={kind!r}")
