"""The orchestrator's grant: a task calls an agent only with a grant the engine signed.

Source rule: reference §1.2 ("Local Agent Executors ... Cannot function without
orchestrator"): an agent executor refuses work that the orchestrator did not
send. Here the executor is the runner (:mod:`connectsw.core.runner`), inside a
Dask worker; the orchestrator is the engine that owns the execution's lease.

**Shape.** Each :class:`~connectsw.core.runner.TaskCall` the engine submits carries
a :class:`Grant`:

- scope: ``execution_id``, ``round``, ``task_id``, ``token`` (the owner's lease
  token), ``first_attempt`` .. ``last_attempt`` (the attempts it may run); the
  call's ``store_url`` is bound too (hashed into the signed leaf, not repeated);
- ``expires_at``: seconds since the Unix epoch (UTC, float), see :func:`pass_lifetime`;
- ``key_id``: 8 bytes, the start of SHA-256 of the raw Ed25519 public key that signed it;
- ``signature``: 64 bytes, Ed25519 over the pass header
  ``b"csfw-grant-v1" + key_id + expires_at (8-byte big-endian float) + root``;
- ``proof``: the path from the task's leaf to ``root`` in the pass's Merkle tree,
  33 bytes a step (``b"L"`` or ``b"R"``, the side of the sibling, then its SHA-256).

A leaf is ``SHA-256(0x00 || canonical JSON of [store_url, execution_id, round,
task_id, token, first_attempt, last_attempt])``, an inner node ``SHA-256(0x01 ||
left || right)``; a lone last node is carried up unchanged.

**Why a tree.** Ed25519 costs ~50-180 µs to sign and ~120-180 µs to verify on these
machines (measured: 165 µs and 180 µs under load), which per task would add ~15 %
to a stage of 10,000 no-op tasks (bench/orchestration_overhead.py). So the engine
signs once per submitted graph (a pass) and each task carries its proof: the engine
pays one signature and ~2 hashes a task, a worker one verification per pass
(cached) and ~log2(n) hashes a task. Workers hold public keys only: they cannot mint
grants, and neither can anyone else without the engine's private key.

**Verifying key.** A worker trusts, in this order:

1. the key in the file named by ``CONNECTSW_GRANT_PUBLIC_KEY_FILE`` in the
   worker's own environment (SubjectPublicKeyInfo PEM): then no other key, whatever
   a client registers. Pin it on workers that others' clients can reach;
2. otherwise the keys the engines using its cluster registered with the
   :class:`GrantKeys` worker plugin (:func:`install`), one per engine key. Any Dask
   client can run code on the workers anyway; the grant stops calls the engine did
   not issue (stale, replayed, copied or hand-made), not a client that owns the
   cluster.

Never from the call itself. The engine's private key comes from the file named by
``CONNECTSW_GRANT_KEY_FILE`` (PKCS#8 PEM, mode 0600), else it is made once per
process and kept in memory only (:func:`engine_signer`).

**Errors.** :func:`check_grant` raises :class:`GrantRefused` whose ``reason`` is one
of ``missing``, ``malformed``, ``untrusted_key``, ``forged``, ``wrong_scope``,
``expired``, ``worker_config``; its message starts with ``refused:``, names no
secret (no signature, no key bytes: the public key id at most) and is recorded
as the task's failure by the runner.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import struct
import threading
import time
import weakref
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from distributed.diagnostics.plugin import WorkerPlugin

from connectsw.core import textfiles
from connectsw.core.durations import MAX_TIMEOUT
from connectsw.core.errors import ConfigError, TaskError, one_line

if TYPE_CHECKING:
    from distributed import Client

    from connectsw.core.runner import TaskCall

log = logging.getLogger("connectsw.grants")

VERSION = b"csfw-grant-v1"
KEY_ENV = "CONNECTSW_GRANT_KEY_FILE"
"""Engine: the Ed25519 private key (PKCS#8 PEM) that signs grants."""
PUBLIC_KEY_ENV = "CONNECTSW_GRANT_PUBLIC_KEY_FILE"
"""Worker: the only public key (PEM) it trusts, when set."""

GRANT_MARGIN = 60.0
"""Seconds added to every grant's lifetime (queueing, clock skew between hosts)."""
ATTEMPT_SLACK = 5.0
"""Seconds per attempt beyond its timeout: forking, the stop grace, commit, records."""
MAX_PROOF_STEPS = 64
_STEP = 33
_LEAF, _NODE = b"\x00", b"\x01"


class GrantRefused(TaskError):
    """A task's grant is missing or invalid: its agent is not called.

    ``reason``: ``missing``, ``malformed``, ``untrusted_key``, ``forged``,
    ``wrong_scope``, ``expired`` or ``worker_config``.
    """

    code = "grant_refused"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(f"refused: {message}")
        self.reason = reason


@dataclass(frozen=True, slots=True)
class Grant:
    """One task's grant (see the module docstring for each field's shape and unit)."""

    execution_id: str
    round: int
    task_id: str
    token: int
    first_attempt: int
    last_attempt: int
    expires_at: float
    key_id: bytes
    signature: bytes
    proof: bytes

    def __reduce__(self) -> tuple[Any, ...]:
        return (Grant, tuple(getattr(self, f) for f in self.__dataclass_fields__))

    def __dask_tokenize__(self) -> tuple[Any, ...]:
        return ("connectsw.Grant", self.signature, self.proof, self.task_id)

    def __repr__(self) -> str:
        # No signature or proof: a grant is a capability until it expires.
        return (
            f"Grant(task {self.task_id!r} of {self.execution_id}, round {self.round},"
            f" attempts {self.first_attempt}-{self.last_attempt}, expires {_when(self.expires_at)},"
            f" key {self.key_id.hex()})"
        )

    __str__ = __repr__

    def scope(self) -> tuple[str, int, str, int, int, int]:
        return (
            self.execution_id,
            self.round,
            self.task_id,
            self.token,
            self.first_attempt,
            self.last_attempt,
        )


def _when(epoch: float) -> str:
    try:
        return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    except (OverflowError, OSError, ValueError):
        return f"{epoch:g}"


def _scope(call: TaskCall) -> tuple[str, int, str, int, int, int]:
    return (
        call.execution_id,
        call.round,
        call.task_id,
        call.token,
        call.first_attempt,
        call.last_attempt,
    )


#: Canonical JSON of a leaf (``json.dumps`` with these arguments makes an encoder per call).
_CANONICAL = json.JSONEncoder(separators=(",", ":"), ensure_ascii=True)


def _leaf(store_url: str, scope: tuple[Any, ...]) -> bytes:
    body = _CANONICAL.encode([store_url, *scope])
    return hashlib.sha256(_LEAF + body.encode()).digest()


def _node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(_NODE + left + right).digest()


def _header(key_id: bytes, expires_at: float, root: bytes) -> bytes:
    return VERSION + key_id + struct.pack(">d", expires_at) + root


def key_id_of(public: Ed25519PublicKey) -> bytes:
    """8 bytes naming a public key (SHA-256 of its raw 32 bytes, truncated)."""
    raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).digest()[:8]


