"""The architect agent: docs/architecture.md and the first ADR, from the PRD.

With a model configured the model writes the architecture and its ADRs in the
``FILE:`` format (prompts ``architect.md`` and ``file-format.md``), under docs/;
without one they are the deterministic templates below.
"""

from __future__ import annotations

from typing import Any

from connectsw.agents.base import Agent, AgentOutput, TaskContext
from connectsw.agents.llm.base import Message
from connectsw.agents.llm.context import brief
from connectsw.agents.llm.files import parse_files
from connectsw.agents.llm.prompts import system_prompt
from connectsw.agents.llm.session import ModelBrief, ModelSession, open_session
from connectsw.agents.text import (
    Product,
    bullets,
    endpoint_names,
    endpoint_table,
    feedback_section,
    memory_section,
    product_for,
    slugify,
)
from connectsw.core.errors import LLMBadResponse

ARCHITECTURE_PATH = "docs/architecture.md"
ADR_TITLE = "Use the Python standard library HTTP server"
ADR_PATH = f"docs/adr/0001-{slugify(ADR_TITLE)}.md"


class ArchitectAgent(ModelBrief, Agent):
    """Describes the components, API and data model the engineers then build."""

    name = "architect"
    isolation = "thread"  # a few file writes, or model calls (each with a deadline)
    uses_memory = True
    description = "Writes docs/architecture.md and an ADR for the product in docs/PRD.md."

    def run(self, ctx: TaskContext) -> AgentOutput:
        """Write the architecture document and ADR 0001."""
        product = product_for(ctx)
        session = open_session(self.name, ctx)
        if session is not None:
            return self._with_model(ctx, product, session)
        artifacts = [
            ctx.write(
                ARCHITECTURE_PATH,
                render_architecture(product, ctx.feedback, ctx.memories),
                type="document",
                description="Architecture",
            ),
            ctx.write(
                ADR_PATH, render_adr(product, ctx.feedback), type="document", description=ADR_TITLE
            ),
        ]
        return AgentOutput(
            summary=f"Wrote the architecture of {product.title} and ADR 0001",
            outputs={"endpoints": endpoint_names()},
            artifacts=artifacts,
        )

    def _with_model(self, ctx: TaskContext, product: Product, session: ModelSession) -> AgentOutput:
        """The model writes docs/architecture.md and docs/adr/*.md."""
        ask = brief(
            ctx,
            "Write docs/architecture.md and the ADRs for this product.",
            ctx.request.text or product.title,
        )
        system = system_prompt(self.name, ctx.workspace, files=True)
        reply = session.complete([Message("system", system), Message("user", ask)])
        files = parse_files(reply, ("docs/",))
        if ARCHITECTURE_PATH not in {f.path for f in files}:
            raise LLMBadResponse(f"the model's reply has no FILE: {ARCHITECTURE_PATH} block")
        artifacts = [
            ctx.write(
                f.path,
                f.text,
                type="document",
                description="Architecture" if f.path == ARCHITECTURE_PATH else "Decision record",
            )
            for f in files
        ]
        adrs = [f.path for f in files if f.path.startswith("docs/adr/")]
        return AgentOutput(
            summary=f"Wrote the architecture of {product.title} and {len(adrs)} ADRs "
            f"with {session.choice.model}",
            outputs={"documents": [f.path for f in files], "adrs": adrs},
            artifacts=artifacts,
        )


def render_architecture(
    product: Product, feedback: list[str], memories: list[dict[str, Any]] | None = None
) -> str:
    """The architecture markdown; a pure function of its arguments."""
    components = [
        "`service/` — HTTP service on `http.server.ThreadingHTTPServer` and `json` (standard "
        "library only). `service/app.py` exposes `make_server(host, port)` and a runner.",
        "`web/` — static page (`index.html`, `app.js`, `style.css`) served by the service at `/`; "
        "it calls the JSON API with `fetch`.",
        "`tests/` — `unittest` tests: the service's endpoints over real HTTP and the page's "
        "wiring to the API. They also run under pytest.",
    ]
    return "\n".join(
        [
            f"# Architecture: {product.title}\n",
            "A single Python process serves both a JSON API and a static page. There are no "
            "third-party dependencies, so the product runs wherever Python 3.11+ runs.\n",
            f"## Components\n\n{bullets(components)}\n",
            f"## API endpoints\n\n{endpoint_table()}\n",
            'Errors are JSON objects `{"error": "..."}` with status 400 (bad input) or 404.\n',
            "## Data model\n",
            "An **item** is a JSON object held in an in-memory list guarded by a lock:\n",
            bullets(
                [
                    "`id` (int) — assigned by the service, starting at 1.",
                    "`name` (string, required, non-empty) — what the item is.",
                    "`note` (string, optional, default empty) — free text.",
                ]
            )
            + "\n",
            f'`GET /api/info` returns `{{"name": "{product.title}", "features": [...]}}` '
            "with these features:\n",
            bullets(product.features) + "\n",
            "## How to run\n",
            "```sh\npython -m service.app --port 8000   # then open http://127.0.0.1:8000/\n"
            "python -m unittest discover -s tests -t .\n```\n",
            "## Decisions\n",
            f"- [ADR 0001: {ADR_TITLE}](adr/{ADR_PATH.rsplit('/', 1)[1]})\n",
            *([memory_section(memories)] if memories else []),
            feedback_section(feedback),
        ]
    )


def render_adr(product: Product, feedback: list[str]) -> str:
    """ADR 0001 markdown: Context / Decision / Consequences."""
    return "\n".join(
        [
            f"# ADR 0001: {ADR_TITLE}\n",
            "Status: accepted\n",
            "## Context\n",
            f"{product.title} needs a small JSON API and a page that uses it. It must be easy "
            "to run, test and review, with nothing to install beyond Python.\n",
            "## Decision\n",
            "Implement the service with `http.server.ThreadingHTTPServer` and `json` from the "
            "Python standard library, with no third-party dependencies. Serve the static page "
            "from `web/` with the same server. Write tests with `unittest`.\n",
            "## Consequences\n",
            bullets(
                [
                    "Nothing to install: `python -m service.app` runs the product.",
                    "Routing and validation are hand-written; keep the API small.",
                    "`http.server` is not hardened for the open internet: put a reverse proxy "
                    "in front of it before any public deployment.",
                    "Data is in memory and lost on restart; persistence is a later decision.",
                ]
            )
            + "\n",
            feedback_section(feedback),
        ]
    )
