"""`cri-proxy datasette-metadata`: the datasette metadata file of a recording, made from
storage/README.md (cri_proxy/store/datasette.py), on stdout.

    cri-proxy datasette-metadata > metadata.json
    datasette calls.db -m metadata.json
"""

from __future__ import annotations

import json

import typer


def datasette_metadata(
    database: str = typer.Option("calls", "--database", metavar="NAME",
                                 help="The name datasette serves the recording under: its file name without .db."),
) -> None:
    """Print a datasette metadata file describing every table, view and column of a recording."""
    from cri_proxy.store.datasette import metadata

    typer.echo(json.dumps(metadata(database), indent=1, ensure_ascii=False))


def register(app: typer.Typer) -> None:
    """Adds `datasette-metadata` to the `cri-proxy` app."""
    app.command("datasette-metadata")(datasette_metadata)
