"""Reports of a training run: Markdown, a self-contained HTML page, and PNG figures.

```python
from sepconv.report import write_report

write_report("runs/20250101-120000-vgg-vgg_separable")   # report.md, report.html, *.png
```

`plot_histories({"base": "runs/a", "wider": "runs/b"})` overlays the accuracy by epoch of
several run folders, finished or not; `save_figure(figure, "curves.png")` writes it.

Everything is read from the run folder's config.json, results.json and history.csv, so a
report can be rebuilt at any time.
"""

import os

from sepconv.report._content import report_blocks
from sepconv.report._html import render_html
from sepconv.report._markdown import render_markdown
from sepconv.report._plots import plot_histories, save_figure, write_plots
from sepconv._atomic import write_bytes
from sepconv._run_folder import Run, load_run


def write_report(folder):
    """Writes the figures, report.md and report.html into the run `folder`; returns their paths."""
    run = load_run(folder)
    plots = write_plots(run, folder)
    blocks = report_blocks(run, plots)
    outputs = {"report.md": render_markdown(blocks), "report.html": render_html(blocks, folder)}
    for name, text in outputs.items():
        write_bytes(os.path.join(folder, name), text.encode("utf-8"))
    return [os.path.join(folder, name) for name, _ in plots] + [os.path.join(folder, name) for name in outputs]


__all__ = [
    "Run",
    "load_run",
    "plot_histories",
    "render_html",
    "render_markdown",
    "report_blocks",
    "save_figure",
    "write_plots",
    "write_report",
]
