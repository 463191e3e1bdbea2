"""Generic agents for task-graph files: ``shell`` runs a command, ``noop`` does nothing."""

from __future__ import annotations

import os
import subprocess

from pydantic import Field

from connectsw.agents.base import Agent, AgentInput, AgentOutput, TaskContext
from connectsw.core.errors import TaskError

OUTPUT_TAIL = 2000


class ShellInput(AgentInput):
    """``with`` of a shell task."""

    command: str = Field(min_length=1, description="Shell command, run in the workspace.")
    outputs: list[str] = Field(
        default_factory=list, description="Files the command writes (committed as artifacts)."
    )
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables.")


class ShellAgent(Agent):
    """Runs a shell command in the workspace; fails on a non-zero exit."""

    name = "shell"
    description = "Runs a shell command in the workspace (with: command, outputs, env)."
    input_model = ShellInput

    def run(self, ctx: TaskContext) -> AgentOutput:

        spec = ShellInput.model_validate(ctx.inputs)
        env = {
            **os.environ,
            **spec.env,
            "CONNECTSW_EXECUTION_ID": ctx.execution_id,
            "CONNECTSW_TASK_ID": ctx.task.id,
            "CONNECTSW_ATTEMPT": str(ctx.attempt),
        }
        if ctx.feedback:
            env["CONNECTSW_FEEDBACK"] = "\n".join(ctx.feedback)
        try:
            proc = subprocess.run(
                spec.command,
                shell=True,
                cwd=ctx.workspace,
                env=env,
                capture_output=True,
                text=True,
                timeout=ctx.timeout,
            )
        except subprocess.TimeoutExpired:
            raise TaskError(f"command timed out after {ctx.timeout:g}s") from None
        output = (proc.stdout + proc.stderr)[-OUTPUT_TAIL:]
        if proc.returncode != 0:
            last = output.strip().splitlines()[-1] if output.strip() else ""
            raise TaskError(
                f"command exited with {proc.returncode}" + (f": {last}" if last else "")
            )
        artifacts = []
        for rel in spec.outputs:
            path = ctx.path(rel)
            if not path.exists():
                raise TaskError(f"command did not write declared output {rel!r}")
            preview = path.read_text(errors="replace")[:400] if path.is_file() else ""
            artifacts.append({"type": "file", "path": rel, "preview": preview})
        return AgentOutput.model_validate(
            {
                "summary": f"$ {spec.command}",
                "outputs": {"returncode": 0, "output": output},
                "artifacts": artifacts,
            }
        )


class NoopAgent(Agent):
    """Does nothing and succeeds: joins and benchmarks."""

    name = "noop"
    description = "Does nothing and succeeds."

    def run(self, ctx: TaskContext) -> AgentOutput:
        return AgentOutput()
