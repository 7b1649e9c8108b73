"""Adds a class's accounts to a running tracking server (scripts/tracking-server.sh calls it as the admin).

    python scripts/add_students.py URI STUDENTS PASSWORDS

STUDENTS has one account a line, `NAME` or `NAME PASSWORD`. Each student gets an experiment named after them,
with MANAGE on it; on the others they keep the server's default, READ. Generated passwords are appended to
PASSWORDS (readable by its owner only), never printed. Existing accounts and experiments are left as they are.
"""

import os
import secrets
import sys
from pathlib import Path

from mlflow.exceptions import MlflowException
from mlflow.server import get_app_client
from mlflow.tracking import MlflowClient


def main(uri: str, students: Path, passwords: Path) -> None:
    accounts = get_app_client("basic-auth", tracking_uri=uri)
    client = MlflowClient(uri)
    created = []
    for line in students.read_text().splitlines():
        name, _, password = line.strip().partition(" ")
        if not name or name.startswith("#"):
            continue
        try:
            accounts.get_user(name)
        except MlflowException:  # RESOURCE_DOES_NOT_EXIST: a new student
            generated = not password
            password = password.strip() or secrets.token_urlsafe(12)
            try:
                accounts.create_user(name, password)
            except MlflowException as error:  # e.g. a password under 12 characters: the others go on
                print(f"add_students: {name} not added: {error.message}", file=sys.stderr)
                continue
            if generated:
                created.append(f"{name} {password}")
        experiment = client.get_experiment_by_name(name)
        experiment_id = experiment.experiment_id if experiment else client.create_experiment(name)
        accounts.grant_user_permission(name, "experiment", experiment_id, "MANAGE")
    if created:
        descriptor = os.open(passwords, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(descriptor, "a") as file:
            file.write("\n".join(created) + "\n")
        print(f"add_students: {len(created)} new accounts; their passwords are in {passwords}")


if __name__ == "__main__":
    main(sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3]))
