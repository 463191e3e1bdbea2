"""The orchestrator's grant (reference §1.2): signed by the engine, checked by the worker."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from distributed import Client, LocalCluster

from connectsw.conf.settings import Settings
from connectsw.core import grants
from connectsw.core.engine import Engine
from connectsw.core.grants import (
    GRANT_MARGIN,
    GrantRefused,
    GrantSigner,
    check_grant,
    pass_lifetime,
)
from connectsw.core.models import Execution, ExecutionStatus, Request
from connectsw.core.runner import TaskCall
from connectsw.licensing.certificates import new_signing_key, private_key_pem, public_key_pem


@pytest.fixture
def signer() -> Iterator[GrantSigner]:
    """A fresh engine key, trusted by this process (as the worker plugin would make it)."""
    signer = GrantSigner(new_signing_key())
    grants.trust(signer.public_pem)
    yield signer
    grants.untrust(signer.key_id)


def _calls(n: int, execution: str = "exec_1") -> list[TaskCall]:
    return [TaskCall("sqlite:///x.db", execution, 0, f"t{i}", 7, 1, 2) for i in range(n)]


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13])
def test_every_grant_of_a_pass_verifies(signer: GrantSigner, n: int) -> None:
    granted = signer.sign(_calls(n), lifetime=60)
    assert [c.task_id for c in granted] == [f"t{i}" for i in range(n)]
    for call in granted:
        check_grant(call)


def test_a_missing_grant_is_refused() -> None:
    with pytest.raises(GrantRefused, match="no orchestrator grant") as info:
        check_grant(_calls(1)[0])
    assert info.value.reason == "missing"


def test_an_expired_grant_is_refused(signer: GrantSigner) -> None:
    [call] = signer.sign(_calls(1), lifetime=10, now=time.time() - 100)
    with pytest.raises(GrantRefused, match="expired") as info:
        check_grant(call)
    assert info.value.reason == "expired"


def test_a_grant_altered_to_widen_its_scope_is_refused(signer: GrantSigner) -> None:
    [call] = signer.sign(_calls(1), lifetime=60)
    assert call.grant is not None
    wider = dataclasses.replace(call.grant, last_attempt=9)
    with pytest.raises(GrantRefused, match="signature") as info:
        check_grant(dataclasses.replace(call, last_attempt=9, grant=wider))
    assert info.value.reason == "forged"


def test_a_grant_with_a_later_expiry_is_refused(signer: GrantSigner) -> None:
    [call] = signer.sign(_calls(1), lifetime=10, now=time.time() - 100)
    assert call.grant is not None
    later = dataclasses.replace(call.grant, expires_at=time.time() + 3600)
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(call, grant=later))
    assert info.value.reason == "forged"


def test_a_grant_moved_to_another_store_is_refused(signer: GrantSigner) -> None:
    [call] = signer.sign(_calls(1), lifetime=60)
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(call, store_url="sqlite:///elsewhere.db"))
    assert info.value.reason == "forged"


def test_a_grant_signed_by_another_key_is_refused(signer: GrantSigner) -> None:
    forger = GrantSigner(new_signing_key())
    [call] = forger.sign(_calls(1), lifetime=60)
    with pytest.raises(GrantRefused, match="does not trust") as info:
        check_grant(call)
    assert info.value.reason == "untrusted_key"


def test_a_hand_made_signature_under_a_trusted_key_id_is_refused(signer: GrantSigner) -> None:
    [call] = signer.sign(_calls(1), lifetime=60)
    assert call.grant is not None
    fake = dataclasses.replace(call.grant, signature=bytes(64))
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(call, grant=fake))
    assert info.value.reason == "forged"


def test_a_malformed_grant_is_refused(signer: GrantSigner) -> None:
    [call] = signer.sign(_calls(1), lifetime=60)
    assert call.grant is not None
    bad = dataclasses.replace(call.grant, proof=b"\x00" * 5)
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(call, grant=bad))
    assert info.value.reason == "malformed"


@pytest.mark.parametrize(
    "change",
    [{"task_id": "t1"}, {"execution_id": "exec_2"}, {"round": 1}, {"token": 8}],
)
def test_a_genuine_grant_for_another_task_is_refused(
    signer: GrantSigner, change: dict[str, object]
) -> None:
    calls = signer.sign(_calls(2), lifetime=60)
    call = dataclasses.replace(calls[0], **change)
    with pytest.raises(GrantRefused, match="issued for") as info:
        check_grant(call)
    assert info.value.reason == "wrong_scope"


def test_a_grant_of_one_pass_does_not_verify_with_a_proof_of_another(
    signer: GrantSigner,
) -> None:
    one = signer.sign(_calls(4), lifetime=60)
    two = signer.sign(_calls(4, "exec_2"), lifetime=60)
    assert one[1].grant is not None and two[1].grant is not None
    mixed = dataclasses.replace(one[1].grant, proof=two[1].grant.proof)
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(one[1], grant=mixed))
    assert info.value.reason == "forged"


def test_grants_of_a_verified_pass_are_checked_as_strictly(signer: GrantSigner) -> None:
    """The nodes of proven paths are remembered (a worker hashes ~2 nodes a task): a
    grant that reaches one must still be of that pass's key, expiry and signature."""
    calls = signer.sign(_calls(16), lifetime=60)
    for call in calls:  # every node of the tree is now proven
        check_grant(call)
    call = calls[5]
    assert call.grant is not None
    forged = dataclasses.replace(call.grant, signature=bytes(64))
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(call, grant=forged))
    assert info.value.reason == "forged"
    later = dataclasses.replace(call.grant, expires_at=call.grant.expires_at + 3600)
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(call, grant=later))
    assert info.value.reason == "forged"
    wider = dataclasses.replace(call.grant, last_attempt=9)
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(call, last_attempt=9, grant=wider))
    assert info.value.reason == "forged"
    # The same scopes signed again (another pass, another expiry): its own root.
    again = signer.sign(_calls(16), lifetime=120)
    for call in again:
        check_grant(call)
    mixed = dataclasses.replace(again[3].grant, signature=calls[3].grant.signature)  # type: ignore[arg-type, union-attr]
    with pytest.raises(GrantRefused) as info:
        check_grant(dataclasses.replace(again[3], grant=mixed))
    assert info.value.reason == "forged"


