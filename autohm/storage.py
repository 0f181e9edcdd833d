"""Where a study lives: the storage URL (a local SQLite file by default, PostgreSQL for workers
on several machines), the artifact directory next to it, and the heartbeat that fails and
retries the running trials of dead workers."""

from __future__ import annotations

import copy
import os
import random
import re
import time
import warnings
from dataclasses import dataclass
from pathlib import Path

import optuna
import sqlalchemy

from autohm.errors import AutohmError
from autohm.objectives import DIRECTIONS

DEFAULT_FILE = "autohm.db"
DIALECTS = ("sqlite", "postgresql", "postgres", "mysql", "mariadb", "oracle", "mssql")
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]*):")
RETRIES = 2  # how often a trial of a dead worker is retried
STALE_AFTER = 2  # heartbeats a running trial may miss before its worker counts as dead
LOST = "lost"  # trial user attribute: why the heartbeat check failed the trial (mark_lost)
OPEN_ATTEMPTS = 5


class StorageError(AutohmError):
    """A storage URL or study that cannot be opened; the message names it."""


@dataclass(frozen=True)
class Location:
    """A storage URL and the artifact directory that goes with it."""

    url: str
    artifacts: Path

    @property
    def shown(self) -> str:
        """The URL without its password, for messages."""
        return sqlalchemy.engine.make_url(self.url).render_as_string(hide_password=True)


def locate(storage: str | None, out: Path) -> Location:
    """`storage` as a URL (a plain path is a SQLite file, a directory holds autohm.db; none:
    autohm.db in `out`) and its
    artifact directory: `<file stem>_artifacts/` beside a SQLite file, else `out/artifacts/`.
    Text that starts like a database URL must be one: `postgres:/db` is refused, not taken for
    a file name."""
    url = storage or str(out / DEFAULT_FILE)
    scheme = _SCHEME.match(url)
    if "://" in url or (scheme and scheme.group(1).split("+")[0].lower() in DIALECTS):
        _check_url(url)
    else:
        path = Path(url).expanduser()
        url = f"sqlite:///{(path / DEFAULT_FILE if path.is_dir() else path).resolve()}"
    file = sqlite_file(url)
    artifacts = file.with_name(f"{file.stem}_artifacts") if file else out / "artifacts"
    return Location(url, artifacts.resolve())


def _check_url(url: str) -> None:
    """A StorageError unless `url` parses as scheme://... with a known database scheme."""
    try:
        parsed = sqlalchemy.engine.make_url(url)
    except (sqlalchemy.exc.ArgumentError, ValueError):
        parsed = None
    scheme = _SCHEME.match(url)
    if parsed is None or scheme is None or not url.startswith(f"{scheme.group(1)}://"):
        raise StorageError(
            f"--storage {url!r} is not a database URL (e.g. sqlite:///path/autohm.db, "
            "postgresql://user@host/db) nor a file path"
        )
    if parsed.get_backend_name() == "sqlite" and parsed.query:
        raise StorageError(f"--storage {url!r}: a sqlite:/// URL takes no ?options")


def sqlite_file(url: str) -> Path | None:
    """The database file of a sqlite:/// URL (None for other URLs and in-memory SQLite)."""
    prefix = "sqlite:///"
    if not url.startswith(prefix) or url[len(prefix) :] in ("", ":memory:"):
        return None
    return Path(url[len(prefix) :])


def open_storage(
    location: Location, heartbeat_s: int | None = None, must_exist: bool = False
) -> optuna.storages.RDBStorage:
    """The RDB storage; with `heartbeat_s`, running trials send a heartbeat and those silent for
    twice as long are failed and retried (up to RETRIES times) by the next worker."""
    file = sqlite_file(location.url)
    if file is not None:
        if must_exist and not file.is_file():
            raise StorageError(f"no study storage at {file} (run autohm search first, or pass "
                               "--storage)")  # fmt: skip
        if not must_exist:
            _check_writable(file)
        file.parent.mkdir(parents=True, exist_ok=True)
    engine = {"connect_args": {"timeout": 60}} if file else {"pool_pre_ping": True}
    for _ in range(OPEN_ATTEMPTS):
        try:
            with warnings.catch_warnings():  # the heartbeat is "experimental" in Optuna
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                storage = optuna.storages.RDBStorage(
                    location.url, engine_kwargs=engine, **_heartbeat(heartbeat_s)
                )
            if file is not None:
                _lock_sqlite_transactions(storage.engine)
            return storage
        except ImportError as error:
            raise StorageError(
                f"storage {location.shown}: {error} (postgresql:// needs psycopg 3: "
                "pip install 'psycopg[binary]'; postgresql+psycopg2:// needs psycopg2-binary)"
            ) from None
        except (sqlalchemy.exc.SQLAlchemyError, ValueError) as error:
            if _lost_creation_race(error):
                time.sleep(0.5 + random.random())
                continue
            detail = " ".join(str(error).split("\n")[0].split())
            raise StorageError(f"cannot open storage {location.shown}: {detail}") from None
    raise StorageError(f"cannot open storage {location.shown}: tables could not be created")


