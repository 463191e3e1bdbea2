"""A process-isolated plugin agent, and every command it starts, get none of the
engine's credentials (trial 6, issue 5 kind 8): the store URL with its password,
``PGPASSWORD``, the LLM keys (the usual names and ``api_key_env``'s) and every other
``CONNECTSW_*`` variable, as shell tasks' and gates' commands already did not.
"""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import Cli
from .test_plugin_output import site

ENV_AGENT = """
import json
import os
import subprocess

from connectsw import hookimpl
from connectsw.agents.llm.http import read_key


class EnvAgent:
    name = "envdump"
    description = "Writes its environment and a command's to files."

    def run(self, ctx):
        ctx.path("agent-env.json").write_text(json.dumps(dict(os.environ)))
        child = subprocess.run(["env", "-0"], capture_output=True, check=True).stdout
        pairs = [p.split(b"=", 1) for p in child.split(b"\\0") if p]
        command = {k.decode(): v.decode() for k, v in pairs}
        ctx.path("command-env.json").write_text(json.dumps(command))
        # The engine's own code in this process still reads the provider's key.
        key, _ = read_key("T6_MODEL_KEY", None)
        ctx.path("key-held.txt").write_text(str(key == "sk-T6HELDKEY"))
        return {"summary": "dumped"}


@hookimpl
def register_agents(register):
    register(EnvAgent())
"""

GRAPH = {"name": "env", "tasks": [{"id": "p", "agent": "envdump"}]}

SECRETS = {
    "PGPASSWORD": "Zq9PGSECRET",
    "PGUSER": "t6user",
    "OPENAI_API_KEY": "sk-T6OPENAIKEY",
    "ANTHROPIC_API_KEY": "sk-T6ANTHROPICKEY",
    "T6_MODEL_KEY": "sk-T6HELDKEY",
    "CONNECTSW_LLM__OPENAI__API_KEY_ENV": "T6_MODEL_KEY",
}


def test_a_process_isolated_agent_and_its_commands_get_no_engine_credential(
    cli: Cli, tmp_path: Path
) -> None:
    cli.env["PYTHONPATH"] = str(site(tmp_path / "site", "envdump", ENV_AGENT))
    # A sqlite URL takes no query (trial 7, F9): the marker is in its path.
    (tmp_path / "Zq9STORESECRET").mkdir()
    store = f"sqlite:///{tmp_path / 'Zq9STORESECRET' / 'store.db'}"
    cli.env.update(SECRETS, CONNECTSW_STORE__URL=store, T6_KEEP="kept")
    (cli.cwd / "g.json").write_text(json.dumps(GRAPH))
    res = cli("run", "g.json", "--yes", "-w", tmp_path / "ws", "--json", ok=True)
    assert res.json()["status"] == "completed", res
    for name in ("agent-env.json", "command-env.json"):
        env = json.loads((tmp_path / "ws" / name).read_text())
        assert env.get("T6_KEEP") == "kept", name  # not the engine's: passed on
        leaked = sorted(k for k in env if k in SECRETS or k.startswith("CONNECTSW_"))
        assert leaked == [], (name, leaked)
        text = json.dumps(env)
        for secret in ("Zq9PGSECRET", "Zq9STORESECRET", "T6OPENAIKEY", "T6HELDKEY"):
            assert secret not in text, (name, secret)
    # The provider's key is held in the agent's process memory, not its environment.
    assert (tmp_path / "ws" / "key-held.txt").read_text() == "True"
