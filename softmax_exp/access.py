"""May this process sign in to the tracking server, and write to its experiment? Asked before any work, on a
server with accounts.

A server started with MLflow's accounts (scripts/tracking-server.sh) refuses a request without credentials or
with a wrong password (401), and a run in an experiment its user may only read (403). Asked first, each is one
line before any training, and nothing is half-written: no parent run without its jobs, no job's run cut short.
The credentials are MLflow's own, MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, read by MLflow.
"""

import urllib.parse

from mlflow.tracking import MlflowClient
from mlflow.utils.credentials import get_default_host_creds
from mlflow.utils.rest_utils import http_request

from softmax_exp.errors import TrackingError

WRITERS = ("EDIT", "MANAGE")  # MLflow's permissions on an experiment that let a user create runs in it
HOW = "set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD to your account on it"


def check_no_credentials_in(uri: str) -> None:
    """A password in tracking.uri would land in params, logs and printed URLs: refuse it."""
    if "@" in urllib.parse.urlsplit(uri).netloc:
        raise TrackingError(f"tracking.uri holds an account: give the bare http://host:port, and {HOW}")


def check_signed_in(uri: str) -> dict | None:
    """On an http(s) server with accounts: the credentials accepted, and the user they sign in as. None
    where there are no accounts: a local store, a database server, a server without them."""
    if not uri.startswith(("http://", "https://")):
        return None
    check_no_credentials_in(uri)
    credentials = get_default_host_creds(uri)
    response = http_request(credentials, "/api/2.0/mlflow/users/current", "GET", max_retries=0, timeout=10)
    if response.status_code == 404:  # a server without accounts
        return None
    if response.status_code == 401:
        given = f"the password of {credentials.username!r}" if credentials.username else "a request without an account"
        raise TrackingError(f"MLflow tracking server {uri} refused {given}: {HOW}")
    if response.status_code != 200:
        raise TrackingError(f"MLflow tracking server {uri} answered {response.status_code} to who-am-I: {HOW}")
    return response.json()["user"]


def check_may_write(uri: str, experiment: str) -> None:
    """On an http(s) server with accounts: credentials accepted, and the experiment ours to change (or new)."""
    user = check_signed_in(uri)
    if user is None:  # no accounts: anyone may write
        return
    existing = MlflowClient(uri).get_experiment_by_name(experiment)
    if user["is_admin"] or existing is None:  # whoever creates an experiment may change it
        return
    query = {"username": user["username"], "resource_type": "experiment", "resource_id": existing.experiment_id}
    answer = http_request(
        get_default_host_creds(uri), "/api/3.0/mlflow/users/permissions/get", "GET", params=query, timeout=10
    )
    permission = answer.json().get("permission", "NO_PERMISSIONS") if answer.status_code == 200 else "NO_PERMISSIONS"
    if permission not in WRITERS:
        raise TrackingError(
            f"{user['username']!r} may not write to MLflow experiment {experiment!r} on {uri} ({permission}): "
            f"choose your own, e.g. tracking.experiment={user['username']}"
        )
