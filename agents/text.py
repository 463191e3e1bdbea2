"""Text helpers shared by the built-in agents: titles, slugs, features, feedback sections.

Everything here is a pure function of its input so that agents stay deterministic.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from connectsw.agents.base import TaskContext
from connectsw.core.errors import TaskError

PRD_PATH = "docs/PRD.md"

# The HTTP API every generated product exposes: (method, path, purpose).
ENDPOINTS: tuple[tuple[str, str, str], ...] = (
    ("GET", "/health", 'Liveness check: {"status": "ok"}'),
    ("GET", "/api/info", "Product name and feature list"),
    ("GET", "/api/items", "List the items stored in memory"),
    ("POST", "/api/items", 'Add an item from a JSON body {"name": ..., "note": ...}'),
)

_ACRONYMS = {
    "ai",
    "api",
    "ui",
    "ux",
    "ml",
    "llm",
    "sql",
    "http",
    "json",
    "crm",
    "pdf",
    "csv",
    "sms",
}
_SMALL = {"a", "an", "the", "and", "or", "for", "of", "to", "in", "on", "with", "by", "at"}
_LEADING = {"build", "create", "make", "write", "develop", "design", "implement", "new", "please"}
_STOP = _SMALL | _LEADING | {"that", "which", "is", "are", "be", "it", "its", "my", "our", "app"}

# (word stems, feature, target user): matched against the request's words by prefix.
_KEYWORDS: tuple[tuple[tuple[str, ...], str, str], ...] = (
    (("ai", "smart", "intelligen", "llm", "ml"), "Get AI-assisted suggestions", ""),
    (("review",), "Review submissions and record findings", "reviewer"),
    (("code", "repo", "pull"), "Submit code snippets and repository links", "software developer"),
    (("chat", "messag", "convers"), "Hold threaded conversations", "team member"),
    (("task", "todo", "project"), "Track tasks and their status", "project lead"),
    (("note", "doc", "wiki"), "Capture and organise notes", "knowledge worker"),
    (("search", "find", "discover"), "Search across stored items", ""),
    (("analyt", "dashboard", "report", "metric"), "See a summary dashboard of activity", "manager"),
    (("recommend", "suggest"), "Get personalised recommendations", ""),
    (("schedul", "calendar", "book"), "Schedule and book time slots", "organiser"),
    (("shop", "store", "commerce", "order"), "Browse and order products", "shopper"),
    (("learn", "course", "tutor", "quiz"), "Follow guided lessons and quizzes", "learner"),
    (("health", "fitness", "workout"), "Log activities and progress", "active person"),
    (("financ", "budget", "expense", "invoice"), "Record expenses and budgets", "business owner"),
)

BASE_FEATURE = "Create and list items"
MAX_FEATURES = 6


@dataclass(frozen=True)
class Product:
    """What the agents build: a title, its slug and its features."""

    title: str
    slug: str
    features: tuple[str, ...]
    request: str = ""


def words(text: str) -> list[str]:
    """The lowercase words of ``text`` (letters, digits and inner hyphens)."""
    return re.findall(r"[a-z0-9]+(?:-[a-z0-9]+)*", text.lower())


def slugify(text: str, default: str = "product") -> str:
    """``"AI-powered code reviewer"`` -> ``"ai-powered-code-reviewer"`` (at most 60 chars)."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return slug[:60].rstrip("-") or default


def _title_word(word: str, first: bool) -> str:
    parts = []
    for part in word.split("-"):
        low = part.lower()
        if low in _ACRONYMS or (len(part) > 1 and part.isupper()):
            parts.append(part.upper())
        elif low in _SMALL and not first:
            parts.append(low)
        else:
            parts.append(part[:1].upper() + part[1:])
        first = False
    return "-".join(parts)


def title_case(text: str) -> str:
    """``"AI-powered code reviewer"`` -> ``"AI-Powered Code Reviewer"``."""
    return " ".join(_title_word(w, i == 0) for i, w in enumerate(text.split()))


def product_title(request: str) -> str:
    """A short product title from free request text (leading verbs and clauses dropped)."""
    # Keep the noun phrase: "Build an AI code reviewer that comments on PRs" -> "AI Code Reviewer".
    head = re.split(r"[.,;:!?\n]| that | which | who | so ", f" {request} ", maxsplit=1)[0]
    tokens = head.split()
    while tokens and tokens[0].lower() in _LEADING | {"a", "an", "the"}:
        tokens.pop(0)
    return title_case(" ".join(tokens[:8]))


def _matches(stems: tuple[str, ...], request_words: list[str]) -> bool:
    parts = [p for w in request_words for p in w.split("-")]
    return any(p.startswith(s) for p in parts for s in stems)


def extract_features(text: str) -> list[str]:
    """Features implied by the request's words, always starting with the base feature."""
    request_words = words(text)
    features = [BASE_FEATURE]
    for stems, feature, _user in _KEYWORDS:
        if _matches(stems, request_words) and feature not in features:
            features.append(feature)
    if len(features) == 1:
        subject = [w for w in request_words if w not in _STOP][:3]
        features.append(f"Run the core {' '.join(subject) or 'product'} workflow")
    return features[:MAX_FEATURES]


def target_users(text: str) -> list[str]:
    """Who the product is for (singular nouns), judged from the request's words."""
    request_words = words(text)
    users = [u for stems, _f, u in _KEYWORDS if u and _matches(stems, request_words)]
    unique = list(dict.fromkeys(users))
    return unique or ["user"]


def describe(text: str, title: str | None = None) -> Product:
    """The product a request text describes (``title`` overrides the derived one)."""
    name = (title or "").strip() or product_title(text) or "Product"
    return Product(name, slugify(name), tuple(extract_features(text)), text.strip())


