-- The PostgreSQL schema version 1 exactly as released (migration 1 of the single-module
-- store, commit 059acac): tables and functions. tests/test_postgres.py builds a v1 database
-- from it and migrates it. {s} is the quoted schema name, {channel} the NOTIFY channel.

CREATE TABLE {s}.sessions (
    id text COLLATE "C" PRIMARY KEY,
    agent_id text COLLATE "C" NOT NULL,
    status text NOT NULL,
    created_us bigint NOT NULL,
    doc text NOT NULL
);
CREATE INDEX sessions_order ON {s}.sessions (created_us, id);
CREATE INDEX sessions_status ON {s}.sessions (status, created_us, id);
CREATE INDEX sessions_agent ON {s}.sessions (agent_id, created_us, id);
CREATE INDEX sessions_agent_status ON {s}.sessions (agent_id, status, created_us, id);

CREATE TABLE {s}.runs (
    id text COLLATE "C" PRIMARY KEY,
    session_id text COLLATE "C" NOT NULL,
    status text NOT NULL,
    started_us bigint NOT NULL,
    doc text NOT NULL
);
CREATE INDEX runs_session ON {s}.runs (session_id, started_us, id);
CREATE INDEX runs_session_status ON {s}.runs (session_id, status, started_us, id);

CREATE TABLE {s}.events (
    session_id text COLLATE "C" NOT NULL,
    seq bigint NOT NULL,
    id text COLLATE "C" NOT NULL,
    type text NOT NULL,
    run_id text COLLATE "C",
    ts_us bigint NOT NULL,
    data text NOT NULL,
    metadata text NOT NULL,
    schema_version integer NOT NULL,
    provider text,
    correlation_id text,
    PRIMARY KEY (session_id, seq)
);
CREATE UNIQUE INDEX events_id ON {s}.events (id);
CREATE INDEX events_run ON {s}.events (session_id, run_id, seq);
CREATE INDEX events_type ON {s}.events (session_id, type, seq);

-- The highest sequence ever assigned per session; its row lock serializes a session's appends.
CREATE TABLE {s}.counters (
    session_id text COLLATE "C" PRIMARY KEY,
    last_seq bigint NOT NULL
);

