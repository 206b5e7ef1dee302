-- Schema version 3 (contract 7 and 8): what queries and retention filter, order and add up,
-- kept in columns beside the documents, with an index for each ordering and single filter.
-- Released: never edit; a change is a new numbered file. {s} is the quoted schema name.
--
-- The columns are derived from the documents by BEFORE triggers (on insert, and on an update
-- that sets doc), so every write path fills them in the same statement (one round trip, no
-- new function signatures), code of version 2 still running in a rolling upgrade included.
-- The functions here mirror query.run_facts() and models.iso(); they live in this migration
-- because the triggers need them before functions.sql is installed.

ALTER TABLE {s}.sessions ADD COLUMN deleted_us bigint, ADD COLUMN tags text[];
ALTER TABLE {s}.runs
    ADD COLUMN provider text COLLATE "C",
    ADD COLUMN model text COLLATE "C",
    ADD COLUMN input_tokens bigint,
    ADD COLUMN output_tokens bigint,
    ADD COLUMN total_tokens bigint,
    ADD COLUMN cost_usd double precision;

-- models.iso() text ("...T..:..:...ffffffZ") to exact µs since the epoch (extract gives numeric).
CREATE OR REPLACE FUNCTION {s}.iso_us(t text) RETURNS bigint
LANGUAGE sql STABLE PARALLEL SAFE AS $fn$
    SELECT (extract(epoch FROM t::timestamptz) * 1000000)::bigint
$fn$;

-- query._count(): a number counts (truncated toward zero; clamped to bigint), anything else 0.
CREATE OR REPLACE FUNCTION {s}.token_count(v jsonb) RETURNS bigint
LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
    SELECT CASE WHEN jsonb_typeof(v) = 'number'
                THEN trunc(least(greatest(v::numeric, -9223372036854775808),
                                 9223372036854775807))::bigint
                ELSE 0 END
$fn$;

CREATE OR REPLACE FUNCTION {s}.session_columns() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    d jsonb := NEW.doc::jsonb;
BEGIN
    NEW.deleted_us := CASE WHEN jsonb_typeof(d -> 'deleted_at') = 'string'
                           THEN {s}.iso_us(d ->> 'deleted_at') END;
    NEW.tags := CASE WHEN jsonb_typeof(d -> 'tags') = 'array'
                     THEN ARRAY(SELECT jsonb_array_elements_text(d -> 'tags'))
                     ELSE '{}'::text[] END;
    -- sessions written by version 1 had no updated_us: the doc's own value
    IF NEW.updated_us IS NULL THEN
        NEW.updated_us := {s}.iso_us(d ->> 'updated_at');
    END IF;
    RETURN NEW;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.run_columns() RETURNS trigger
LANGUAGE plpgsql AS $fn$
DECLARE
    d jsonb := NEW.doc::jsonb;
    u jsonb := CASE WHEN jsonb_typeof(d -> 'token_usage') = 'object'
                    THEN d -> 'token_usage' ELSE '{}'::jsonb END;
BEGIN
    NEW.provider := CASE WHEN jsonb_typeof(d -> 'provider') = 'string'
                         THEN d ->> 'provider' END;
    NEW.model := CASE WHEN jsonb_typeof(d -> 'provider_metadata' -> 'model') = 'string'
                      THEN d -> 'provider_metadata' ->> 'model' END;
    NEW.input_tokens := {s}.token_count(u -> 'input_tokens');
    NEW.output_tokens := {s}.token_count(u -> 'output_tokens');
    NEW.total_tokens := CASE WHEN jsonb_typeof(u -> 'total_tokens') = 'number'
                             THEN {s}.token_count(u -> 'total_tokens')
                             ELSE NEW.input_tokens + NEW.output_tokens END;
    NEW.cost_usd := CASE WHEN jsonb_typeof(d -> 'cost_usd') = 'number'
                         THEN (d ->> 'cost_usd')::double precision END;
    RETURN NEW;
END
$fn$;

CREATE TRIGGER session_columns BEFORE INSERT OR UPDATE OF doc ON {s}.sessions
    FOR EACH ROW EXECUTE FUNCTION {s}.session_columns();
CREATE TRIGGER run_columns BEFORE INSERT OR UPDATE OF doc ON {s}.runs
    FOR EACH ROW EXECUTE FUNCTION {s}.run_columns();

-- Backfill: the triggers fill the columns of every existing row.
UPDATE {s}.sessions SET doc = doc;
UPDATE {s}.runs SET doc = doc;

-- search_sessions: each ordering, alone and after each single filter (created_us orders
-- have sessions_order, sessions_status, sessions_agent from version 1).
CREATE INDEX sessions_updated ON {s}.sessions (updated_us, id);
CREATE INDEX sessions_status_updated ON {s}.sessions (status, updated_us, id);
CREATE INDEX sessions_agent_updated ON {s}.sessions (agent_id, updated_us, id);
CREATE INDEX sessions_tags ON {s}.sessions USING gin (tags);
CREATE INDEX sessions_deleted ON {s}.sessions (deleted_us, id) WHERE deleted_us IS NOT NULL;

-- search_runs and the usage / cost aggregates (runs_session serves one session's).
CREATE INDEX runs_started ON {s}.runs (started_us, id);
CREATE INDEX runs_tokens ON {s}.runs (total_tokens, id);
CREATE INDEX runs_status_started ON {s}.runs (status, started_us, id);
CREATE INDEX runs_provider_started ON {s}.runs (provider, started_us, id);
CREATE INDEX runs_session_tokens ON {s}.runs (session_id, total_tokens, id);

-- search_events / count_events: (ts_us, id) order, alone and after each single filter;
-- sequence_asc within sessions is the primary key.
CREATE INDEX events_ts ON {s}.events (ts_us, id);
CREATE INDEX events_session_ts ON {s}.events (session_id, ts_us, id);
CREATE INDEX events_type_ts ON {s}.events (type, ts_us, id);
CREATE INDEX events_run_ts ON {s}.events (run_id, ts_us, id) WHERE run_id IS NOT NULL;
CREATE INDEX events_provider_ts ON {s}.events (provider, ts_us, id) WHERE provider IS NOT NULL;
CREATE INDEX events_corr_ts ON {s}.events (correlation_id, ts_us, id)
    WHERE correlation_id IS NOT NULL;
