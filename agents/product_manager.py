"""The product-manager agent: turns a request into docs/PRD.md (or a generic document).

With a model configured (``[llm]``) the model writes the document from the request,
the project's memory and the checkpoint feedback (prompt ``product-manager.md``);
without one the document is the deterministic template below.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from connectsw.agents.base import Agent, AgentInput, AgentOutput, TaskContext
from connectsw.agents.llm.base import Message
from connectsw.agents.llm.context import documents, project_memory, section
from connectsw.agents.llm.files import strip_fence
from connectsw.agents.llm.prompts import load_prompt
from connectsw.agents.llm.session import ModelBrief, ModelSession, open_session
from connectsw.agents.text import (
    PRD_PATH,
    Product,
    bullets,
    describe,
    endpoint_table,
    feedback_section,
    memory_section,
    one_line,
    parse_prd,
    preferences_section,
    requested_section,
    requested_sections,
    slugify,
    target_users,
    title_case,
)
from connectsw.core.errors import LLMBadResponse, TaskError, describe_validation_error


class ProductManagerInput(AgentInput):
    """Optional ``with`` keys: where to write, a title override and extra notes."""

    output: str | None = None
    title: str | None = None
    notes: str | None = None


class ProductManagerAgent(ModelBrief, Agent):
    """Writes a product requirements document from the request text, deterministically."""

    name = "product-manager"
    isolation = "thread"  # a few file writes, or model calls (each with a deadline)
    description = "Writes the product requirements document (docs/PRD.md) from the request."
    uses_memory = True
    input_model = ProductManagerInput

    def run(self, ctx: TaskContext) -> AgentOutput:
        """Write the PRD, or the document named by the ``output`` input."""
        try:
            inputs = ProductManagerInput.model_validate(ctx.inputs)
        except ValidationError as exc:
            raise TaskError(f"invalid input: {describe_validation_error(exc)}") from None
        text = ctx.request.text
        title = inputs.title or ("" if text else ctx.task.title)
        if not text and not title:
            raise TaskError("nothing to write about: the request text and task title are empty")
        product = describe(text or title, title)
        session = open_session(self.name, ctx)
        if session is not None:
            return self._with_model(ctx, inputs, product, session)
        if inputs.output:
            return self._document(ctx, inputs, product)
        prd = render_prd(product, inputs.notes, ctx.feedback, ctx.memories, preferences(ctx))
        artifact = ctx.write(PRD_PATH, prd, type="document", description="Product requirements")
        return AgentOutput(
            summary=f"Wrote the PRD for {product.title} ({len(product.features)} features)",
            outputs={
                "product": product.title,
                "slug": product.slug,
                "features": list(product.features),
            },
            artifacts=[artifact],
        )

    def _document(
        self, ctx: TaskContext, inputs: ProductManagerInput, product: Product
    ) -> AgentOutput:
        """A generic document (e.g. release notes) at the ``output`` path."""
        path = inputs.output or ""
        title = inputs.title or title_case(ctx.task.title) or product.title
        try:
            ctx.path(path)
        except ValueError as exc:
            raise TaskError(str(exc)) from None
        text = render_document(title, ctx, inputs.notes)
        artifact = ctx.write(path, text, type="document", description=one_line(title))
        return AgentOutput(
            summary=f"Wrote {path}",
            outputs={
                "product": product.title,
                "slug": product.slug,
                "features": list(product.features),
                "path": path,
            },
            artifacts=[artifact],
        )

    def _with_model(
        self,
        ctx: TaskContext,
        inputs: ProductManagerInput,
        product: Product,
        session: ModelSession,
    ) -> AgentOutput:
        """The model writes the PRD (or the ``output`` document)."""
        path = inputs.output or PRD_PATH
        try:
            ctx.path(path)
        except ValueError as exc:
            raise TaskError(str(exc)) from None
        request = ctx.request.text or ctx.task.title
        what = (
            f"Write the document `{path}` titled {inputs.title!r} for this project."
            if inputs.output
            else "Write the product requirements document (docs/PRD.md)."
        )
        ask = "\n".join(
            [
                what + "\n",
                f"## Request\n\n{request}\n",
                *([f"## Product name\n\n{inputs.title}\n"] if inputs.title else []),
                *([f"## Notes\n\n{inputs.notes.strip()}\n"] if inputs.notes else []),
                section("Project memory", project_memory(ctx, request)),
                *(
                    [section("Project preferences (asked for before: apply them now)", prefs)]
                    if (prefs := preferences(ctx))
                    else []
                ),
                section("Feedback to incorporate", ctx.feedback, "No feedback received yet."),
                documents(ctx, [PRD_PATH] if inputs.output else []),
            ]
        )
        reply = session.complete(
            [
                Message("system", load_prompt(self.name, ctx.workspace)),
                Message("user", ask),
            ]
        )
        text = strip_fence(reply)
        if not text.strip():
            raise LLMBadResponse("the model's reply is empty")
        artifact = ctx.write(
            path,
            text,
            type="document",
            description=one_line(inputs.title or "Product requirements"),
        )
        title, features = parse_prd(text)
        title = title or product.title
        outputs = {
            "product": title,
            "slug": slugify(title),
            "features": features or list(product.features),
        }
        if inputs.output:
            outputs["path"] = path
        return AgentOutput(
            summary=f"Wrote {path} for {title} with {session.choice.model}",
            outputs=outputs,
            artifacts=[artifact],
        )


def preferences(ctx: TaskContext) -> list[str]:
    """The project's preferences the plan gave this task (``TaskSpec.learned``)."""
    learned = ctx.task.learned
    return list(learned.preferences) if learned is not None else []


