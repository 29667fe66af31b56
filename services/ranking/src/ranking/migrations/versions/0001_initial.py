"""Daily sales (the stream's mirror) and ranking snapshots.

Revision ID: 0001
"""

from shopkit.database.migrations import first_revision

revision = "0001"
down_revision = None

# Frozen DDL of this revision (later changes go in new revisions, never here).
SCHEMA = [
    """
CREATE TABLE daily_sales (
    day DATE NOT NULL,
    product_id BIGINT NOT NULL,
    shard INTEGER NOT NULL,
    quantity BIGINT NOT NULL,
    name VARCHAR(500) NOT NULL,
    price BIGINT NOT NULL,
    last_sold_at TIMESTAMP WITH TIME ZONE NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_daily_sales PRIMARY KEY (day, product_id, shard),
    CONSTRAINT ck_daily_sales_quantity_not_negative CHECK (quantity >= 0)
)
""",
    """
CREATE TABLE ranking_snapshots (
    id BIGSERIAL NOT NULL,
    as_of TIMESTAMP WITH TIME ZONE NOT NULL,
    first_day DATE NOT NULL,
    last_day DATE NOT NULL,
    window_days SMALLINT NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_ranking_snapshots PRIMARY KEY (id)
)
""",
    """
CREATE TABLE ranking_snapshot_items (
    snapshot_id BIGINT NOT NULL,
    rank SMALLINT NOT NULL,
    product_id BIGINT NOT NULL,
    name VARCHAR(500) NOT NULL,
    price BIGINT NOT NULL,
    sold_quantity BIGINT NOT NULL,
    CONSTRAINT pk_ranking_snapshot_items PRIMARY KEY (snapshot_id, rank),
    CONSTRAINT fk_ranking_snapshot_items_snapshot_id_ranking_snapshots FOREIGN KEY(snapshot_id) REFERENCES ranking_snapshots (id) ON DELETE CASCADE
)
""",
]

# No runtime tables: the ranking service has no outbox and no consumers of shopkit's.
upgrade, downgrade = first_revision(
    SCHEMA,
    drop=("ranking_snapshot_items", "ranking_snapshots", "daily_sales"),
    runtime_tables=False,
)
