"""A progress line on stderr from ComfyUI's WebSocket messages: which node runs, and its steps."""

import sys

BAR = 24


class ProgressLine:
    """Call it with each (type, data) message of one prompt; `finish()` ends the line.

    On a terminal the line redraws in place; in a log (no terminal) each node gets one line, and a
    node with steps one more at each quarter of them.
    """

    def __init__(self, prompt: dict, stream=None):
        self.prompt = prompt
        self.stream = stream or sys.stderr
        self.live = self.stream.isatty()
        self.finished_nodes = set()
        self.node = None
        self.steps = None

    def __call__(self, event_type, data):
        if event_type == "execution_cached":
            self.finished_nodes.update(map(str, data.get("nodes", [])))
        elif event_type == "executing" and data.get("node") is not None:
            if self.node is not None:
                self.finished_nodes.add(self.node)
            self.node, self.steps = str(data["node"]), None
            self._show(force=True)
        elif event_type == "progress":
            previous = self.steps
            self.steps = (data.get("value", 0), data.get("max", 0))
            self._show(force=previous is None or _quarter(*previous) != _quarter(*self.steps))

    def line(self) -> str:
        node = self.prompt.get(self.node, {})
        name = node.get("_meta", {}).get("title") or node.get("class_type", self.node)
        count = len(self.prompt)
        text = f"[{min(len(self.finished_nodes) + 1, count):>{len(str(count))}}/{count}] {name}"
        if self.steps and self.steps[1]:
            value, total = self.steps
            filled = BAR * value // total
            text += f"  {'#' * filled}{'.' * (BAR - filled)} {value}/{total}"
        return text

    def _show(self, force=False):
        if self.live:
            self.stream.write("\r\x1b[K" + self.line())
            self.stream.flush()
        elif force:
            self.stream.write(self.line() + "\n")
            self.stream.flush()

    def finish(self):
        if self.live and self.node is not None:
            self.stream.write("\n")
            self.stream.flush()


def _quarter(value, total):
    return 4 * value // total if total else 0
