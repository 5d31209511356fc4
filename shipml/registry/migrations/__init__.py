"""The catalog's database layer: its schema, how a database is opened, and its Alembic migrations.

    schema.py     the current tables (SQLAlchemy Core), used by the catalog's queries
    database.py   URLs, engines set up for the catalog's locking, retried transactions, running migrations
    env.py        Alembic's environment; versions/ one file per revision

Shipped inside the package and run from code (no alembic.ini).

`shipml.registry.catalog` runs them when a catalog is opened: `env.py` migrates on the connection the
catalog passes in `config.attributes["connection"]`, inside the catalog's transaction and upgrade lock.
`versions/` holds one file per revision, frozen once released: a schema change is a new revision, never an
edit of an old one (tests upgrade from every earlier revision to head and compare the result with
`schema.METADATA`).

Writing a new revision (a developer task): put `[alembic]` / `script_location = shipml/registry/migrations` and
`sqlalchemy.url = sqlite:////tmp/x.db` in a scratch ini, then `alembic -c scratch.ini upgrade head` and
`alembic -c scratch.ini revision --autogenerate -m "what changed"`; name the file `NNNN_<what>.py`.
"""
