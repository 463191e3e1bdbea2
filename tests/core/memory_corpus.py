# ruff: noqa: E501
"""A project's memories and, for each, a question asked in other words (the retrieval test).

Written for tests/core/test_memory_retrieval.py: each query paraphrases its memory
(the words a person would use when asking), not a copy of the memory's text.
"""

from __future__ import annotations

#: (type, memory text, query whose expected top hit is that memory)
CORPUS: list[tuple[str, str, str]] = [
    (
        "decision",
        "We use PostgreSQL as the primary database because we need JSONB columns and strong transactional guarantees.",
        "which relational store did we pick and for what reason",
    ),
    (
        "decision",
        "Redis is the cache in front of the product catalogue; entries expire after five minutes.",
        "how long do cached catalogue items live",
    ),
    (
        "decision",
        "The backend API is written in Python with FastAPI and served by uvicorn workers.",
        "what web framework runs the server side",
    ),
    (
        "architecture",
        "The frontend is a React single-page application built with Vite and TypeScript.",
        "what is the client UI library and bundler",
    ),
    (
        "decision",
        "Authentication uses OAuth 2.0 with PKCE; access tokens are JWTs valid for fifteen minutes.",
        "how do users log in and how long are their tokens good for",
    ),
    (
        "preference",
        "Always write the tests before the implementation; pull requests without tests are rejected.",
        "do we require test-driven development for changes",
    ),
    (
        "decision",
        "Deployments go to Kubernetes on AWS EKS through a GitHub Actions pipeline.",
        "where is the app hosted and how is it shipped",
    ),
    (
        "pattern",
        "Every HTTP handler validates its input with a pydantic model and returns 422 on bad input.",
        "how are request bodies checked in endpoints",
    ),
    (
        "decision",
        "Background jobs run on Celery with RabbitMQ as the broker.",
        "what queue system handles asynchronous work",
    ),
    (
        "architecture",
        "Uploaded images are stored in S3 and served through CloudFront signed URLs.",
        "where do user photos live and how are they delivered",
    ),
    (
        "preference",
        "Use British English spelling in all user-facing copy.",
        "which spelling convention for interface text",
    ),
    (
        "decision",
        "Payments are processed with Stripe; we never store card numbers ourselves.",
        "which payment provider handles credit cards",
    ),
    (
        "pattern",
        "Database migrations are written with Alembic and reviewed like code.",
        "what tool changes the schema over time",
    ),
    (
        "decision",
        "Logs are structured JSON shipped to Grafana Loki; metrics go to Prometheus.",
        "where do we send logging output and monitoring numbers",
    ),
    (
        "preference",
        "Dark mode must be supported on every screen from the first release.",
        "should the interface offer a night theme",
    ),
    (
        "architecture",
        "Search over products is powered by OpenSearch with an index per locale.",
        "what engine answers the catalogue lookup box",
    ),
    (
        "decision",
        "Emails are sent through Amazon SES using templates stored in the repository.",
        "how are transactional mails delivered",
    ),
    (
        "pattern",
        "Feature flags are managed with Unleash and removed within two sprints of full rollout.",
        "how do we toggle unfinished functionality",
    ),
    (
        "decision",
        "The mobile apps are built with Flutter to share one codebase between iOS and Android.",
        "which cross-platform toolkit for phones",
    ),
    (
        "preference",
        "Code style is enforced by ruff and black with a line length of 100.",
        "what linter and formatter settings",
    ),
    (
        "architecture",
        "Services talk to each other over gRPC; the public API is REST with OpenAPI docs.",
        "what protocol between internal microservices",
    ),
    (
        "decision",
        "Secrets live in AWS Secrets Manager and are injected as environment variables at start.",
        "where are passwords and API keys kept",
    ),
    (
        "pattern",
        "All timestamps are stored in UTC and converted to the user's zone only in the UI.",
        "what timezone do we save dates in",
    ),
    (
        "decision",
        "We chose a monorepo managed with pnpm workspaces for all JavaScript packages.",
        "is the code in one repository or many",
    ),
    (
        "preference",
        "Accessibility: every page must pass WCAG 2.1 AA before release.",
        "what level of a11y compliance is required",
    ),
    (
        "architecture",
        "Realtime notifications are pushed to browsers over WebSockets via a small Go gateway.",
        "how do live alerts reach the web page",
    ),
    (
        "decision",
        "Error tracking uses Sentry with source maps uploaded on each release.",
        "which service collects crash reports",
    ),
    (
        "pattern",
        "Pagination uses opaque cursors, never page numbers, on every list endpoint.",
        "how do list APIs split results into pages",
    ),
    (
        "decision",
        "Rate limiting is done at the API gateway: 100 requests per minute per key.",
        "how many calls per minute can a client make",
    ),
    (
        "preference",
        "Keep dependencies minimal; adding a new library needs a short written justification.",
        "what is our stance on pulling in third-party packages",
    ),
    (
        "architecture",
        "The data warehouse is BigQuery, loaded nightly by Airbyte from the production replica.",
        "where does analytics reporting data come from",
    ),
    (
        "decision",
        "Internationalisation supports English, French and German at launch.",
        "which languages does the product ship with",
    ),
    (
        "pattern",
        "Retries use exponential backoff with jitter, at most five attempts.",
        "how do we repeat failed calls to other services",
    ),
    (
        "decision",
        "The API is versioned in the URL path, e.g. /v1/, and old versions live for a year.",
        "how do we evolve the interface without breaking clients",
    ),
    (
        "preference",
        "The product owner wants a weekly demo every Friday afternoon.",
        "when do we show progress to stakeholders",
    ),
    (
        "architecture",
        "File processing is a pipeline of AWS Lambda functions triggered by S3 events.",
        "what runs when a document is uploaded",
    ),
    (
        "decision",
        "Customer data stays in the EU region (Frankfurt) to meet GDPR requirements.",
        "in which geography is personal data stored",
    ),
    (
        "pattern",
        "Every service exposes /healthz and /readyz endpoints for the orchestrator's probes.",
        "how does the cluster know a container is alive",
    ),
    (
        "decision",
        "Backups of the database run every night and are kept for thirty days.",
        "how often do we snapshot data and how long are copies retained",
    ),
    (
        "preference",
        "Prefer composition over inheritance in the domain model.",
        "should classes extend each other or be combined",
    ),
    (
        "architecture",
        "A GraphQL layer aggregates the microservices for the mobile clients.",
        "what does the phone app query to fetch data",
    ),
    (
        "decision",
        "End-to-end tests run with Playwright against a staging environment before each release.",
        "what tool drives the browser for full-system checks",
    ),
    (
        "pattern",
        "Domain events are published to Kafka topics named after the aggregate.",
        "how do services announce that something happened",
    ),
    (
        "decision",
        "Infrastructure is described with Terraform, one state file per environment.",
        "how is cloud setup kept as code",
    ),
    (
        "preference",
        "Commit messages follow the Conventional Commits format.",
        "how should we word version control log entries",
    ),
    (
        "architecture",
        "The recommendation model is served by a separate Python service using ONNX Runtime.",
        "what serves the machine learning suggestions",
    ),
    (
        "decision",
        "Passwords are hashed with Argon2id with the OWASP recommended parameters.",
        "how are user credentials protected at rest",
    ),
    (
        "pattern",
        "Configuration is read from environment variables following the twelve-factor app.",
        "how do services get their settings",
    ),
    (
        "decision",
        "Our SLA promises 99.9 percent monthly uptime for paying customers.",
        "what availability do we guarantee",
    ),
    (
        "preference",
        "Designs come from Figma and developers must match spacing tokens exactly.",
        "where do the mockups come from and how strictly are they followed",
    ),
    (
        "architecture",
        "PDF invoices are rendered by a headless Chromium service from HTML templates.",
        "how are bills turned into printable documents",
    ),
    (
        "decision",
        "Admin users must use hardware security keys for two-factor authentication.",
        "what second factor do administrators need",
    ),
    (
        "pattern",
        "Long-running reports are generated asynchronously and the user is emailed a link.",
        "what happens when an export takes a long time",
    ),
    (
        "decision",
        "We dropped MongoDB in 2024 after consistency problems with multi-document updates.",
        "why did we stop using the document database",
    ),
    (
        "preference",
        "Error messages shown to users must say what to do next, not only what failed.",
        "how should problems be explained to people",
    ),
    (
        "architecture",
        "The CDN caches static assets for one year using content-hashed file names.",
        "how long do browsers and edge servers keep our scripts and styles",
    ),
    (
        "decision",
        "Code review needs two approvals, one from the owning team.",
        "how many reviewers must sign off a change",
    ),
    (
        "pattern",
        "Soft deletes: rows get a deleted_at timestamp and are purged after ninety days.",
        "what happens to records when someone removes them",
    ),
    (
        "decision",
        "On-call rotation is weekly and uses PagerDuty for alerting.",
        "who gets woken up when production breaks and with what tool",
    ),
    (
        "preference",
        "The landing page should load in under two seconds on a 4G phone.",
        "what speed target for the first screen on mobile networks",
    ),
    (
        "architecture",
        "Multi-tenancy uses one schema per tenant in the shared PostgreSQL cluster.",
        "how is each customer's data separated",
    ),
    (
        "decision",
        "Video calls are provided by embedding Twilio Video rather than building our own.",
        "what powers the conferencing feature",
    ),
]
