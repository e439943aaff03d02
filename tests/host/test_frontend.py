"""Every shipped UI workflow as users use it: dropped onto the real ComfyUI frontend, served by the
test server and opened in headless Chromium (Debian's `chromium`, driven by Playwright, kept off the
network). For each workflows/*.json: the frontend's own loading finds every node type, accepts every
widget value and shows no error; its own UI-to-API conversion gives workflows/api/<name>.json; and
the workflow, set to the CPU-test scale through its widgets, runs from the Run button until the server
reports its images. A screenshot of each loaded workflow is saved (README, 'Tests')."""

import io
import os
from pathlib import Path

import pytest
from PIL import Image

from fixtures.shipped_workflows import API_DIR, UI_WORKFLOWS, assert_saved_pngs, at_test_scale, load

CHROMIUM = Path(os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium"))
MISSING = []
if not os.environ.get("COMFYUI_PATH"):
    MISSING.append("COMFYUI_PATH is not set: point it at a ComfyUI checkout")
try:
    from playwright import sync_api
except ImportError:
    MISSING.append("Playwright is not installed in this Python: `pip install playwright`")
if not CHROMIUM.is_file():
    MISSING.append(f"no Chromium at {CHROMIUM}: `apt install chromium`, or set CHROMIUM_PATH")
if MISSING:
    pytest.skip("; ".join(MISSING) + " (README, 'Tests')", allow_module_level=True)

# Chromium reaches nothing but the test server: no name resolves except loopback, and no background
# service (updates, sync, metrics) starts. Requests elsewhere are also aborted by the page.
OFFLINE_FLAGS = [
    "--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1",
    "--no-proxy-server",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-domain-reliability",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--no-pings",
]
# A first visit would open the templates browser over the graph; the minimap and the canvas info
# would cover part of the screenshots, and zoomed out to fit, nodes would be drawn without their text.
SETTINGS = {
    "Comfy.TutorialCompleted": True,
    "Comfy.Minimap.Visible": False,
    "Comfy.Graph.CanvasInfo": False,
    "LiteGraph.Canvas.MinFontSizeForLOD": 0,
}
# Files the frontend asks for on every start and a fresh user does not have: answered 404 by design.
OPTIONAL_USER_FILES = ("/user.css", "/api/userdata")
VIEWPORT, SCALE = {"width": 1600, "height": 1000}, 1.5  # screenshots of 2400x1500: small text stays legible


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=OFFLINE_FLAGS)
        yield chromium
        chromium.close()


@pytest.fixture(scope="module")
def frontend_server(server):
    status, _ = server.post("/settings", SETTINGS)
    assert status == 200
    return server


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory):
    """Where the screenshots go: STYLE_SUITE_SCREENSHOTS (docs/workflows refreshes the README's),
    else a temporary folder."""
    folder = os.environ.get("STYLE_SUITE_SCREENSHOTS")
    folder = Path(folder) if folder else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


class Frontend:
    """One page of the ComfyUI frontend, recording everything that went wrong on it."""

    def __init__(self, browser, server):
        self.server, self.problems = server, []
        self.page = browser.new_page(viewport=VIEWPORT, device_scale_factor=SCALE)
        self.page.on("pageerror", lambda error: self.problems.append(f"page error: {error}"))
        self.page.on("console", self._console)
        self.page.on("response", self._response)
        self.page.route("**/*", self._only_the_server)
        self.page.goto(server.url)
        self.page.wait_for_function("window.app?.vueAppReady === true", timeout=60_000)
        self.page.evaluate("""() => {
            window.styleSuiteExecuted = [];
            app.api.addEventListener('executed', (event) => window.styleSuiteExecuted.push(event.detail));
        }""")

    def _console(self, message):
        # a failed request shows here too, as "Failed to load resource"; _response judges those
        if message.type == "error" and not message.text.startswith("Failed to load resource"):
            self.problems.append(f"console error: {message.text}")

    def _response(self, response):
        path = response.url[len(self.server.url) :]
        if response.status >= 400 and not path.startswith(OPTIONAL_USER_FILES):
            self.problems.append(f"HTTP {response.status} for {path}")

    def _only_the_server(self, route):
        if route.request.url.startswith(self.server.url):
            route.continue_()
        else:
            self.problems.append(f"request off the test server: {route.request.url}")
            route.abort()

    def drop(self, path):
        """Drop the file on the canvas, as a user drags it from their file manager."""
        files = self.page.evaluate_handle(
            """([name, text]) => {
            const transfer = new DataTransfer();
            transfer.items.add(new File([text], name, {type: 'application/json'}));
            return transfer;
        }""",
            [path.name, path.read_text()],
        )
        self.page.locator("#graph-canvas").dispatch_event("drop", {"dataTransfer": files})
        self.page.wait_for_function("(name) => document.title.includes(name)", arg=path.stem)
        self.page.wait_for_load_state("networkidle")

    def messages(self):
        """The text of every dialog and toast on the page."""
        return self.page.evaluate(
            "() => [...document.querySelectorAll('.p-dialog, .p-toast-message')].map(e => e.innerText)"
        )

    def nodes(self):
        """{id: type, registered, widget values as saved, widgets whose value the frontend would refuse
        (not one of the choices, or outside min..max), and the box it takes on the canvas, title included}."""
        return {
            str(node["id"]): node
            for node in self.page.evaluate("""() => app.graph.nodes.map((node) => ({
            id: node.id,
            type: node.type,
            registered: node.type in LiteGraph.registered_node_types,
            widgets_values: node.serialize().widgets_values ?? [],
            refused: (node.widgets ?? []).filter((w) => Array.isArray(w.options?.values)
                ? !w.options.values.includes(w.value)
                : typeof w.value === 'number' && (w.value < w.options?.min || w.value > w.options?.max)
            ).map((w) => `${w.name}=${w.value}`),
            box: Array.from(node.boundingRect),
        }))""")
        }

    def api_prompt(self):
        """The frontend's own UI-to-API conversion of the graph on the page."""
        return self.page.evaluate("async () => (await app.graphToPrompt()).output")

    def set_widgets(self, changes):
        """Set widget values as a user edits them: {node id: {widget name: value}}."""
        self.page.evaluate(
            """(changes) => {
            for (const [id, values] of Object.entries(changes)) {
                const node = app.graph.getNodeById(Number(id));
                for (const [name, value] of Object.entries(values)) {
                    const widget = node.widgets.find((w) => w.name === name);
                    widget.value = value;
                    widget.callback?.(value);
                }
            }
            app.graph.setDirtyCanvas(true, true);
        }""",
            changes,
        )

    def run(self):
        """Click Run; the prompt the page posted and its id."""
        with self.page.expect_response(
            lambda r: r.url.endswith("/api/prompt") and r.request.method == "POST"
        ) as posted:
            self.page.get_by_role("button", name="Run", exact=True).click()
        response = posted.value
        assert response.ok, f"the server refused the prompt the page queued: {response.text()}"
        return response.request.post_data_json["prompt"], response.json()["prompt_id"]

    def executed(self, node_ids, timeout):
        """Wait until the page has heard 'executed' from the server for each of these nodes."""
        self.page.wait_for_function(
            """(ids) => ids.every((id) =>
            window.styleSuiteExecuted.some((detail) => detail.display_node === id || detail.node === id))""",
            arg=node_ids,
            timeout=timeout * 1000,
        )
        return self.page.evaluate("() => window.styleSuiteExecuted")

    def screenshot(self, path):
        self.page.evaluate("() => app.extensionManager.command.execute('Comfy.Canvas.FitView')")
        self.page.wait_for_timeout(500)  # a few frames: the canvas redraws after the view changes
        picture = Image.open(io.BytesIO(self.page.screenshot())).convert("RGB")
        # a UI has few colours: 256 of them look the same at a third of the file size
        picture.quantize(256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)


