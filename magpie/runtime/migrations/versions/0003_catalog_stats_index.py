"""Covering index for the catalog's behaviour-statistics reads.

Revision ID: 0003
Revises: 0002

GetProducts sums the last 30 days of `product_daily_counts` for up to 2,000
products per call. A product's days are scattered over the heap (the consumer
writes them day by day), so the primary key alone costs one heap page per row;
with the counted columns included the sums come from an index-only scan.
"""

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE INDEX product_daily_counts_stats_idx
            ON product_daily_counts (product_id, day) INCLUDE (clicks, purchases)
        """
    )


def downgrade() -> None:
    op.execute("DROP INDEX product_daily_counts_stats_idx")
