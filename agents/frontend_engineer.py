"""The frontend-engineer agent: a static page in web/ that uses the service's API.

With a model configured the model writes the page and its tests (in web/ and
tests/) from the PRD and architecture, and gets its failing tests back up to
``llm.fix_rounds`` times (:mod:`connectsw.agents.llm.coding`).
"""

from __future__ import annotations

import html

from connectsw.agents.base import Agent, AgentOutput, TaskContext
from connectsw.agents.llm.coding import write_and_fix
from connectsw.agents.llm.context import brief
from connectsw.agents.llm.prompts import system_prompt
from connectsw.agents.llm.session import ModelBrief, ModelSession, open_session
from connectsw.agents.text import Product, one_line, product_for

APP_JS = """\
"use strict";
// Talks to the service's JSON API; renders with textContent so user input is never HTML.

async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json();
  if (!response.ok) {
    throw new Error(body.error || response.statusText);
  }
  return body;
}

function showError(message) {
  document.getElementById("error").textContent = message || "";
}

async function loadInfo() {
  const info = await getJSON("/api/info");
  document.getElementById("product-name").textContent = info.name;
  const list = document.getElementById("features");
  list.replaceChildren(...info.features.map((feature) => {
    const li = document.createElement("li");
    li.textContent = feature;
    return li;
  }));
}

async function loadItems() {
  const data = await getJSON("/api/items");
  const list = document.getElementById("items");
  list.replaceChildren(...data.items.map((item) => {
    const li = document.createElement("li");
    li.textContent = item.note ? `${item.name} - ${item.note}` : item.name;
    return li;
  }));
  document.getElementById("empty").hidden = data.items.length > 0;
}

async function addItem(event) {
  event.preventDefault();
  const form = event.target;
  const payload = { name: form.elements.name.value, note: form.elements.note.value };
  try {
    await getJSON("/api/items", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(payload),
    });
    form.reset();
    showError("");
    await loadItems();
  } catch (error) {
    showError(error.message);
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("add-item").addEventListener("submit", addItem);
  Promise.all([loadInfo(), loadItems()]).catch((error) => showError(error.message));
});
"""

STYLE_CSS = """\
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 40rem; padding: 0 1rem; }
h1 { margin-bottom: 0.25rem; }
form { display: flex; gap: 0.5rem; flex-wrap: wrap; margin: 1rem 0; }
input { flex: 1 1 10rem; padding: 0.4rem; }
button { padding: 0.4rem 1rem; }
#error { color: #b00020; min-height: 1.2em; }
"""

TEST_WEB = '''\
"""Tests of the static page: it exists, loads app.js, and app.js calls real endpoints."""

from __future__ import annotations

import re
import unittest
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
WEB = ROOT / "web"
SERVICE = ROOT / "service" / "app.py"


class WebPageTest(unittest.TestCase):
    def read(self, path: Path) -> str:
        self.assertTrue(path.is_file(), f"{path} is missing")
        return path.read_text(encoding="utf-8")

    def test_page_loads_script_and_style(self) -> None:
        page = self.read(WEB / "index.html")
        self.assertIn("<title>__TITLE__</title>", page)
        self.assertIn('src="app.js"', page)
        self.assertIn('href="style.css"', page)
        for element_id in ("product-name", "features", "items", "add-item", "error"):
            self.assertIn(f'id="{element_id}"', page)

    def test_script_calls_the_api(self) -> None:
        script = self.read(WEB / "app.js")
        self.assertIn('"/api/info"', script)
        self.assertIn('"/api/items"', script)
        self.assertIn('method: "POST"', script)

    def test_script_endpoints_exist_in_service(self) -> None:
        if not SERVICE.is_file():
            self.skipTest("service/app.py not written yet")
        service = SERVICE.read_text(encoding="utf-8")
        paths = set(re.findall(r'"(/api/[a-z0-9/_-]*)"', self.read(WEB / "app.js")))
        self.assertTrue(paths)
        for path in sorted(paths):
            self.assertIn(f'"{path}"', service, f"app.js calls {path}, which the service lacks")


if __name__ == "__main__":
    unittest.main()
'''


class FrontendEngineerAgent(ModelBrief, Agent):
    """Writes web/index.html, web/app.js, web/style.css and tests/test_web.py."""

    name = "frontend-engineer"
    isolation = "thread"  # a few file writes, or model calls and tests under the supervisor
    description = "Writes a static web page in web/ that lists and adds items through the API."

    def run(self, ctx: TaskContext) -> AgentOutput:
        """Write the page, its script and style, and the page's tests."""
        product = product_for(ctx)
        session = open_session(self.name, ctx)
        if session is not None:
            return self._with_model(ctx, session)
        title = html.escape(one_line(product.title))
        artifacts = [
            ctx.write(
                "web/index.html",
                render_index(product, ctx.feedback),
                type="page",
                description=f"{product.title} page",
            ),
            ctx.write("web/app.js", APP_JS, type="code", description="Page script"),
            ctx.write("web/style.css", STYLE_CSS, type="code", description="Page style"),
            ctx.write("tests/__init__.py", "", type="test", description="Test package"),
            ctx.write(
                "tests/test_web.py",
                TEST_WEB.replace("__TITLE__", _python_string_safe(title)),
                type="test",
                description="Page tests",
            ),
        ]
        return AgentOutput(
            summary=f"Wrote the {product.title} web page and its tests",
            outputs={"page": "web/index.html", "calls": ["/api/info", "/api/items"]},
            artifacts=artifacts,
        )

    def _with_model(self, ctx: TaskContext, session: ModelSession) -> AgentOutput:
        """The model writes web/ and its tests; tests are run and fixed."""
        ask = brief(ctx, "Build the web page and its tests.")
        system = system_prompt(self.name, ctx.workspace, files=True)
        from connectsw.conf.settings import get_settings

        rounds = get_settings().llm.fix_rounds
        done = write_and_fix(ctx, session, system, ask, ("web/", "tests/"), rounds)
        return done.output(session.choice.model)


def _python_string_safe(text: str) -> str:
    # The escaped title is placed inside a double-quoted Python string in the test.
    return text.replace("\\", "\\\\").replace('"', '\\"')


def render_index(product: Product, feedback: list[str]) -> str:
    """web/index.html; feedback is recorded in an HTML comment (``--`` is not allowed there)."""
    title = html.escape(one_line(product.title))
    notes = "\n".join(f"  - {one_line(f).replace('--', '- -')}" for f in feedback) or "  None."
    return f"""\
<!DOCTYPE html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <meta name="viewport" content="width=device-width, initial-scale=1">
  <title>{title}</title>
  <link rel="stylesheet" href="style.css">
  <script src="app.js" defer></script>
</head>
<body>
<!--
Feedback incorporated:
{notes}
-->
  <header>
    <h1 id="product-name">{title}</h1>
    <ul id="features"></ul>
  </header>
  <main>
    <h2>Items</h2>
    <p id="empty">No items yet.</p>
    <ul id="items"></ul>
    <form id="add-item">
      <input name="name" placeholder="Name" required aria-label="Name">
      <input name="note" placeholder="Note (optional)" aria-label="Note">
      <button type="submit">Add</button>
    </form>
    <p id="error" role="alert"></p>
  </main>
</body>
</html>
"""
