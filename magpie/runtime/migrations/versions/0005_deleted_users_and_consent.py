"""Deleted users, and consent that a caller may leave unstated.

Revision ID: 0005
Revises: 0004

`deleted_users` remembers who was deleted (DeleteProfile) and when, so that the feedback
service refuses the user's events dated before the deletion: a replayed or late event
must not bring the user back. It holds HMAC-SHA256 of the user id under
MAGPIE_USER_HASH_KEY (magpie.runtime.telemetry.user_digest), never the id itself;
changing that key forgets the deletions recorded under the old one.

The consent columns of `users` become nullable: NULL (both) is a profile upserted
without `consent`, that is consent not stated, which is no objection; false is a refusal,
honoured by personalisation and training. Existing rows keep their values: an old row
cannot tell "not stated" from "refused", and reading it as refused is the safe side (a
data set loaded again through the loader states nothing and so becomes NULL).
"""

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE deleted_users (
            user_hash text PRIMARY KEY,
            deleted_at timestamptz NOT NULL
        );

        ALTER TABLE users
            ALTER COLUMN consent_personalization DROP NOT NULL,
            ALTER COLUMN consent_personalization DROP DEFAULT,
            ALTER COLUMN consent_analytics DROP NOT NULL,
            ALTER COLUMN consent_analytics DROP DEFAULT,
            ADD CONSTRAINT users_consent_stated_together
                CHECK ((consent_personalization IS NULL) = (consent_analytics IS NULL));
        """
    )


def downgrade() -> None:
    op.execute(
        """
        ALTER TABLE users DROP CONSTRAINT users_consent_stated_together;
        UPDATE users SET consent_personalization = false, consent_analytics = false
            WHERE consent_personalization IS NULL;
        ALTER TABLE users
            ALTER COLUMN consent_personalization SET DEFAULT false,
            ALTER COLUMN consent_personalization SET NOT NULL,
            ALTER COLUMN consent_analytics SET DEFAULT false,
            ALTER COLUMN consent_analytics SET NOT NULL;
        DROP TABLE deleted_users;
        """
    )
