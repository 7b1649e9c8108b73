"""The tracking store: its settings checked before any work, and a new local store created by one process at a time.

Each refused setting raises TrackingError with one line that says what is wrong and how to fix it, and
leaves nothing behind: the store's folder and files are made only once every setting is accepted.
Nothing here prints a password: URIs are shown with theirs replaced by ***.
"""

import fcntl
import socket
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from urllib.parse import unquote, urlsplit

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