@pytest.fixture
def frontend(browser, frontend_server):
    page = Frontend(browser, frontend_server)
    yield page
    page.page.close()


def overlapping(nodes):
    """Pairs of node ids whose boxes on the canvas overlap."""
    pairs = []
    boxes = sorted((node_id, node["box"]) for node_id, node in nodes.items())
    for i, (a, (ax, ay, aw, ah)) in enumerate(boxes):
        for b, (bx, by, bw, bh) in boxes[i + 1 :]:
            if ax < bx + bw and bx < ax + aw and ay < by + bh and by < ay + ah:
                pairs.append((a, b))
    return pairs


def changed_inputs(shipped, wanted):
    """{node id: {input: value}} where `wanted` differs from `shipped` (both API format)."""
    changes = {}
    for node_id, node in wanted.items():
        for name, value in node["inputs"].items():
            if shipped[node_id]["inputs"][name] != value:
                changes.setdefault(node_id, {})[name] = value
    return changes


@pytest.mark.parametrize("path", UI_WORKFLOWS, ids=lambda p: p.stem)
def test_workflow_loads_converts_and_runs_in_the_frontend(frontend, screenshots, path):
    ui, api = load(path), load(API_DIR / path.name)
    frontend.drop(path)

    # loaded as saved: every node type known, every widget value kept and a valid choice, no message
    nodes = frontend.nodes()
    assert set(nodes) == {str(node["id"]) for node in ui["nodes"]}
    for saved in ui["nodes"]:
        node = nodes[str(saved["id"])]
        assert node["registered"], f"node {saved['id']}: the frontend does not know {saved['type']}"
        assert node["widgets_values"] == saved.get("widgets_values", []), f"node {saved['id']} ({saved['type']})"
        assert not node["refused"], (
            f"node {saved['id']} ({saved['type']}): not a choice or out of range: {node['refused']}"
        )
    assert frontend.messages() == []
    assert frontend.problems == []

    screenshot = screenshots / f"{path.stem}.png"
    frontend.screenshot(screenshot)
    with Image.open(screenshot) as picture:
        assert picture.size == (VIEWPORT["width"] * SCALE, VIEWPORT["height"] * SCALE)
    assert overlapping(nodes) == [], "nodes drawn over each other in the screenshot"

    # the frontend's own conversion is the API twin: same classes, links, values and titles
    assert frontend.api_prompt() == api

    # at test scale through the widgets, queued with Run, until the server reports the images
    prompt = at_test_scale(api)
    frontend.set_widgets(changed_inputs(api, prompt))
    posted, prompt_id = frontend.run()
    assert posted == prompt
    save_nodes = [node_id for node_id, node in prompt.items() if node["class_type"] == "SaveImage"]
    executed = frontend.executed(save_nodes, timeout=600)
    entry = frontend.server.wait(prompt_id, timeout=60)
    for node_id in save_nodes:
        heard = [d["output"]["images"] for d in executed if d["prompt_id"] == prompt_id and d["node"] == node_id]
        assert heard == [entry["outputs"][node_id]["images"]]  # the page shows what the server saved
    assert_saved_pngs(frontend.server, prompt, entry)
    assert frontend.problems == []