CREATE FUNCTION {s}.append_events(
    p_id text[], p_session text[], p_type text[], p_run text[], p_ts bigint[],
    p_data text[], p_meta text[], p_sv integer[], p_provider text[], p_corr text[]
) RETURNS TABLE (
    seq bigint, mine boolean, e_id text, e_session text, e_type text, e_run text,
    e_ts bigint, e_data text, e_meta text, e_sv integer, e_provider text, e_corr text
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
-- Every step is an index probe per row, never a join whose plan hangs on a row estimate:
-- PL/pgSQL switches to a generic plan after five calls, and that plan thinks each array
-- holds ten elements, whatever the batch size.
DECLARE
    v_expected bigint;
    v_sessions text[];
    v_seqs bigint[];
BEGIN
    IF coalesce(cardinality(p_id), 0) = 0 THEN
        RETURN;
    END IF;
    -- Lock every touched counter first, in one order for everybody (no deadlocks). Each
    -- statement below then runs with a snapshot taken after the lock was granted, so it
    -- sees every event committed by whoever held the lock before.
    INSERT INTO {s}.counters AS c (session_id, last_seq)
    SELECT DISTINCT u.sid, 0 FROM unnest(p_session) AS u(sid) ORDER BY 1
    ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq;
    LOOP
        WITH input AS (
            SELECT * FROM unnest(p_id, p_session, p_type, p_run, p_ts, p_data, p_meta, p_sv,
                                 p_provider, p_corr) WITH ORDINALITY
                AS t(id, session_id, type, run_id, ts_us, data, metadata, schema_version,
                     provider, correlation_id, ord)
        ), fresh AS (
            SELECT i.*, c.last_seq
                       + row_number() OVER (PARTITION BY i.session_id ORDER BY i.ord) AS seq
            FROM input AS i JOIN {s}.counters AS c ON c.session_id = i.session_id
            WHERE NOT EXISTS (SELECT 1 FROM {s}.events AS e WHERE e.id = i.id)
        ), ins AS (
            INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data, metadata,
                                    schema_version, provider, correlation_id)
            SELECT session_id, seq, id, type, run_id, ts_us, data, metadata, schema_version,
                   provider, correlation_id
            FROM fresh ORDER BY id  -- one id order for everybody: no deadlock on the index
            ON CONFLICT (id) DO NOTHING
            RETURNING session_id, seq
        )
        SELECT (SELECT count(*) FROM fresh), array_agg(ins.session_id), array_agg(ins.seq)
        INTO v_expected, v_sessions, v_seqs
        FROM ins;
        EXIT WHEN coalesce(cardinality(v_seqs), 0) = v_expected;
        -- Another transaction committed one of these ids into another session while we
        -- inserted: undo this attempt and number again from a snapshot that sees it.
        DELETE FROM {s}.events AS e
        USING unnest(v_sessions, v_seqs) AS d(sid, q)
        WHERE e.session_id = d.sid AND e.seq = d.q;
    END LOOP;
    IF v_seqs IS NOT NULL THEN
        UPDATE {s}.counters AS c SET last_seq = m.top
        FROM (SELECT u.sid, max(u.q) AS top FROM unnest(v_sessions, v_seqs) AS u(sid, q)
              GROUP BY u.sid) AS m
        WHERE c.session_id = m.sid;
        PERFORM pg_notify({channel},
                          CASE WHEN char_length(d.sid) <= 200 THEN d.sid
                               ELSE '#' || md5(d.sid) END)
        FROM (SELECT DISTINCT u.sid FROM unnest(v_sessions) AS u(sid)) AS d;
    END IF;
    -- Every input id as stored now. Rows this transaction wrote ("mine") come back without
    -- their payload, which the caller already has; rows stored earlier come back whole.
    RETURN QUERY
    SELECT e.seq, x.mine, e.id, e.session_id, e.type, e.run_id, e.ts_us,
           CASE WHEN x.mine THEN NULL ELSE e.data END,
           CASE WHEN x.mine THEN NULL ELSE e.metadata END,
           e.schema_version, e.provider, e.correlation_id
    FROM {s}.events AS e
    CROSS JOIN LATERAL (SELECT e.xmin = pg_current_xact_id()::xid AS mine) AS x
    WHERE e.id = ANY(p_id);
END
$fn$;

CREATE FUNCTION {s}.flush(
    s_id text, s_agent text, s_status text, s_created bigint, s_doc text,
    r_id text, r_session text, r_status text, r_started bigint, r_doc text,
    p_id text[], p_session text[], p_type text[], p_run text[], p_ts bigint[],
    p_data text[], p_meta text[], p_sv integer[], p_provider text[], p_corr text[]
) RETURNS TABLE (
    seq bigint, mine boolean, e_id text, e_session text, e_type text, e_run text,
    e_ts bigint, e_data text, e_meta text, e_sv integer, e_provider text, e_corr text
) LANGUAGE plpgsql AS $fn$
#variable_conflict use_column
BEGIN
    -- Lock order session -> run -> counters, the same as delete_session.
    INSERT INTO {s}.sessions (id, agent_id, status, created_us, doc)
    VALUES (s_id, s_agent, s_status, s_created, s_doc)
    ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id, status = EXCLUDED.status,
        created_us = EXCLUDED.created_us, doc = EXCLUDED.doc;
    INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
    VALUES (r_id, r_session, r_status, r_started, r_doc)
    ON CONFLICT (id) DO UPDATE SET session_id = EXCLUDED.session_id,
        status = EXCLUDED.status, started_us = EXCLUDED.started_us, doc = EXCLUDED.doc;
    RETURN QUERY SELECT * FROM {s}.append_events(p_id, p_session, p_type, p_run, p_ts,
                                                  p_data, p_meta, p_sv, p_provider, p_corr);
END
$fn$;

CREATE FUNCTION {s}.delete_session(p_session text) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    DELETE FROM {s}.sessions WHERE id = p_session;
    DELETE FROM {s}.runs WHERE session_id = p_session;
    -- Wait for in-flight appends of the session, then remove what they committed too.
    PERFORM 1 FROM {s}.counters WHERE session_id = p_session FOR UPDATE;
    DELETE FROM {s}.events WHERE session_id = p_session;
    DELETE FROM {s}.counters WHERE session_id = p_session;
END
$fn$;