# -- the engine's side ---------------------------------------------------------------


class GrantSigner:
    """Signs the grants of the engine's task calls with an Ed25519 private key."""

    def __init__(self, key: Ed25519PrivateKey) -> None:
        self._key = key
        public = key.public_key()
        self.key_id = key_id_of(public)
        self.public_pem = public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )

    def __repr__(self) -> str:
        return f"GrantSigner(key {self.key_id.hex()})"

    def sign(
        self, calls: Sequence[TaskCall], lifetime: float, now: float | None = None
    ) -> list[TaskCall]:
        """``calls`` (one pass) with their grants: one signature, valid ``lifetime`` seconds.

        ``now`` is a Unix time in seconds (default: the current time). Returns new
        calls, in the same order.
        """
        if not calls:
            return []
        expires_at = (time.time() if now is None else now) + lifetime
        scopes = [_scope(c) for c in calls]
        level = [_leaf(c.store_url, s) for c, s in zip(calls, scopes, strict=True)]
        paths: list[list[bytes]] = [[] for _ in calls]
        members: list[list[int]] = [[i] for i in range(len(calls))]  # leaves under each node
        while len(level) > 1:
            nxt: list[bytes] = []
            nxt_members: list[list[int]] = []
            for i in range(0, len(level) - 1, 2):
                left, right = level[i], level[i + 1]
                for leaf in members[i]:
                    paths[leaf].append(b"R" + right)
                for leaf in members[i + 1]:
                    paths[leaf].append(b"L" + left)
                nxt.append(_node(left, right))
                nxt_members.append(members[i] + members[i + 1])
            if len(level) % 2:
                nxt.append(level[-1])
                nxt_members.append(members[-1])
            level, members = nxt, nxt_members
        root = level[0]
        signature = self._key.sign(_header(self.key_id, expires_at, root))
        return [
            replace(
                call,
                grant=Grant(*scope, expires_at, self.key_id, signature, b"".join(path)),
            )
            for call, scope, path in zip(calls, scopes, paths, strict=True)
        ]


