"""Users, products, events and the model registry.

Revision ID: 0001
Revises:
"""

from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE users (
            user_id text PRIMARY KEY,
            age_band smallint NOT NULL DEFAULT 0,
            gender smallint NOT NULL DEFAULT 0,
            region text NOT NULL DEFAULT '',
            segments text[] NOT NULL DEFAULT '{}',
            consent_personalization boolean NOT NULL DEFAULT false,
            consent_analytics boolean NOT NULL DEFAULT false,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );

        CREATE TABLE products (
            product_id text PRIMARY KEY,
            title text NOT NULL,
            description text NOT NULL DEFAULT '',
            -- Levels joined by " > " (which no level may contain), so that a
            -- category prefix filter is a LIKE 'prefix%' on a text_pattern_ops index.
            category_path text NOT NULL DEFAULT '',
            tags text[] NOT NULL DEFAULT '{}',
            brand text NOT NULL DEFAULT '',
            currency_code text NOT NULL DEFAULT '',
            price_nanos bigint NOT NULL DEFAULT 0,  -- price in 1e-9 units of currency_code
            rating real NOT NULL DEFAULT 0,
            stock bigint NOT NULL DEFAULT 0,
            status smallint NOT NULL DEFAULT 1,     -- magpie.v1.ProductStatus
            attributes jsonb NOT NULL DEFAULT '{}',
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now()
        );
        CREATE INDEX products_category_idx ON products (category_path text_pattern_ops);
        CREATE INDEX products_updated_idx ON products (updated_at);

        -- Feedback. event_id makes ingestion idempotent; seq gives consumers an
        -- append order to resume from. No foreign keys: the feedback service
        -- validates products itself so that ingestion stays at COPY-like speed.
        CREATE TABLE events (
            seq bigserial NOT NULL,
            event_id text PRIMARY KEY,
            user_id text NOT NULL,
            product_id text NOT NULL,
            event_type smallint NOT NULL,           -- magpie.v1.EventType
            occurred_at timestamptz NOT NULL,
            received_at timestamptz NOT NULL DEFAULT now(),
            rating real NOT NULL DEFAULT 0,
            recommendation_id text NOT NULL DEFAULT '',
            model_version text NOT NULL DEFAULT '',
            position integer NOT NULL DEFAULT 0,
            session_id text NOT NULL DEFAULT '',
            device smallint NOT NULL DEFAULT 0
        );
        CREATE UNIQUE INDEX events_seq_idx ON events (seq);
        CREATE INDEX events_user_time_idx ON events (user_id, occurred_at);
        CREATE INDEX events_product_time_idx ON events (product_id, occurred_at);

        CREATE TABLE model_versions (
            model_name text NOT NULL,
            version integer NOT NULL,
            status text NOT NULL DEFAULT 'candidate'
                CHECK (status IN ('candidate', 'promoted', 'rejected', 'retired')),
            metrics jsonb NOT NULL DEFAULT '{}',
            artifact_uri text NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now(),
            promoted_at timestamptz,
            PRIMARY KEY (model_name, version)
        );
        -- At most one promoted version per model.
        CREATE UNIQUE INDEX model_versions_promoted_idx
            ON model_versions (model_name) WHERE status = 'promoted';
        """
    )


def downgrade() -> None:
    op.execute("DROP TABLE model_versions, events, products, users")
