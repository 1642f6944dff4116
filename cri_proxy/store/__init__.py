"""Storage: the SQLite recording format (schema, migrations, views, named queries in storage/),
rows <-> recorded calls, the reader, the one read-only opener, compatibility with older files."""

DB_ENV = "CRI_PROXY_DB"  # where the read commands look when no --db is given
