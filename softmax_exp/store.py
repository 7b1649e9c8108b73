"""The tracking store: its settings checked before any work, and a new local store created by one process at a time.

Each refused setting raises TrackingError with one line that says what is wrong and how to fix it, and
leaves nothing behind: the store's folder and files are made only once every setting is accepted. A store
to write to (a run, a sweep: check_for_writing) may be new; one to read from (the report:
check_for_reading) must exist, and is never made. Nothing here prints a password: URIs are shown with
theirs replaced by ***.
"""

import fcntl
import socket
import sqlite3
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

from mlflow.entities import Experiment
from mlflow.exceptions import MlflowException

from softmax_exp import access
from softmax_exp.errors import TrackingError

SQLITE = "sqlite:///"
DATABASE_PORTS = {"postgresql": 5432, "mysql": 3306, "mssql": 1433}  # MLflow's other SQL back ends
WHAT_WORKS = (
    "use sqlite:////ABSOLUTE/PATH/mlflow.db (a local store), http://HOST:PORT of an `mlflow server`, "
    "or a database URL (postgresql://, mysql://, mssql://)"
)
CONNECT_SECONDS = 5  # a database server that does not accept a connection in this long is unreachable


def redacted(uri: str) -> str:
    """The URI with its password, if any, replaced by ***."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    user_info, _, host = parts.netloc.rpartition("@")
    return parts._replace(netloc=f"{user_info.partition(':')[0]}:***@{host}").geturl()


def sqlite_path(uri: str) -> Path | None:
    """The database file of a local store's URI, `sqlite:///PATH` (absolute: `sqlite:////abs/mlflow.db`)."""
    if not uri.startswith(SQLITE):
        return None
    return Path(unquote(uri.removeprefix(SQLITE).partition("?")[0]))


def check_for_writing(uri: str, experiment: str) -> None:
    """Every setting a run or sweep needs: the store can work, answers, and lets this user write the experiment."""
    check(uri, experiment)
    check_reachable(uri)
    access.check_may_write(uri, experiment)


