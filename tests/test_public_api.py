"""The public import surface (``from connectsw import ...``) and the plugin contracts."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import connectsw
from connectsw.plugins.registry import get_registries


def test_every_public_name_resolves() -> None:
    assert set(connectsw.__all__) == {"__version__", "hookimpl", *connectsw._EXPORTS}
    for name in connectsw.__all__:
        assert getattr(connectsw, name) is not None, name
    assert set(connectsw.__all__) <= set(dir(connectsw))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        connectsw.Nope  # noqa: B018


def test_each_export_is_the_defining_module_s_object() -> None:
    from connectsw.agents.base import Agent
    from connectsw.core.errors import TaskError
    from connectsw.gates.base import GateRule

    assert connectsw.Agent is Agent
    assert connectsw.TaskError is TaskError
    assert connectsw.GateRule is GateRule


def test_import_stays_cheap(tmp_path: Path) -> None:
    probe = (
        "import json, sys, connectsw\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('pydantic', 'dask', 'distributed', 'click') or m.startswith('connectsw.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert json.loads(out.stdout) == []


def test_registered_things_satisfy_the_protocols() -> None:
    regs = get_registries()
    assert regs.agents.items and regs.workflows.items and regs.gates.items
    assert all(isinstance(a, connectsw.AgentProtocol) for a in regs.agents)
    assert all(isinstance(w, connectsw.WorkflowProtocol) for w in regs.workflows)
    assert all(isinstance(r, connectsw.GateRuleProtocol) for r in regs.gates)


def test_protocols_refuse_what_lacks_a_member() -> None:
    class NoRun:
        name = "x"

    class NoEvaluate:
        name = "x"

        def applies(self, ctx: object) -> bool:
            return True

    assert not isinstance(NoRun(), connectsw.AgentProtocol)
    assert not isinstance(NoEvaluate(), connectsw.GateRuleProtocol)
    assert not isinstance(NoRun(), connectsw.WorkflowProtocol)
