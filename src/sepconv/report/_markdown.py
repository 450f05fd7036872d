"""Report blocks (see `_content`) as Markdown; figures are linked as files next to it."""

from sepconv.report._content import numeric


def render_markdown(blocks):
    parts = []
    for kind, *content in blocks:
        if kind == "title":
            parts.append(f"# {content[0]}")
        elif kind == "heading":
            parts.append(f"## {content[0]}")
        elif kind == "text":
            parts.append(content[0])
        elif kind == "note":
            parts.append(f"> **{content[0]}**")
        elif kind == "table":
            parts.append(_table(*content))
        elif kind == "figure":
            name, caption = content
            parts.append(f"![{caption}]({name})\n\n*{caption}*")
        elif kind == "code":
            parts.append(f"```\n{content[0]}\n```")
        elif kind == "items":
            parts.append("\n".join(f"- {item}" for item in content[0]))
        else:
            raise ValueError(f"Unknown report block kind. Received: kind={kind!r}")
    return "\n\n".join(parts) + "\n"


def _table(header, rows):
    def line(cells):
        return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"

    columns = list(zip(*rows)) or [()] * len(header)
    align = "| " + " | ".join("---:" if numeric(column) else ":---" for column in columns) + " |"
    return "\n".join([line(header), align] + [line(row) for row in rows])
