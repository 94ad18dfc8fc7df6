"""Event ids scoped per caller, and a digest of each event's payload.

Revision ID: 0006
Revises: 0005

An event id was one global namespace: any caller could store an id first and so
have another caller's real event answered DUPLICATE and dropped. Ids are now
unique per `source`, the authenticated caller (empty for events stored without
authentication, which is every event before this revision). `payload_sha256`
tells a resent event (a duplicate) from an id reused for a different event (a
conflict); rows from before it have none and count as duplicates.
"""

from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        ALTER TABLE events ADD COLUMN source text NOT NULL DEFAULT '',
                           ADD COLUMN payload_sha256 bytea;
        ALTER TABLE events DROP CONSTRAINT events_pkey,
                           ADD PRIMARY KEY (source, event_id);
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE events DROP CONSTRAINT events_pkey,
                           ADD PRIMARY KEY (event_id),
                           DROP COLUMN payload_sha256,
                           DROP COLUMN source;
        """
    )
