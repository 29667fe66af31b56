"""The database: engine and shared tables, the pool, the unit of work, migrations, LISTEN/NOTIFY, retention."""