def _check_writable(file: Path) -> None:
    """A StorageError unless a search can write the SQLite file (and its journal beside it)."""
    if file.is_dir():
        raise StorageError(f"storage {file} is a directory, not a SQLite file")
    directory = file.parent
    while not directory.exists() and directory != directory.parent:
        directory = directory.parent
    if file.exists() and not os.access(file, os.W_OK):
        raise StorageError(f"storage {file} is read-only: a search must write to it")
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StorageError(
            f"storage {file}: {directory} is read-only (SQLite writes its journal there)"
        )


def _lost_creation_race(error: Exception) -> bool:
    """Workers that start together on an empty database race to create the tables: the losers
    see a duplicate row (IntegrityError) or, on PostgreSQL, a table that already exists."""
    if isinstance(error, sqlalchemy.exc.IntegrityError):
        return True
    return isinstance(error, sqlalchemy.exc.ProgrammingError) and "already exists" in str(error)


def _lock_sqlite_transactions(engine: sqlalchemy.engine.Engine) -> None:
    """Run every SQLite transaction under the write lock (BEGIN IMMEDIATE). SQLite ignores the
    SELECT ... FOR UPDATE with which Optuna claims a waiting trial, so without this two threads
    or processes can both run the same enqueued trial (and the second fails to tell it)."""

    @sqlalchemy.event.listens_for(engine, "connect")
    def _explicit_transactions(connection, record) -> None:  # noqa: ANN001
        connection.isolation_level = None  # pysqlite: no implicit BEGIN, SQLAlchemy's instead

    @sqlalchemy.event.listens_for(engine, "begin")
    def _begin_immediate(connection) -> None:  # noqa: ANN001
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    engine.dispose()  # pooled connections were opened without the listeners


def _heartbeat(seconds: int | None) -> dict:
    """RDBStorage options: heartbeats every `seconds`, stale after STALE_AFTER, retried RETRIES
    times."""
    if not seconds:
        return {}
    retry = optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)

    def retry_afresh(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        """The retry starts without the failed trial's `lost` reason (see mark_lost)."""
        trial = copy.deepcopy(trial)
        trial.user_attrs = {k: v for k, v in trial.user_attrs.items() if k != LOST}
        retry(study, trial)

    return dict(
        heartbeat_interval=seconds,
        grace_period=STALE_AFTER * seconds,
        heartbeat_stale_trial_callback=retry_afresh,
    )


def study_name(storage: optuna.storages.BaseStorage, location: Location, name: str | None) -> str:
    """`name` when the storage holds it; without a name, the storage's only study."""
    names = optuna.get_all_study_names(storage)
    if name is None and len(names) == 1:
        return names[0]
    if name in names:
        return name
    listed = ", ".join(names) or "none"
    asked = "no --study given" if name is None else f"no study {name!r}"
    raise StorageError(f"{location.shown}: {asked}; studies there: {listed}")


def own_files(study: optuna.Study, storage: str | None, out: Path = Path(".")) -> list[Path]:
    """What no output may overwrite: the study's SQLite file and its artifact directories."""
    location = locate(storage, out)
    file = sqlite_file(location.url)
    recorded = study.user_attrs.get("artifacts")
    return [location.artifacts] + ([file] if file else []) + ([Path(recorded)] if recorded else [])


def existing_study(
    storage: str | None, name: str | None, out: Path = Path("."), writable: bool = False
) -> optuna.Study:
    """An existing study for reading (export, the app): the storage must already exist; with
    `writable`, a SQLite storage must also be writable (checked before any work)."""
    location = locate(storage, out)
    opened = open_storage(location, must_exist=True)
    file = sqlite_file(location.url)
    if writable and file is not None:
        _check_writable(file)
    study = optuna.load_study(study_name=study_name(opened, location, name), storage=opened)
    directions = [d.name.lower() for d in study.directions]
    if directions != list(DIRECTIONS):
        raise StorageError(
            f"study {study.study_name!r} in {location.shown} is not an autohm search (its "
            f"objectives: {', '.join(directions)}); autohm reads studies autohm search made"
        )
    return study
