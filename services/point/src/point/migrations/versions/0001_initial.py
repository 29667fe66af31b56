"""Balances, ledger, payments and the runtime tables.

Revision ID: 0001
"""

from shopkit.database.migrations import first_revision

revision = "0001"
down_revision = None

# Frozen DDL of this revision (later changes go in new revisions, never here).
SCHEMA = [
    """
CREATE TABLE balances (
    user_id BIGINT NOT NULL,
    balance BIGINT NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_balances PRIMARY KEY (user_id),
    CONSTRAINT ck_balances_balance_not_negative CHECK (balance >= 0)
)
""",
    """
CREATE TABLE ledger (
    id BIGSERIAL NOT NULL,
    user_id BIGINT NOT NULL,
    type VARCHAR(16) NOT NULL,
    amount BIGINT NOT NULL,
    balance_after BIGINT NOT NULL,
    order_id UUID,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_ledger PRIMARY KEY (id),
    CONSTRAINT ck_ledger_amount_positive CHECK (amount > 0),
    CONSTRAINT ck_ledger_balance_after_not_negative CHECK (balance_after >= 0)
)
""",
    """
CREATE INDEX ix_ledger_user_id_id ON ledger (user_id, id)
""",
    """
CREATE TABLE payments (
    order_id UUID NOT NULL,
    user_id BIGINT NOT NULL,
    amount BIGINT NOT NULL,
    status VARCHAR(16) NOT NULL,
    created_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    updated_at TIMESTAMP WITH TIME ZONE DEFAULT now() NOT NULL,
    CONSTRAINT pk_payments PRIMARY KEY (order_id)
)
""",
]

upgrade, downgrade = first_revision(SCHEMA, drop=("payments", "ledger", "balances"))
