"""Behaviour-derived features of users and products, and the event consumer's checkpoint.

Revision ID: 0002
Revises: 0001

The feedback service appends events; a consumer folds them, in commit order,
into the daily counters below and advances its checkpoint in the same
transaction, so every acknowledged event is counted exactly once. Commit order
comes from the inserting transaction's id: rows whose `xid` is below the
oldest running transaction can no longer be joined by earlier rows, so reading
`(xid, seq) > checkpoint AND xid < pg_snapshot_xmin(pg_current_snapshot())`
never skips an event that commits late.
"""

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE events ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
        CREATE INDEX events_xid_seq_idx ON events (xid, seq);
        CREATE INDEX events_user_purchases_idx ON events (user_id, occurred_at)
            WHERE event_type = 4;

        CREATE TABLE consumer_checkpoints (
            consumer text PRIMARY KEY,
            xid xid8 NOT NULL DEFAULT '0',
            seq bigint NOT NULL DEFAULT 0,
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        -- Per product and UTC day; 1/7/30-day windows are sums over the last days.
        CREATE TABLE product_daily_counts (
            product_id text NOT NULL,
            day date NOT NULL,
            impressions bigint NOT NULL DEFAULT 0,
            clicks bigint NOT NULL DEFAULT 0,
            add_to_carts bigint NOT NULL DEFAULT 0,
            purchases bigint NOT NULL DEFAULT 0,
            PRIMARY KEY (product_id, day)
        );

        -- Exponentially decayed popularity: score is valid at as_of and decays
        -- with a 7-day half-life from there; readers decay it to their time.
        CREATE TABLE product_popularity (
            product_id text PRIMARY KEY,
            score double precision NOT NULL,
            as_of timestamptz NOT NULL
        );
        CREATE INDEX product_popularity_score_idx ON product_popularity (score DESC);

        CREATE TABLE user_counts (
            user_id text PRIMARY KEY,
            impressions bigint NOT NULL DEFAULT 0,
            clicks bigint NOT NULL DEFAULT 0,
            add_to_carts bigint NOT NULL DEFAULT 0,
            purchases bigint NOT NULL DEFAULT 0,
            last_event_at timestamptz
        );

        -- Event weight per user, top-level category and UTC day (affinity windows).
        CREATE TABLE user_category_daily (
            user_id text NOT NULL,
            category text NOT NULL,
            day date NOT NULL,
            weight double precision NOT NULL DEFAULT 0,
            PRIMARY KEY (user_id, category, day)
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE user_category_daily, user_counts, product_popularity,
                   product_daily_counts, consumer_checkpoints;
        DROP INDEX events_user_purchases_idx;
        ALTER TABLE events DROP COLUMN xid;
        """
    )