def user_stories(product: Product, users: list[str]) -> list[str]:
    """One story per feature (at least three), cycling through the target users."""
    goals = list(product.features)
    goals += ["See the product's status at a glance", "Use it without installing anything"]
    benefits = (
        "I spend less time on repetitive work",
        "I can rely on one place for this work",
        "I can trust the results",
    )
    return [
        f"As {_article(users[i % len(users)])}, I want to {goal[:1].lower() + goal[1:]}, "
        f"so that {benefits[i % len(benefits)]}."
        for i, goal in enumerate(goals[: max(3, len(product.features))])
    ]


def _article(noun: str) -> str:
    return f"an {noun}" if noun[:1].lower() in "aeiou" else f"a {noun}"


def render_prd(
    product: Product,
    notes: str | None,
    feedback: list[str],
    memories: list[dict[str, Any]] | None = None,
    preferences: list[str] | None = None,
) -> str:
    """The PRD markdown; a pure function of its arguments.

    A section that the project's ``preferences`` (applied up front) or this round's
    ``feedback`` ask for (``"add a Security section"``) is written as its own
    ``## Security`` section (:func:`connectsw.agents.text.requested_sections`).
    """
    preferences = preferences or []
    users = target_users(product.request or product.title)
    stories = "\n".join(f"{i}. {s}" for i, s in enumerate(user_stories(product, users), 1))
    requirements = [f"FR-{i}: {f}." for i, f in enumerate(product.features, 1)]
    n = len(requirements)
    requirements += [
        f"FR-{n + 1}: The service exposes a JSON HTTP API (below); bad input gets a JSON 400.",
        f"FR-{n + 2}: A static web page shows the product, lists items and adds new ones.",
        *(f"FR-{n + 3 + i}: {one_line(f)} (from feedback)." for i, f in enumerate(feedback)),
    ]
    sections = [
        f"# {product.title}\n",
        f"Product requirements document. Slug: `{product.slug}`.\n",
        f"> Request: {one_line(product.request or product.title)}\n",
        "## Problem statement\n",
        f"People who want {_article(product.title)} today stitch it together by hand. "
        f"{product.title} gives them one small, dependable service and page for it.\n",
        f"## Target users\n\n{bullets([u[:1].upper() + u[1:] + 's' for u in users])}\n",
        "## Goals\n",
        bullets(
            [
                f"Deliver the core {product.title} workflow end to end.",
                "Run anywhere Python runs, with no third-party dependencies.",
                "Keep every behaviour covered by automated tests.",
            ]
        )
        + "\n",
        f"## Features\n\n{bullets(product.features)}\n",
        f"## User stories\n\n{stories}\n",
        f"## Functional requirements\n\n{bullets(requirements)}\n",
        f"### API resources\n\n{endpoint_table()}\n",
        "## Non-goals\n",
        bullets(
            [
                "User accounts, authentication and billing.",
                "Persistent storage: items live in memory for this release.",
                "Native mobile applications.",
            ]
        )
        + "\n",
        "## Success metrics\n",
        bullets(
            [
                "All automated tests pass on every change.",
                "`GET /health` answers within 100 ms on a developer laptop.",
                "A new user adds a first item within one minute of opening the page.",
            ]
        )
        + "\n",
    ]
    asked = [*preferences, *feedback]
    sections += [requested_section(name, asked) for name in requested_sections(asked)]
    if notes:
        sections.append(f"## Notes\n\n{notes.strip()}\n")
    if preferences:
        sections.append(preferences_section(preferences))
    if memories:
        sections.append(memory_section(memories))
    sections.append(feedback_section(feedback))
    return "\n".join(sections)


def render_document(title: str, ctx: TaskContext, notes: str | None) -> str:
    """A generic document: title, request, notes, upstream summaries and feedback."""
    upstream = [
        f"{task_id}: {one_line(info.get('summary') or 'done')}"
        for task_id, info in sorted(ctx.upstream.items())
    ]
    sections = [f"# {one_line(title)}\n"]
    if ctx.request.text:
        sections.append(f"> Request: {one_line(ctx.request.text)}\n")
    sections += [
        f"## Summary\n\n{notes.strip() if notes else f'Prepared for task `{ctx.task.id}`.'}\n",
        f"## Context from upstream tasks\n\n{bullets(upstream)}\n",
        feedback_section(ctx.feedback),
    ]
    return "\n".join(sections)