def check_for_reading(uri: str, experiment: str) -> None:
    """Every setting a reader needs: the store can work, answers, lets this user in, and exists, so that
    opening it makes nothing (MLflow makes a missing SQLite store, and its tables in an empty file)."""
    check(uri, experiment)
    check_reachable(uri)
    access.check_signed_in(uri)
    if database := sqlite_path(uri):
        if not database.exists():
            raise TrackingError(
                f"there is no tracking store at {database}: give the path of an existing one, "
                "or make this one with a run (`python -m softmax_exp`)"
            )
        check_readable(database)
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            tables = {name for (name,) in connection.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "experiments" not in tables:
            raise TrackingError(f"{database} is a SQLite database but not an MLflow tracking store: name another")


def check_reachable(uri: str) -> None:
    """Fail in seconds, not after MLflow's minutes of retries, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    try:
        with urllib.request.urlopen(uri.rstrip("/") + "/health", timeout=5):
            pass
    except (urllib.error.URLError, OSError) as error:
        reason = getattr(error, "reason", error)
        raise TrackingError(
            f"MLflow tracking server {redacted(uri)} is unreachable ({reason}): start it with "
            "`mlflow server --host 127.0.0.1 --port 5000`, or drop tracking.uri to use the local store"
        ) from None


def check_not_deleted(experiment: Experiment) -> None:
    """A deleted experiment keeps its name, and MLflow refuses runs in it: say so, with both ways out."""
    if experiment.lifecycle_stage == "deleted":
        raise TrackingError(
            f"MLflow experiment {experiment.name!r} is deleted: restore it in the UI, "
            "or choose tracking.experiment=NEW_NAME"
        )


def failed(uri: str, error: MlflowException) -> TrackingError:
    """What MLflow says when the store fails, in one line that names the store."""
    return TrackingError(f"MLflow tracking store {redacted(uri)} failed: {error.message}")


def quoted(value: str) -> str:
    """A string value for an MLflow search filter. The filter grammar has no escapes: a value is whatever
    lies between its quotes (mlflow/utils/search_utils.py, _strip_quotes), so a value holding one kind of
    quote is put between the other kind, and one holding both cannot be searched for."""
    if "'" not in value:
        return f"'{value}'"
    if '"' not in value:
        return f'"{value}"'
    raise TrackingError(f"{value!r} holds both kinds of quote, which an MLflow search filter cannot hold")


def check(uri: str, experiment: str) -> None:
    """Refuse tracking settings that cannot work, each in one line, before anything is read, trained or written."""
    if not experiment.strip():
        raise TrackingError(
            f"tracking.experiment={experiment!r} is empty: name the MLflow experiment, e.g. tracking.experiment=mine"
        )
    shown = redacted(uri)
    scheme = urlsplit(uri).scheme.lower().partition("+")[0]  # postgresql+psycopg2 is postgresql
    if scheme == "file":
        raise TrackingError(
            f"tracking.uri={shown} is a plain-folder store, which MLflow 3 refuses: {WHAT_WORKS}; "
            "`mlflow migrate-filestore` moves old runs into SQLite"
        )
    if scheme == "sqlite":
        check_sqlite(uri)
    elif scheme in DATABASE_PORTS:
        check_database_server(uri, scheme)
    elif scheme not in ("http", "https"):
        raise TrackingError(f"tracking.uri={shown} is not a tracking store MLflow can use here: {WHAT_WORKS}")


def check_sqlite(uri: str) -> None:
    database = sqlite_path(uri)
    if database is None or str(database) in ("", ":memory:"):
        raise TrackingError(f"tracking.uri={uri} names no database file, and an in-memory store keeps nothing: "
                            f"{WHAT_WORKS}")  # fmt: skip
    if not database.is_absolute():
        raise TrackingError(
            f"tracking.uri={uri} is a relative path, which would depend on the working directory: "
            f"give it absolute, tracking.uri={SQLITE}{Path.cwd() / database}"
        )
    if database.is_dir():
        raise TrackingError(f"tracking.uri={uri} names a folder: name the database file, {SQLITE}{database}/mlflow.db")
    for folder in database.parents:
        if folder.exists():
            if not folder.is_dir():
                raise TrackingError(f"tracking.uri={uri}: {folder} is a file, not a folder: choose another path")
            break


def check_database_server(uri: str, scheme: str) -> None:
    """The server accepts connections (fail in seconds, not after retries), and its driver is installed."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError

    shown = redacted(uri)
    parts = urlsplit(uri)
    if parts.hostname:  # else a local socket, which the driver will try
        address = (parts.hostname, parts.port or DATABASE_PORTS[scheme])
        try:
            socket.create_connection(address, timeout=CONNECT_SECONDS).close()
        except OSError as error:
            raise TrackingError(
                f"database server {address[0]}:{address[1]} of tracking.uri={shown} is unreachable "
                f"({error.strerror or error}): start it, or drop tracking.uri to use the local store"
            ) from None
    try:
        make_url(uri).get_dialect().import_dbapi()
    except (ArgumentError, NoSuchModuleError) as error:
        raise TrackingError(f"tracking.uri={shown} is not a database URL SQLAlchemy accepts ({error})") from None
    except ImportError as error:
        raise TrackingError(
            f"tracking.uri={shown} needs the Python driver for {scheme}, which is not installed ({error.name}): "
            "pip install it into this environment"
        ) from None


@contextmanager
def creating(uri: str) -> Iterator[None]:
    """Hold the local store's lock while its tables and the experiment are made, then looked up.

    MLflow creates a new SQLite store's tables without a lock, and processes that start together on a new
    store all fail ("table ... already exists"). So each process opens the store under an exclusive
    lock on `<database>.lock`, a file next to the database; once the store exists this costs milliseconds.
    A server's store (http, or a database server) is left to the server and MLflow.
    """
    database = sqlite_path(uri)
    if database is None:
        yield
        return
    check_readable(database)  # safe unlocked: SQLite's own locks keep a store being created consistent
    try:
        database.parent.mkdir(parents=True, exist_ok=True)
        lock = open(database.with_name(database.name + ".lock"), "a")  # "a": creates, never truncates
    except OSError as error:
        raise TrackingError(f"cannot create the local store {database}: {error.strerror or error}") from None
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes, even if this process is killed
        yield


def check_readable(database: Path) -> None:
    """A database file that SQLite cannot read, named, before MLflow fails on it with a traceback."""
    if not database.exists():
        return
    try:
        with closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as connection:
            connection.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except sqlite3.Error as error:
        raise TrackingError(
            f"{database} is not a readable SQLite database ({error}): move it aside to start a new store there, "
            "or point tracking.uri at another"
        ) from None
