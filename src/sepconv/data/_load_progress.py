"""A Rich progress bar on stderr, or a silent stand-in with the same two methods."""

import contextlib


class _Silent:
    def add_task(self, description, total=None):
        return 0

    def update(self, task, completed=None):
        pass


@contextlib.contextmanager
def progress_bar(enabled):
    """Yields an object with Rich's `add_task(description, total)` and `update(task, completed)`."""
    if not enabled:
        yield _Silent()
        return
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield bar
