"""The registry as an audit log, and the retraining pipeline's state.

Revision ID: 0004
Revises: 0003

Serving follows aliases, not statuses: `model_aliases` names the `champion` (served),
the `previous` champion (kept loaded for a rollback in seconds) and the `staged`
version being rolled out (loaded beside the champion before the switch). Every alias
change of `champion` appends a row to `model_promotions`, which refuses updates and
deletes, so "which model served at 14:05 yesterday?" has one answer. A version's
`status` is now its lifecycle only: training -> candidate, or rejected (by the gate,
with its verdict), or failed.

`retrain_runs` holds one row per run, keyed by `run_id`, whose `stage` advances one
Celery task at a time; `holder`/`lease_until` is the lease of the worker executing the
stage (extended while it works, so it expires when that worker dies). At most one run
per model is running (a unique partial index), so duplicate triggers collapse into one.
`serving_replicas` is where retrieval and ranking replicas say which versions they have
loaded, so a promotion switches only when every live replica is ready. `text_embeddings`
caches item text embeddings by content hash for every worker; `tuned_parameters` keeps
what `magpie tune` found.
"""

from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.execute(
        """
        CREATE TABLE model_aliases (
            model_name text NOT NULL,
            alias text NOT NULL CHECK (alias IN ('champion', 'previous', 'staged')),
            version integer NOT NULL,
            updated_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (model_name, alias),
            FOREIGN KEY (model_name, version) REFERENCES model_versions (model_name, version)
        );

        CREATE TABLE model_promotions (
            id bigserial PRIMARY KEY,
            model_name text NOT NULL,
            from_version integer,
            to_version integer NOT NULL,
            action text NOT NULL CHECK (action IN ('promote', 'rollback')),
            trigger text NOT NULL,
            run_id uuid,
            reason text NOT NULL DEFAULT '',
            at timestamptz NOT NULL DEFAULT clock_timestamp()
        );
        CREATE INDEX model_promotions_at_idx ON model_promotions (model_name, at);

        CREATE FUNCTION magpie_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only', TG_TABLE_NAME;
        END $$;
        CREATE TRIGGER model_promotions_append_only
            BEFORE UPDATE OR DELETE ON model_promotions
            FOR EACH STATEMENT EXECUTE FUNCTION magpie_append_only();

        -- Carry the old statuses over: promoted -> champion, the newest retired version
        -- below it that was promoted before -> previous, each promotion into the log.
        INSERT INTO model_aliases (model_name, alias, version)
            SELECT model_name, 'champion', version FROM model_versions
            WHERE status = 'promoted';
        INSERT INTO model_aliases (model_name, alias, version)
            SELECT DISTINCT ON (r.model_name) r.model_name, 'previous', r.version
            FROM model_versions r JOIN model_versions p
                ON p.model_name = r.model_name AND p.status = 'promoted'
            WHERE r.status = 'retired' AND r.promoted_at IS NOT NULL AND r.version < p.version
            ORDER BY r.model_name, r.version DESC;
        INSERT INTO model_promotions (model_name, to_version, action, trigger, reason, at)
            SELECT model_name, version, 'promote', 'migration', 'promoted before 0004',
                   promoted_at
            FROM model_versions WHERE promoted_at IS NOT NULL ORDER BY promoted_at;

        DROP INDEX model_versions_promoted_idx;
        ALTER TABLE model_versions DROP CONSTRAINT model_versions_status_check;
        UPDATE model_versions SET status = 'candidate' WHERE status IN ('promoted', 'retired');
        ALTER TABLE model_versions
            ADD CONSTRAINT model_versions_status_check
                CHECK (status IN ('training', 'candidate', 'rejected', 'failed')),
            ADD COLUMN verdict jsonb,
            ADD COLUMN run_id uuid,
            DROP COLUMN promoted_at;

        CREATE TABLE retrain_runs (
            run_id uuid PRIMARY KEY,
            model_name text NOT NULL,
            trigger text NOT NULL CHECK (trigger IN ('schedule', 'threshold', 'manual')),
            trigger_context jsonb NOT NULL DEFAULT '{}',
            status text NOT NULL DEFAULT 'running'
                CHECK (status IN ('running', 'succeeded', 'rejected', 'failed')),
            stage text NOT NULL,
            version integer,
            params jsonb NOT NULL DEFAULT '{}',
            snapshot jsonb NOT NULL DEFAULT '{}',
            progress jsonb NOT NULL DEFAULT '{}',
            verdict jsonb,
            error text NOT NULL DEFAULT '',
            holder text,
            lease_until timestamptz,
            created_at timestamptz NOT NULL DEFAULT now(),
            updated_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz
        );
        CREATE UNIQUE INDEX retrain_runs_single_flight
            ON retrain_runs (model_name) WHERE status = 'running';
        CREATE INDEX retrain_runs_created_idx ON retrain_runs (model_name, created_at);

        CREATE TABLE retrain_stage_attempts (
            run_id uuid NOT NULL REFERENCES retrain_runs ON DELETE CASCADE,
            stage text NOT NULL,
            attempt integer NOT NULL,
            holder text NOT NULL,
            started_at timestamptz NOT NULL DEFAULT now(),
            finished_at timestamptz,
            outcome text CHECK (outcome IN ('done', 'failed', 'lost', 'retry')),
            detail jsonb NOT NULL DEFAULT '{}',
            PRIMARY KEY (run_id, stage, attempt)
        );

        CREATE TABLE serving_replicas (
            service text NOT NULL,
            replica text NOT NULL,
            model_name text NOT NULL,
            versions integer[] NOT NULL,
            seen_at timestamptz NOT NULL DEFAULT now(),
            PRIMARY KEY (service, replica, model_name)
        );

        CREATE TABLE text_embeddings (
            key text PRIMARY KEY,
            encoder text NOT NULL,
            vector bytea NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );

        -- What `magpie tune` found, beside what the defaults scored on the same split:
        -- retraining uses the newest parameters that beat their baseline.
        CREATE TABLE tuned_parameters (
            id bigserial PRIMARY KEY,
            model_name text NOT NULL,
            study text NOT NULL,
            params jsonb NOT NULL,
            value double precision NOT NULL,
            baseline double precision NOT NULL,
            trials integer NOT NULL,
            created_at timestamptz NOT NULL DEFAULT now()
        );
        """
    )