def parse_prd(prd: str) -> tuple[str, list[str]]:
    """The title (first ``# `` heading) and ``## Features`` bullets of a PRD."""
    title = ""
    features: list[str] = []
    section = ""
    for line in prd.splitlines():
        if line.startswith("# ") and not title:
            title = line[2:].strip()
        elif line.startswith("## "):
            section = line[3:].strip().lower()
        elif section == "features" and line.startswith("- "):
            features.append(line[2:].strip())
    return title, features


def product_for(ctx: TaskContext) -> Product:
    """The product of this workspace: from docs/PRD.md if present, else the request text."""
    prd = ctx.read(PRD_PATH)
    title, features = parse_prd(prd) if prd else ("", [])
    text = ctx.request.text
    if title:
        return Product(title, slugify(title), tuple(features or extract_features(text)), text)
    if not text:
        raise TaskError(
            f"no product described: the request text is empty and {PRD_PATH} is missing"
        )
    return describe(text)


def bullets(items: list[str] | tuple[str, ...], empty: str = "None.") -> str:
    """A markdown bullet list, or ``empty`` when there are no items."""
    return "\n".join(f"- {one_line(i)}" for i in items) if items else empty


def one_line(text: str) -> str:
    """``text`` with all whitespace runs (newlines included) collapsed to single spaces."""
    return " ".join(str(text).split())


def feedback_section(feedback: list[str]) -> str:
    """The ``## Feedback incorporated`` markdown section listing every feedback item."""
    body = bullets(feedback, "No feedback received yet.")
    return f"## Feedback incorporated\n\n{body}\n"


def memory_section(memories: list[dict[str, Any]] | None) -> str:
    """The ``## From project memory`` section citing the memories an agent was given
    (their first line, type and source); empty when there are none."""
    if not memories:
        return ""
    items = []
    for m in memories:
        first = next((ln.strip() for ln in m["content"].splitlines() if ln.strip()), "")
        first = one_line(first.lstrip("#").strip())[:200]
        source = f" (source: `{m['source']}`)" if m.get("source") else ""
        items.append(f"{m['type'].capitalize()}: {first}{source}")
    intro = "Earlier decisions and notes this builds on:"
    return f"## From project memory\n\n{intro}\n\n{bullets(items)}\n"


def endpoint_table() -> str:
    """The API endpoints as a markdown table."""
    rows = [f"| {m} | `{p}` | {d} |" for m, p, d in ENDPOINTS]
    return "\n".join(["| Method | Path | Purpose |", "| --- | --- | --- |", *rows])


def endpoint_names() -> list[str]:
    """The API endpoints as ``"METHOD /path"`` strings."""
    return [f"{m} {p}" for m, p, _d in ENDPOINTS]


# "add a Security section", "include an Accessibility section", "with a 'Risks' section".
_SECTION_REQUEST = re.compile(
    r"\b(?:add|include|needs?|want|with)\s+(?:a|an|the|one)?\s*[\"'`“]?"
    r"([A-Za-z][A-Za-z0-9 &/-]{0,40}?)[\"'`”]?\s+section\b",
    re.IGNORECASE,
)

# What a requested section says for a few common names; any other name gets a
# section that states the request and what the product does about it.
_SECTION_BODIES: dict[str, list[str]] = {
    "security": [
        "Every input of the HTTP API is validated; bad input gets a JSON 400, never a trace.",
        "No secret is stored in the repository or written to a log.",
        "Dependencies are limited to the Python standard library (no supply-chain risk).",
        "The service listens on loopback by default; exposing it is a deployment decision.",
    ],
    "accessibility": [
        "The page uses semantic HTML: headings, labels for every input, buttons not divs.",
        "Everything works with the keyboard alone; focus is always visible.",
        "Text contrast meets WCAG 2.1 AA.",
    ],
    "performance": [
        "`GET /health` answers within 100 ms on a developer laptop.",
        "Listing items answers within 200 ms for 10,000 items.",
    ],
    "privacy": [
        "Items live in memory only: nothing personal is kept after the service stops.",
        "No analytics or third-party requests are made by the page.",
    ],
    "risks": [
        "Scope creep beyond the listed features: changes go through the PRD checkpoint.",
        "In-memory storage loses data on restart (a non-goal of this release).",
    ],
}


def requested_sections(texts: list[str]) -> list[str]:
    """Section names that feedback or preferences ask for (``"add a Security section"``
    gives ``"Security"``), in order, each once (case-insensitive)."""
    names: list[str] = []
    for text in texts:
        for match in _SECTION_REQUEST.finditer(text):
            name = " ".join(match.group(1).split())
            name = name[:1].upper() + name[1:]
            if name and name.lower() not in {n.lower() for n in names}:
                names.append(name)
    return names


def requested_section(name: str, asked: list[str]) -> str:
    """The markdown of a requested section: ``## NAME``, its body, and who asked for it."""
    body = _SECTION_BODIES.get(name.lower()) or [
        f"This product addresses {name.lower()} explicitly; the details are settled with the"
        " project's reviewers before implementation."
    ]
    why = [one_line(t) for t in asked if name.lower() in t.lower()]
    source = f"\n_Asked for: {'; '.join(why)}_\n" if why else ""
    return f"## {name}\n\n{bullets(body)}\n{source}"


def preferences_section(preferences: list[str]) -> str:
    """The ``## Project preferences applied`` section (empty when there are none)."""
    if not preferences:
        return ""
    intro = "Asked for at this checkpoint in earlier executions of this project, applied up front:"
    return f"## Project preferences applied\n\n{intro}\n\n{bullets(preferences)}\n"