def test_a_proven_node_does_not_outlive_its_key(signer: GrantSigner) -> None:
    [call] = signer.sign(_calls(1), lifetime=60)
    check_grant(call)
    grants.untrust(signer.key_id)
    with pytest.raises(GrantRefused) as info:
        check_grant(call)
    assert info.value.reason == "untrusted_key"
    grants.trust(signer.public_pem)


def test_a_worker_with_a_pinned_key_trusts_no_other(
    signer: GrantSigner, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    other = new_signing_key()
    pinned = tmp_path / "grant.pub.pem"
    pinned.write_bytes(public_key_pem(other))
    monkeypatch.setenv(grants.PUBLIC_KEY_ENV, str(pinned))
    [call] = signer.sign(_calls(1), lifetime=60)
    with pytest.raises(GrantRefused, match=grants.PUBLIC_KEY_ENV) as info:
        check_grant(call)  # the engine's key was registered, but the pin wins
    assert info.value.reason == "untrusted_key"
    [ok] = GrantSigner(other).sign(_calls(1), lifetime=60)
    check_grant(ok)


def test_an_unusable_pinned_key_refuses_with_its_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, signer: GrantSigner
) -> None:
    pinned = tmp_path / "nope.pem"
    pinned.write_text("not a key")
    monkeypatch.setenv(grants.PUBLIC_KEY_ENV, str(pinned))
    [call] = signer.sign(_calls(1), lifetime=60)
    with pytest.raises(GrantRefused, match="nope.pem") as info:
        check_grant(call)
    assert info.value.reason == "worker_config"


def test_a_grant_shows_neither_its_signature_nor_the_key() -> None:
    key = new_signing_key()
    [call] = GrantSigner(key).sign(_calls(1), lifetime=60)
    assert call.grant is not None
    shown = repr(call.grant) + repr(call) + str(call.grant)
    assert call.grant.signature.hex() not in shown
    assert repr(call.grant.signature) not in shown
    assert private_key_pem(key).decode() not in shown


def test_the_lifetime_covers_every_attempt_of_the_pass_plus_a_margin() -> None:
    # Two tasks: 2 attempts of 10 s with 1 s backoff; 1 attempt of 5 s.
    lifetime = pass_lifetime([(2, 10.0), (1, 5.0)], retry_backoff=1.0, retry_backoff_max=30.0)
    slack = grants.ATTEMPT_SLACK
    assert lifetime == GRANT_MARGIN + (2 * (10 + slack) + 1.0) + (5 + slack)


def test_an_untimed_attempt_counts_as_the_longest_timeout() -> None:
    from connectsw.core.durations import MAX_TIMEOUT

    lifetime = pass_lifetime([(1, None)], retry_backoff=0.5, retry_backoff_max=30.0)
    assert lifetime == GRANT_MARGIN + MAX_TIMEOUT + grants.ATTEMPT_SLACK


# -- through real Dask worker processes ------------------------------------------------


def _run_on_worker_processes(settings: Settings, tmp_path: Path) -> Execution:
    """Run two shell tasks through the engine on a LocalCluster of worker processes."""
    graph = tmp_path / "g.yaml"
    tasks = [
        {"id": t, "agent": "shell", "with": {"command": f"echo {t} >> runs.txt"}} for t in "ab"
    ]
    tasks[1]["needs"] = ["a"]
    graph.write_text(yaml.safe_dump({"name": "procs", "tasks": tasks}))
    with (
        LocalCluster(
            n_workers=1,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            scheduler_kwargs={
                "dashboard": False,
                "dashboard_address": "127.0.0.1:0",
                "allowed_failures": 0,
            },
        ) as cluster,
        Client(cluster) as client,
        Engine(settings, client=client) as engine,
    ):
        ex = engine.submit(Request(command="run", args=[str(graph)]), tmp_path / "ws")
        return engine.run(ex.id)


@pytest.mark.slow
def test_worker_processes_learn_the_engine_key_from_its_plugin(
    settings: Settings, tmp_path: Path
) -> None:
    done = _run_on_worker_processes(settings, tmp_path)
    assert done.status is ExecutionStatus.COMPLETED, done.error
    assert (tmp_path / "ws" / "runs.txt").read_text() == "a\nb\n"


@pytest.mark.slow
def test_a_worker_pinned_to_another_key_runs_no_agent_of_this_engine(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pinned = tmp_path / "grant.pub.pem"
    pinned.write_bytes(public_key_pem(new_signing_key()))
    monkeypatch.setenv(grants.PUBLIC_KEY_ENV, str(pinned))  # inherited by the workers
    done = _run_on_worker_processes(settings, tmp_path)
    assert done.status is ExecutionStatus.FAILED
    assert done.error is not None
    assert "task 'a' failed: refused: " in done.error and "does not trust" in done.error
    assert not (tmp_path / "ws" / "runs.txt").exists()