def downgrade() -> None:
    op.execute(
        """
        DROP TABLE tuned_parameters, text_embeddings, serving_replicas, retrain_stage_attempts,
            retrain_runs;
        ALTER TABLE model_versions ADD COLUMN promoted_at timestamptz;
        UPDATE model_versions v SET promoted_at = p.at
            FROM (SELECT model_name, to_version, max(at) AS at FROM model_promotions
                  GROUP BY 1, 2) p
            WHERE p.model_name = v.model_name AND p.to_version = v.version;
        ALTER TABLE model_versions DROP CONSTRAINT model_versions_status_check,
            DROP COLUMN verdict, DROP COLUMN run_id;
        UPDATE model_versions v SET status = 'promoted'
            FROM model_aliases a
            WHERE a.alias = 'champion' AND a.model_name = v.model_name
              AND a.version = v.version;
        UPDATE model_versions SET status = 'retired'
            WHERE status <> 'promoted' AND promoted_at IS NOT NULL;
        UPDATE model_versions SET status = 'candidate' WHERE status IN ('training', 'failed');
        ALTER TABLE model_versions ADD CONSTRAINT model_versions_status_check
            CHECK (status IN ('candidate', 'promoted', 'rejected', 'retired'));
        CREATE UNIQUE INDEX model_versions_promoted_idx
            ON model_versions (model_name) WHERE status = 'promoted';
        DROP TABLE model_promotions, model_aliases;
        DROP FUNCTION magpie_append_only();
        """
    )
