"""Comments on events, and an index of the users' likes and dislikes.

Revision ID: 0007
Revises: 0006

`comment` holds the text of an EVENT_TYPE_COMMENT event ('' on every other event, and
on every event stored before this revision). The partial index serves the profile
service's read of a user's disliked products (event types 6 and 7, like and dislike:
the latest of the two per product wins), as `events_user_purchases_idx` serves
purchases.
"""

from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE events ADD COLUMN comment text NOT NULL DEFAULT '';
        CREATE INDEX events_user_opinions_idx ON events (user_id, occurred_at)
            WHERE event_type IN (6, 7);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP INDEX events_user_opinions_idx;
        ALTER TABLE events DROP COLUMN comment;
        """
    )
