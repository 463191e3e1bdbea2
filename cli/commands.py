"""The CLI's built-in commands: name -> (``module:attribute``, short help).

Data only (nothing imported): :mod:`connectsw.cli.main` loads each command from it
lazily, and the plugin registry reads the names (a plugin workflow's command may not
start with one, but for ``new``) without importing the CLI.
"""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    "new": ("connectsw.cli.submit:new", "Start new work: a product or a feature."),
    "fix": (
        "connectsw.cli.submit:fix",
        "Fix a bug in the product in the workspace (default: current directory).",
    ),
    "run": (
        "connectsw.cli.submit:run",
        "Run a task-graph file (YAML or JSON; see `connectsw schema`).",
    ),
    "status": (
        "connectsw.cli.status:status",
        "Show an execution (continuing it if it was interrupted), or list recent ones.",
    ),
    "watch": (
        "connectsw.cli.status:watch",
        "Follow an execution's events live until it pauses or ends.",
    ),
    "approve": ("connectsw.cli.decide:approve", "Approve the checkpoint and run the next stage."),
    "request-changes": (
        "connectsw.cli.decide:request_changes",
        "Re-run the stage with feedback given to its agents.",
    ),
    "cancel": (
        "connectsw.cli.decide:cancel",
        "Cancel the execution; returns once its running work has stopped.",
    ),
    "resume": (
        "connectsw.cli.decide:resume",
        "Continue an interrupted or failed execution: only unfinished tasks run.",
    ),
    "login": (
        "connectsw.cli.account:login",
        "Use a server from now on: check the key, open a session, store both (mode 0600).",
    ),
    "logout": (
        "connectsw.cli.account:logout",
        "End the session and forget the stored credentials: local mode again.",
    ),
    "pull": (
        "connectsw.cli.account:pull",
        "Bring an execution's commits from the server into a local repository.",
    ),
    "plugins": (
        "connectsw.cli.plugins:plugins",
        "List plugins: where they come from, whether they loaded, their hooks, what they provide.",
    ),
    "plugin": (
        "connectsw.cli.plugin:plugin_group",
        "Plugin authors: start a new plugin distribution (`plugin new NAME`).",
    ),
    "schema": ("connectsw.cli.plugins:schema", "Print the JSON Schema of task-graph files."),
    "serve": (
        "connectsw.cli.serve:serve",
        "Run the API server; prints the address it listens on, stops on Ctrl-C or SIGTERM.",
    ),
    "antipiracy": (
        "connectsw.cli.antipiracy:antipiracy",
        "Anti-piracy: run the detectors of reference §3.2 over the usage events.",
    ),
    "simulate": (
        "connectsw.cli.simulate:simulate_group",
        "Generate synthetic data: labelled usage traffic.",
    ),
    "analytics": (
        "connectsw.cli.analytics:analytics",
        "Usage analytics: import events, read-only SQL over them, the documented views.",
    ),
    "license": (
        "connectsw.cli.license:license_group",
        "Issue and manage license keys; sign and verify offline certificates (operators).",
    ),
    "gates": (
        "connectsw.cli.gates:gates_group",
        "Quality gates: the rules, the rule sets per checkpoint type, a check on demand.",
    ),
    "memory": (
        "connectsw.cli.memory:memory_group",
        "Project memory: add, search, list, forget; export or purge a user's (GDPR).",
    ),
    "insights": (
        "connectsw.cli.insights:insights",
        "Success rates, durations, approval rates and weak spots from the execution history.",
    ),
    "outbox": (
        "connectsw.cli.outbox:outbox_group",
        "E-mails queued by the anti-piracy responses: list, show, send over SMTP.",
    ),
}
