"""Storage: the SQLite recording format (schema, migrations, views, named queries in storage/)."""
