"""License records in the relational store (the SQL for them, for every backend).

A mixin of :class:`~connectsw.core.stores.sql.SQLStore`: rows hold the public id,
the key's digest (unique, how a presented key is found), the status and the
record as JSON. No key is ever stored.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any

from connectsw.core.errors import Conflict, NotFound
from connectsw.core.stores.rows import dump

if TYPE_CHECKING:
    from connectsw.core.stores.dialects import Dialect
    from connectsw.licensing.models import License, LicenseStatus


def _license(data: Any) -> License:
    from connectsw.licensing.models import License

    return License.model_validate_json(data)


class LicenseRecords:
    """Create, find, list and change the status of licenses."""

    dialect: Dialect

    if TYPE_CHECKING:  # provided by SQLStore

        def _tx(self, write: bool = True, opening: bool = False) -> AbstractContextManager[Any]: ...

    def create_license(self, license: License, key_digest: str) -> None:
        """Store a new license; :class:`Conflict` if its id or key digest exists."""
        d = self.dialect
        row = (
            license.id,
            key_digest,
            license.status.value,
            d.dump_time(license.updated_at),
            dump(license, f"license {license.id}"),
        )
        with self._tx() as db:
            taken = db.execute(
                d.sql("SELECT 1 FROM licenses WHERE id = ? OR key_digest = ?"),
                (license.id, key_digest),
            ).fetchone()
            if taken is not None:
                raise Conflict(f"license {license.id} exists already")
            db.execute(
                d.sql(
                    "INSERT INTO licenses (id, key_digest, status, updated_at, data)"
                    f" VALUES (?, ?, ?, ?, {d.json_param})"
                ),
                row,
            )

    def get_license(self, license_id: str) -> License | None:
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql("SELECT data FROM licenses WHERE id = ?"), (license_id,)
            ).fetchone()
        return _license(row[0]) if row else None

    def license_by_digest(self, key_digest: str) -> License | None:
        """The license whose key has this digest (one indexed read)."""
        with self._tx(write=False) as db:
            row = db.execute(
                self.dialect.sql("SELECT data FROM licenses WHERE key_digest = ?"), (key_digest,)
            ).fetchone()
        return _license(row[0]) if row else None

    def list_licenses(self, limit: int = 100) -> list[License]:
        """Most recently changed first."""
        with self._tx(write=False) as db:
            rows = db.execute(
                self.dialect.sql("SELECT data FROM licenses ORDER BY updated_at DESC, id LIMIT ?"),
                (limit,),
            ).fetchall()
        return [_license(r[0]) for r in rows]

    def update_license(self, license: License, expected: Collection[LicenseStatus]) -> None:
        """Write ``license`` iff its stored status is in ``expected`` (one conditional update).

        Raises:
            NotFound: no license with that id.
            Conflict: its status changed meanwhile (two operators at once).
        """
        d = self.dialect
        marks = ", ".join("?" for _ in expected)
        with self._tx() as db:
            n = db.execute(
                d.sql(
                    f"UPDATE licenses SET status = ?, updated_at = ?, data = {d.json_param}"
                    f" WHERE id = ? AND status IN ({marks})"
                ),
                (
                    license.status.value,
                    d.dump_time(license.updated_at),
                    dump(license, f"license {license.id}"),
                    license.id,
                    *(s.value for s in expected),
                ),
            ).rowcount
            if n == 0:
                exists = db.execute(
                    d.sql("SELECT status FROM licenses WHERE id = ?"), (license.id,)
                ).fetchone()
                if exists is None:
                    raise NotFound(f"no license {license.id!r}")
                raise Conflict(f"license {license.id} is {exists[0]} now; try again")