_signer_lock = threading.Lock()
_signers: dict[str, GrantSigner] = {}


def engine_signer() -> GrantSigner:
    """This process's signer: the key in ``CONNECTSW_GRANT_KEY_FILE``, else one made once.

    A key made here lives in this process's memory only (each engine process has
    its own and registers it with its cluster). Raises :class:`ConfigError` when
    the file cannot be read or holds no Ed25519 private key (the message names the
    file, never its content).
    """
    name = os.environ.get(KEY_ENV, "")
    with _signer_lock:
        signer = _signers.get(name)
        if signer is None:
            key = _load_private(Path(name)) if name else Ed25519PrivateKey.generate()
            signer = _signers[name] = GrantSigner(key)
    return signer


MAX_KEY_FILE_BYTES = 65_536
"""A grant key file (PEM) is at most 64 KiB; read by core/textfiles.py's rule."""


def _read_key_file(path: Path) -> bytes:
    """The bytes of a key file by core/textfiles.py's rule (a regular file of at most
    :data:`MAX_KEY_FILE_BYTES`); TextFileError otherwise."""
    data = textfiles.read_bytes(path, MAX_KEY_FILE_BYTES)
    if len(data) > MAX_KEY_FILE_BYTES:
        raise textfiles.TextFileError(f"larger than {MAX_KEY_FILE_BYTES} bytes")
    return data


