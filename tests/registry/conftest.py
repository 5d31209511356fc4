"""The registry tests run every catalog test on SQLite and on PostgreSQL through `catalog_url`; that fixture and
`sqlite_url` / `postgres_url` live in tests/conftest.py, because the server tests use the PostgreSQL one too
(several workers following one catalog)."""