def _load_private(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_pem_private_key(_read_key_file(path), password=None)
    except textfiles.TextFileError as exc:
        raise ConfigError(f"{KEY_ENV}: {path}: {exc}") from None
    except (ValueError, TypeError, UnsupportedAlgorithm):
        key = None
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{KEY_ENV}: {path} is not an Ed25519 private key (PKCS#8 PEM)")
    return key


def pass_lifetime(
    attempts: Iterable[tuple[int, float | None]],
    retry_backoff: float,
    retry_backoff_max: float,
) -> float:
    """Seconds a pass's grants live: the longest the pass may take, plus a margin.

    ``attempts``: per task of the pass, (number of attempts granted, timeout of one
    attempt in seconds or None for none). A grant is checked when each attempt
    starts, and a task may wait for every other task of the pass (one worker
    thread may run them one after another), so the lifetime is
    :data:`GRANT_MARGIN` plus, summed over the pass's tasks, each attempt's timeout
    (an untimed attempt counts as ``MAX_TIMEOUT``, 7 days) plus
    :data:`ATTEMPT_SLACK`, plus the backoffs between its attempts. Timed tasks
    thus get grants of minutes, not days.
    """
    total = GRANT_MARGIN
    for count, timeout in attempts:
        per = (timeout if timeout else MAX_TIMEOUT) + ATTEMPT_SLACK
        total += count * per
        total += sum(min(retry_backoff * 2**i, retry_backoff_max) for i in range(count - 1))
    return total


# -- the worker's side ---------------------------------------------------------------

_trust_lock = threading.Lock()
_trusted: dict[bytes, Ed25519PublicKey] = {}
_pinned: dict[str, tuple[bytes, Ed25519PublicKey] | GrantRefused] = {}
#: Pass headers whose signature held -> that signature.
_verified: OrderedDict[bytes, bytes] = OrderedDict()
_VERIFIED_MAX = 256
#: Tree nodes (leaves too) on a path already proven to a signed root: node hash ->
#: (that pass's header, its signature). A later proof that reaches one of them is
#: proven there, for a grant of the same key, expiry and signature: the rest of its
#: path was hashed before (a worker hashes ~2 nodes a task instead of log2(n)).
_proven: dict[bytes, tuple[bytes, bytes]] = {}
_PROVEN_MAX = 65_536


def _public(pem: bytes) -> Ed25519PublicKey:
    key = serialization.load_pem_public_key(pem)
    if not isinstance(key, Ed25519PublicKey):
        raise ValueError("not an Ed25519 public key")
    return key


def trust(public_pem: bytes) -> bytes:
    """Trust grants signed by this key in this process (unless a key is pinned); its id."""
    key = _public(public_pem)
    key_id = key_id_of(key)
    with _trust_lock:
        _trusted[key_id] = key
    return key_id


def untrust(key_id: bytes) -> None:
    """Stop trusting a key :func:`trust` added."""
    with _trust_lock:
        _trusted.pop(key_id, None)


def _pinned_key() -> tuple[bytes, Ed25519PublicKey] | None:
    """The worker's pinned key, read once per file name; GrantRefused if unusable."""
    name = os.environ.get(PUBLIC_KEY_ENV, "")
    if not name:
        return None
    found = _pinned.get(name)
    if found is None:
        try:
            key = _public(_read_key_file(Path(name)))
            found = (key_id_of(key), key)
        except textfiles.TextFileError as exc:
            found = GrantRefused(
                "worker_config", f"this worker cannot read {PUBLIC_KEY_ENV} {name}: {exc}"
            )
        except (ValueError, TypeError, UnsupportedAlgorithm):
            found = GrantRefused(
                "worker_config",
                f"this worker's {PUBLIC_KEY_ENV} {name} is not an Ed25519 public key (PEM)",
            )
        _pinned[name] = found
    if isinstance(found, GrantRefused):
        raise GrantRefused(found.reason, str(found).removeprefix("refused: "))
    return found


def _key_for(key_id: bytes) -> Ed25519PublicKey:
    pinned = _pinned_key()
    if pinned is not None:
        if key_id != pinned[0]:
            raise GrantRefused(
                "untrusted_key",
                f"the grant is signed by key {key_id.hex()}, which this worker does not trust"
                f" (it trusts only the key in {PUBLIC_KEY_ENV}, {pinned[0].hex()})",
            )
        return pinned[1]
    key = _trusted.get(key_id)
    if key is None:
        raise GrantRefused(
            "untrusted_key",
            f"the grant is signed by key {key_id.hex()}, which this worker does not trust"
            " (not registered by an engine of this cluster)",
        )
    return key


def check_grant(call: TaskCall, now: float | None = None) -> Grant:
    """The call's grant, if it is valid for this call at ``now`` (Unix seconds).

    Checks, in this order: present; well formed; signed by a key this worker
    trusts (the signature over the pass header, and the proof from this call's
    leaf to the signed root); issued for this call's execution, round, task,
    lease token and attempts; not expired. Raises :class:`GrantRefused`.
    """
    grant = call.grant
    if grant is None:
        raise GrantRefused(
            "missing",
            "no orchestrator grant: agents run only in tasks the ConnectSW engine sent"
            " (reference §1.2)",
        )
    if not isinstance(grant, Grant) or not _well_formed(grant):
        raise GrantRefused("malformed", "the orchestrator grant is malformed")
    key = _key_for(grant.key_id)
    node = _leaf(call.store_url, grant.scope())
    proof = grant.proof
    prefix = _header(grant.key_id, grant.expires_at, b"")
    path = [node]
    proven = None
    for i in range(0, len(proof) + _STEP, _STEP):
        proven = _proven.get(node)
        if proven is not None and not (
            proven[1] == grant.signature
            and proven[0].startswith(prefix)
            and _verified.get(proven[0]) == grant.signature
        ):
            proven = None  # another pass's (or key's) node: walk on to this grant's root
        if proven is not None or i == len(proof):
            break
        side, sibling = proof[i : i + 1], proof[i + 1 : i + _STEP]
        node = _node(sibling, node) if side == b"L" else _node(node, sibling)
        path.append(node)
    if proven is not None:
        header = proven[0]
    else:
        header = prefix + node
        if _verified.get(header) != grant.signature:
            try:
                key.verify(grant.signature, header)
            except InvalidSignature:
                raise GrantRefused(
                    "forged",
                    "the orchestrator grant's signature does not hold (altered, or not"
                    " issued by the engine for this call)",
                ) from None
            with _trust_lock:
                _verified[header] = grant.signature
                while len(_verified) > _VERIFIED_MAX:
                    _verified.popitem(last=False)
        proven = (header, grant.signature)
    _remember(path, proven)
    if grant.scope() != _scope(call):
        raise GrantRefused(
            "wrong_scope",
            f"the orchestrator grant was issued for task {grant.task_id!r} of execution"
            f" {grant.execution_id} (round {grant.round}, attempts {grant.first_attempt}"
            f"-{grant.last_attempt}), not for this call (task {call.task_id!r} of execution"
            f" {call.execution_id}, round {call.round}, attempts {call.first_attempt}"
            f"-{call.last_attempt})",
        )
    check_expiry(grant, now)
    return grant


def _remember(path: list[bytes], proven: tuple[bytes, bytes]) -> None:
    """Note ``path``'s nodes as proven under ``proven`` (header, signature); the oldest
    notes go past :data:`_PROVEN_MAX`."""
    with _trust_lock:
        for node in path:
            _proven[node] = proven
        over = len(_proven) - _PROVEN_MAX
        if over > 0:
            for old in list(itertools.islice(_proven, over)):
                del _proven[old]


def check_expiry(grant: Grant, now: float | None = None) -> None:
    """Raise :class:`GrantRefused` (``expired``) if ``grant`` expired before ``now``."""
    now = time.time() if now is None else now
    if now >= grant.expires_at:
        raise GrantRefused(
            "expired",
            f"the orchestrator grant expired at {_when(grant.expires_at)}"
            f" ({now - grant.expires_at:.0f} s ago)",
        )


def _well_formed(grant: Grant) -> bool:
    return (
        isinstance(grant.signature, bytes)
        and len(grant.signature) == 64
        and isinstance(grant.key_id, bytes)
        and len(grant.key_id) == 8
        and isinstance(grant.proof, bytes)
        and len(grant.proof) % _STEP == 0
        and len(grant.proof) <= MAX_PROOF_STEPS * _STEP
        and not grant.proof[::_STEP].translate(None, b"LR")  # each step's side: L or R
        and isinstance(grant.expires_at, float)
        and isinstance(grant.execution_id, str)
        and isinstance(grant.task_id, str)
        and all(
            isinstance(v, int) and not isinstance(v, bool)
            for v in (grant.round, grant.token, grant.first_attempt, grant.last_attempt)
        )
    )


# -- telling workers the key ---------------------------------------------------------

PLUGIN_PREFIX = "connectsw-grant-key-"


class GrantKeys(WorkerPlugin):
    """Tells each worker (now and later ones) an engine's public key.

    A worker whose environment pins a key (``CONNECTSW_GRANT_PUBLIC_KEY_FILE``)
    keeps trusting only that one.
    """

    def __init__(self, public_pem: bytes) -> None:
        self.public_pem = public_pem
        self.key_id = b""

    def setup(self, worker: Any) -> None:
        self.key_id = trust(self.public_pem)
        if os.environ.get(PUBLIC_KEY_ENV):
            log.info("grant key %s not trusted: this worker pins its key", self.key_id.hex())

    def teardown(self, worker: Any) -> None:
        if self.key_id:
            untrust(self.key_id)


_installed: weakref.WeakKeyDictionary[Client, set[bytes]] = weakref.WeakKeyDictionary()


def install(client: Client, signer: GrantSigner) -> None:
    """Make the client's workers (and this process) trust ``signer``'s key, once per client.

    Raises :class:`ConfigError` if the workers cannot take the plugin (e.g. they
    cannot import ConnectSW).
    """
    trust(signer.public_pem)  # tasks run in this process too (a threads-only cluster)
    keys = _installed.setdefault(client, set())
    if signer.key_id in keys:
        return
    try:
        client.register_plugin(
            GrantKeys(signer.public_pem), name=PLUGIN_PREFIX + signer.key_id.hex()
        )
    except Exception as exc:
        raise ConfigError(
            f"the Dask workers could not be told the engine's grant key: {one_line(exc)}"
        ) from None
    keys.add(signer.key_id)
