-- The server-side functions, always the current version: (re)installed at the end of every
-- migrate() that applied a migration, so a change here needs a new numbered migration too
-- (it may hold only a comment, or drop a signature that changed). {s} is the quoted schema
-- name, {channel} the NOTIFY channel as an SQL literal.
--
-- Every write is one call of one of these: one round trip, one implicit transaction,
-- whatever the batch size (arrays, not one bind parameter per value).
--
-- Lock order, the same in every writing function, so that no two calls deadlock and no
-- interleaving ends in a state that no serial order gives:
--   1. the counter row of every session the call touches, in session id order (created when
--      missing: the counter row is the session's lock, whether or not it has events yet);
--   2. then the rows of sessions, runs and events.
-- Event rows a call reports as already stored are key-share locked when it finds them, so a
-- delete_session of their session waits until the call has answered.
--
-- SET plan_cache_mode = force_custom_plan: PL/pgSQL keeps each statement's plan for the life
-- of the connection and, after five calls, may switch to one generic plan costed with the
-- statistics of that moment. Made while a table was nearly empty, such a plan scans it whole
-- forever after. A plan made for each call costs a planning pass and cannot go stale.
--
-- The append path (append_events, flush, save_run) is called for every write, and planning
-- its statements each time was a third of a one-event append (about 450 of 1,400 us). It
-- keeps ONE generic plan per connection instead (force_generic_plan: made at the first call,
-- on whatever the tables then hold), and makes that plan safe whatever they hold later: with
-- sequential, bitmap, hash-join, merge-join and materialize plans off, every table is reached
-- by index probes, one per input row (the dedup against already stored ids is a hashed
-- NOT IN over the call's own rows, not a join). A test grows every table after the plans are
-- made and checks that an append still reads what it touches (test_postgres.py).

-- Sequence conflicts (conditional append, import) raise SQLSTATE AS409 with
-- DETAIL 'expected actual'; the store turns that into sequence_conflict.

-- Wake the long-poll readers of these sessions, in every process. Per session two payloads:
-- the bare session id (what code before schema 5 reads) and a JSON summary of what it got
-- (wakes.py: first/last number, newest timestamp, types, runs; runs left out when too many
-- or too long), so a reader whose filters the new events cannot satisfy stays asleep. Ids
-- over 200 characters are sent as '#' + md5 (payloads are capped at 8000 bytes).
-- PL/pgSQL, not SQL: an SQL function called from PL/pgSQL is planned again on every call,
-- and planning this query was most of the NOTIFY's cost, about a fifth of a one-event
-- append (schema 7). Here the plan is kept per connection; it reads no table, so it cannot
-- go stale.
CREATE OR REPLACE FUNCTION {s}.wake(
    p_sessions text[], p_seqs bigint[], p_types text[], p_runs text[], p_ts bigint[]
) RETURNS void LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM count(pg_notify({channel}, w.said)) + count(pg_notify({channel},
               (jsonb_build_object('s', w.said, 'f', w.first, 'l', w.top, 'ts', w.ts,
                                   't', w.types)
                || CASE WHEN coalesce(cardinality(w.runs), 0) <= 32
                             AND coalesce(octet_length(array_to_string(w.runs, '')), 0) <= 4000
                        THEN jsonb_build_object('r', coalesce(w.runs, '{}'::text[]),
                                                'n', w.no_run)
                        ELSE '{}'::jsonb END)::text))
    FROM (
        SELECT CASE WHEN char_length(u.sid) <= 200 THEN u.sid
                    ELSE '#' || md5(u.sid) END AS said,
               min(u.q) AS first, max(u.q) AS top, max(u.ts) AS ts,
               array_agg(DISTINCT u.t) AS types,
               array_agg(DISTINCT u.r) FILTER (WHERE u.r IS NOT NULL) AS runs,
               bool_or(u.r IS NULL) AS no_run
        FROM unnest(p_sessions, p_seqs, p_types, p_runs, p_ts) AS u(sid, q, t, r, ts)
        GROUP BY u.sid
    ) AS w;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.append_events(
    p_id text[], p_session text[], p_type text[], p_run text[], p_ts bigint[],
    p_data text[], p_meta text[], p_sv integer[], p_provider text[], p_corr text[],
    p_expected bigint DEFAULT NULL,  -- the latest sequence the (single) session must be at
    p_notify boolean DEFAULT true    -- false: the caller notifies after the commit (append_call)
) RETURNS TABLE (
    seq bigint, mine boolean, e_id text, e_session text, e_type text, e_run text,
    e_ts bigint, e_data text, e_meta text, e_sv integer, e_provider text, e_corr text
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_bitmapscan = off SET enable_hashjoin = off SET enable_mergejoin = off
    SET enable_material = off AS $fn$
#variable_conflict use_column
DECLARE
    v_latest bigint;
    v_stored bigint;
    v_fresh bigint;
    v_sessions text[];
    v_seqs bigint[];
    v_types text[];
    v_runs text[];
    v_ts bigint[];
BEGIN
    IF coalesce(cardinality(p_id), 0) = 0 THEN
        RETURN;
    END IF;
    -- 1. The counters (see the lock order above). Every statement below runs with a snapshot
    --    taken after the locks were granted: it sees what earlier holders committed.
    WITH locked AS (
        INSERT INTO {s}.counters AS c (session_id, last_seq)
        SELECT DISTINCT u.sid, 0 FROM unnest(p_session) AS u(sid) ORDER BY 1
        ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq
        RETURNING c.last_seq
    )
    SELECT max(locked.last_seq) INTO v_latest FROM locked;
    -- 2. Conditional append: the base class made sure every row names one session, whose
    --    counter we hold. A batch stored in full already is an idempotent retry: no check.
    IF p_expected IS NOT NULL AND v_latest <> p_expected THEN
        SELECT count(*) INTO v_stored
        FROM (SELECT 1 FROM {s}.events AS e WHERE e.id = ANY(p_id) FOR KEY SHARE) AS k;
        IF v_stored < cardinality(p_id) THEN
            RAISE EXCEPTION 'sequence conflict' USING ERRCODE = 'AS409',
                DETAIL = p_expected || ' ' || v_latest;
        END IF;
    END IF;
    -- 3. Number and insert the ids not stored yet, in one statement (one snapshot): what it
    --    finds stored it also locks, so that is still there when we answer.
    LOOP
        WITH input AS (
            SELECT * FROM unnest(p_id, p_session, p_type, p_run, p_ts, p_data, p_meta, p_sv,
                                 p_provider, p_corr) WITH ORDINALITY
                AS t(id, session_id, type, run_id, ts_us, data, metadata, schema_version,
                     provider, correlation_id, ord)
        ), stored AS MATERIALIZED (
            SELECT e.id FROM {s}.events AS e WHERE e.id = ANY(p_id) FOR KEY SHARE
        ), fresh AS (
            SELECT i.*, c.last_seq
                       + row_number() OVER (PARTITION BY i.session_id ORDER BY i.ord) AS seq
            FROM input AS i JOIN {s}.counters AS c ON c.session_id = i.session_id
            WHERE i.id NOT IN (SELECT k.id FROM stored AS k)  -- hashed: no join (see top)
        ), ins AS (
            INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data, metadata,
                                    schema_version, provider, correlation_id)
            SELECT session_id, seq, id, type, run_id, ts_us, data, metadata, schema_version,
                   provider, correlation_id
            FROM fresh ORDER BY id  -- one id order for everybody: no deadlock on the index
            ON CONFLICT (id) DO NOTHING
            RETURNING session_id, seq, type, run_id, ts_us
        )
        SELECT (SELECT count(*) FROM fresh), array_agg(ins.session_id), array_agg(ins.seq),
               array_agg(ins.type), array_agg(ins.run_id), array_agg(ins.ts_us)
        INTO v_fresh, v_sessions, v_seqs, v_types, v_runs, v_ts
        FROM ins;
        EXIT WHEN coalesce(cardinality(v_seqs), 0) = v_fresh;
        -- Another transaction committed one of these ids into another session while we
        -- inserted: undo this attempt and number again from a snapshot that sees it.
        DELETE FROM {s}.events AS e
        USING unnest(v_sessions, v_seqs) AS d(sid, q)
        WHERE e.session_id = d.sid AND e.seq = d.q;
    END LOOP;
    -- 4. Move the counters, touch the sessions' updated_at (contract C5), wake readers
    --    (unless the caller does so after the commit: append_call, flush_call).
    IF v_seqs IS NOT NULL THEN
        WITH top AS (
            SELECT u.sid, max(u.q) AS top
            FROM unnest(v_sessions, v_seqs) AS u(sid, q) GROUP BY u.sid
        ), moved AS (
            UPDATE {s}.counters AS c SET last_seq = top.top
            FROM top WHERE c.session_id = top.sid
        ), touched AS (
            UPDATE {s}.sessions AS s
            SET updated_us = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
            FROM top WHERE s.id = top.sid
        )
        SELECT count(*) INTO v_fresh FROM top;
        IF p_notify THEN
            PERFORM {s}.wake(v_sessions, v_seqs, v_types, v_runs, v_ts);
        END IF;
    END IF;
    -- 5. Every input id as stored now. Rows this transaction wrote ("mine") come back without
    --    their payload, which the caller already has; rows stored earlier come back whole.
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

CREATE OR REPLACE FUNCTION {s}.flush(
    s_id text, s_agent text, s_status text, s_created bigint, s_doc text,
    r_id text, r_session text, r_status text, r_started bigint, r_doc text,
    p_id text[], p_session text[], p_type text[], p_run text[], p_ts bigint[],
    p_data text[], p_meta text[], p_sv integer[], p_provider text[], p_corr text[],
    p_expected bigint DEFAULT NULL,  -- the latest sequence s_id must be at
    p_notify boolean DEFAULT true    -- false: the caller notifies after the commit (flush_call)
) RETURNS TABLE (
    seq bigint, mine boolean, e_id text, e_session text, e_type text, e_run text,
    e_ts bigint, e_data text, e_meta text, e_sv integer, e_provider text, e_corr text
) LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_bitmapscan = off SET enable_hashjoin = off SET enable_mergejoin = off
    SET enable_material = off AS $fn$
#variable_conflict use_column
DECLARE
    v_latest bigint;
BEGIN
    WITH locked AS (
        INSERT INTO {s}.counters AS c (session_id, last_seq)
        SELECT DISTINCT u.sid, 0
        FROM unnest(array_cat(ARRAY[s_id, r_session], p_session)) AS u(sid) ORDER BY 1
        ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq
        RETURNING c.session_id, c.last_seq
    )
    SELECT locked.last_seq INTO v_latest FROM locked WHERE locked.session_id = s_id;
    -- With events, append_events checks (it skips the check for a batch stored in full).
    IF p_expected IS NOT NULL AND coalesce(cardinality(p_id), 0) = 0
       AND v_latest <> p_expected THEN
        RAISE EXCEPTION 'sequence conflict' USING ERRCODE = 'AS409',
            DETAIL = p_expected || ' ' || v_latest;
    END IF;
    -- The flushed session's updated_at is replaced, then touched (contract C5).
    INSERT INTO {s}.sessions (id, agent_id, status, created_us, doc, updated_us)
    VALUES (s_id, s_agent, s_status, s_created, s_doc,
            (extract(epoch FROM clock_timestamp()) * 1000000)::bigint)
    ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id, status = EXCLUDED.status,
        created_us = EXCLUDED.created_us, doc = EXCLUDED.doc, updated_us = EXCLUDED.updated_us;
    INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
    VALUES (r_id, r_session, r_status, r_started, r_doc)
    ON CONFLICT (id) DO UPDATE SET session_id = EXCLUDED.session_id,
        status = EXCLUDED.status, started_us = EXCLUDED.started_us, doc = EXCLUDED.doc;
    RETURN QUERY SELECT * FROM {s}.append_events(p_id, p_session, p_type, p_run, p_ts,
                                                  p_data, p_meta, p_sv, p_provider, p_corr,
                                                  p_expected, p_notify);
END
$fn$;

-- What the store calls to append (append_call) and to flush (flush_call): the function, its
-- COMMIT, then the NOTIFY in a second transaction, all in one round trip. A commit that
-- NOTIFYs holds one server-wide lock (PreCommit_Notify) until its WAL flush is done, so
-- such commits never share a flush; at 64 concurrent appenders that halved the throughput.
-- The data commit is durable as before; the NOTIFY's own commit waits for no flush
-- (synchronous_commit off for that transaction only: it writes no data), so the lock is
-- held for microseconds. A reader still cannot miss a wake-up: the NOTIFY is sent after the
-- events are visible, and only a server crash between the two commits loses it, which also
-- drops every listening connection, whose waiters re-query when LISTEN is back.
-- The answer is the function's rows as one array per column (a procedure returns one row).
-- No SET clause: a procedure with one cannot COMMIT (the function keeps its own).
CREATE OR REPLACE PROCEDURE {s}.append_call(
    p_id text[], p_session text[], p_type text[], p_run text[], p_ts bigint[],
    p_data text[], p_meta text[], p_sv integer[], p_provider text[], p_corr text[],
    p_expected bigint DEFAULT NULL,
    INOUT seq bigint[] DEFAULT NULL, INOUT mine boolean[] DEFAULT NULL,
    INOUT e_id text[] DEFAULT NULL, INOUT e_session text[] DEFAULT NULL,
    INOUT e_type text[] DEFAULT NULL, INOUT e_run text[] DEFAULT NULL,
    INOUT e_ts bigint[] DEFAULT NULL, INOUT e_data text[] DEFAULT NULL,
    INOUT e_meta text[] DEFAULT NULL, INOUT e_sv integer[] DEFAULT NULL,
    INOUT e_provider text[] DEFAULT NULL, INOUT e_corr text[] DEFAULT NULL
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_s text[];
    v_q bigint[];
    v_t text[];
    v_r text[];
    v_ts bigint[];
BEGIN
    SELECT array_agg(a.seq), array_agg(a.mine), array_agg(a.e_id), array_agg(a.e_session),
           array_agg(a.e_type), array_agg(a.e_run), array_agg(a.e_ts), array_agg(a.e_data),
           array_agg(a.e_meta), array_agg(a.e_sv), array_agg(a.e_provider),
           array_agg(a.e_corr),
           array_agg(a.e_session) FILTER (WHERE a.mine), array_agg(a.seq) FILTER (WHERE a.mine),
           array_agg(a.e_type) FILTER (WHERE a.mine), array_agg(a.e_run) FILTER (WHERE a.mine),
           array_agg(a.e_ts) FILTER (WHERE a.mine)
    INTO seq, mine, e_id, e_session, e_type, e_run, e_ts, e_data, e_meta, e_sv, e_provider,
         e_corr, v_s, v_q, v_t, v_r, v_ts
    FROM {s}.append_events(p_id, p_session, p_type, p_run, p_ts, p_data, p_meta, p_sv,
                           p_provider, p_corr, p_expected, false) AS a;
    COMMIT;
    IF v_s IS NOT NULL THEN
        PERFORM set_config('synchronous_commit', 'off', true);
        PERFORM {s}.wake(v_s, v_q, v_t, v_r, v_ts);
    END IF;
END
$fn$;

CREATE OR REPLACE PROCEDURE {s}.flush_call(
    s_id text, s_agent text, s_status text, s_created bigint, s_doc text,
    r_id text, r_session text, r_status text, r_started bigint, r_doc text,
    p_id text[], p_session text[], p_type text[], p_run text[], p_ts bigint[],
    p_data text[], p_meta text[], p_sv integer[], p_provider text[], p_corr text[],
    p_expected bigint DEFAULT NULL,
    INOUT seq bigint[] DEFAULT NULL, INOUT mine boolean[] DEFAULT NULL,
    INOUT e_id text[] DEFAULT NULL, INOUT e_session text[] DEFAULT NULL,
    INOUT e_type text[] DEFAULT NULL, INOUT e_run text[] DEFAULT NULL,
    INOUT e_ts bigint[] DEFAULT NULL, INOUT e_data text[] DEFAULT NULL,
    INOUT e_meta text[] DEFAULT NULL, INOUT e_sv integer[] DEFAULT NULL,
    INOUT e_provider text[] DEFAULT NULL, INOUT e_corr text[] DEFAULT NULL
) LANGUAGE plpgsql AS $fn$
DECLARE
    v_s text[];
    v_q bigint[];
    v_t text[];
    v_r text[];
    v_ts bigint[];
BEGIN
    SELECT array_agg(a.seq), array_agg(a.mine), array_agg(a.e_id), array_agg(a.e_session),
           array_agg(a.e_type), array_agg(a.e_run), array_agg(a.e_ts), array_agg(a.e_data),
           array_agg(a.e_meta), array_agg(a.e_sv), array_agg(a.e_provider),
           array_agg(a.e_corr),
           array_agg(a.e_session) FILTER (WHERE a.mine), array_agg(a.seq) FILTER (WHERE a.mine),
           array_agg(a.e_type) FILTER (WHERE a.mine), array_agg(a.e_run) FILTER (WHERE a.mine),
           array_agg(a.e_ts) FILTER (WHERE a.mine)
    INTO seq, mine, e_id, e_session, e_type, e_run, e_ts, e_data, e_meta, e_sv, e_provider,
         e_corr, v_s, v_q, v_t, v_r, v_ts
    FROM {s}.flush(s_id, s_agent, s_status, s_created, s_doc, r_id, r_session, r_status,
                   r_started, r_doc, p_id, p_session, p_type, p_run, p_ts, p_data, p_meta,
                   p_sv, p_provider, p_corr, p_expected, false) AS a;
    COMMIT;
    IF v_s IS NOT NULL THEN
        PERFORM set_config('synchronous_commit', 'off', true);
        PERFORM {s}.wake(v_s, v_q, v_t, v_r, v_ts);
    END IF;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.save_run(
    r_id text, r_session text, r_status text, r_started bigint, r_doc text
) RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_generic_plan SET enable_seqscan = off
    SET enable_bitmapscan = off SET enable_hashjoin = off SET enable_mergejoin = off
    SET enable_material = off AS $fn$
BEGIN
    INSERT INTO {s}.counters AS c (session_id, last_seq) VALUES (r_session, 0)
    ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq;
    INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
    VALUES (r_id, r_session, r_status, r_started, r_doc)
    ON CONFLICT (id) DO UPDATE SET session_id = EXCLUDED.session_id,
        status = EXCLUDED.status, started_us = EXCLUDED.started_us, doc = EXCLUDED.doc;
    -- a run save touches its session's updated_at (contract C5)
    UPDATE {s}.sessions
    SET updated_us = (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    WHERE id = r_session;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.delete_session(p_session text)
RETURNS void LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $fn$
BEGIN
    -- The counter first, created if missing: a flush racing us into a session that has no
    -- counter yet waits for us too, and comes after us.
    INSERT INTO {s}.counters AS c (session_id, last_seq) VALUES (p_session, 0)
    ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq;
    DELETE FROM {s}.sessions WHERE id = p_session;
    DELETE FROM {s}.runs WHERE session_id = p_session;
    DELETE FROM {s}.events WHERE session_id = p_session;
    DELETE FROM {s}.counters WHERE session_id = p_session;
END
$fn$;

CREATE OR REPLACE FUNCTION {s}.import_events(
    p_session text,
    -- the session record, or s_doc NULL to leave it as it is; stored as given (no touch)
    s_agent text, s_status text, s_created bigint, s_updated bigint, s_doc text,
    r_id text[], r_session text[], r_status text[], r_started bigint[], r_doc text[],
    p_id text[], p_type text[], p_run text[], p_ts bigint[], p_data text[], p_meta text[],
    p_sv integer[], p_provider text[], p_corr text[], p_seq bigint[],
    p_latest bigint
) RETURNS TABLE (imported bigint, skipped bigint)
-- At most a chunk of rows comes in: probe the indexes per row. Any other join (hash, merge,
-- or a nested loop over a materialized scan, which stale statistics on a table that is being
-- filled invite) reads the whole session on every chunk: a copy would slow down as it grows.
LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan SET enable_hashjoin = off
    SET enable_mergejoin = off SET enable_material = off SET enable_bitmapscan = off AS $fn$
DECLARE
    v_expected bigint;
    v_actual bigint;
    v_reason text;
    v_skipped bigint;
    v_fresh bigint;
    v_imported bigint;
BEGIN
    INSERT INTO {s}.counters AS c (session_id, last_seq) VALUES (p_session, 0)
    ON CONFLICT (session_id) DO UPDATE SET last_seq = c.last_seq;
    -- A row conflicts when its id is stored elsewhere (another session or number) or its
    -- number holds another id; actual is the number found. The first conflict in sequence
    -- order is reported and nothing is written.
    SELECT x.expected, x.actual, x.reason INTO v_expected, v_actual, v_reason
    FROM (
        SELECT i.seq AS expected, e.seq AS actual,
               format('event %L is already stored in session %L at sequence %s, not at %s in %L',
                      i.id, e.session_id, e.seq, i.seq, p_session) AS reason
        FROM unnest(p_id, p_seq) AS i(id, seq)
        -- one index probe per incoming row (OFFSET 0 keeps each probe a probe): a join the
        -- planner may turn around would read the whole session on every chunk
        CROSS JOIN LATERAL (SELECT x.session_id, x.seq FROM {s}.events AS x
                            WHERE x.id = i.id OFFSET 0) AS e
        WHERE e.session_id <> p_session OR e.seq <> i.seq
        UNION ALL
        SELECT i.seq, e.seq, format('session %L holds another event at sequence %s',
                                    p_session, i.seq)
        FROM unnest(p_id, p_seq) AS i(id, seq)
        CROSS JOIN LATERAL (SELECT x.id, x.seq FROM {s}.events AS x
                            WHERE x.session_id = p_session AND x.seq = i.seq OFFSET 0) AS e
        WHERE e.id <> i.id
    ) AS x
    ORDER BY x.expected LIMIT 1;
    IF FOUND THEN
        RAISE EXCEPTION '%', v_reason USING ERRCODE = 'AS409',
            DETAIL = v_expected || ' ' || v_actual;
    END IF;
    WITH input AS (
        SELECT * FROM unnest(p_id, p_type, p_run, p_ts, p_data, p_meta, p_sv, p_provider,
                             p_corr, p_seq)
            AS t(id, type, run_id, ts_us, data, metadata, schema_version, provider,
                 correlation_id, seq)
    ), fresh AS (
        SELECT i.* FROM input AS i
        WHERE NOT EXISTS (
            SELECT 1 FROM {s}.events AS e WHERE e.session_id = p_session AND e.seq = i.seq)
    ), ins AS (
        INSERT INTO {s}.events (session_id, seq, id, type, run_id, ts_us, data, metadata,
                                schema_version, provider, correlation_id)
        SELECT p_session, seq, id, type, run_id, ts_us, data, metadata, schema_version,
               provider, correlation_id
        FROM fresh ORDER BY id
        ON CONFLICT (id) DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM fresh), count(*) INTO v_fresh, v_imported FROM ins;
    IF v_imported <> v_fresh THEN
        -- one of the ids was committed elsewhere meanwhile: the whole call is re-run
        RAISE EXCEPTION 'an imported id was stored concurrently' USING ERRCODE = '40001';
    END IF;
    v_skipped := coalesce(cardinality(p_id), 0) - v_imported;
    IF s_doc IS NOT NULL THEN
        INSERT INTO {s}.sessions (id, agent_id, status, created_us, doc, updated_us)
        VALUES (p_session, s_agent, s_status, s_created, s_doc, s_updated)
        ON CONFLICT (id) DO UPDATE SET agent_id = EXCLUDED.agent_id,
            status = EXCLUDED.status, created_us = EXCLUDED.created_us, doc = EXCLUDED.doc,
            updated_us = EXCLUDED.updated_us;
    END IF;
    INSERT INTO {s}.runs (id, session_id, status, started_us, doc)
    SELECT * FROM unnest(r_id, r_session, r_status, r_started, r_doc)
    ON CONFLICT (id) DO UPDATE SET session_id = EXCLUDED.session_id,
        status = EXCLUDED.status, started_us = EXCLUDED.started_us, doc = EXCLUDED.doc;
    UPDATE {s}.counters
    SET last_seq = greatest(last_seq, p_latest, (SELECT max(q) FROM unnest(p_seq) AS q))
    WHERE session_id = p_session;
    IF v_imported > 0 THEN
        -- what came (here: every row asked for, a superset)
        PERFORM {s}.wake(array_fill(p_session, ARRAY[cardinality(p_seq)]), p_seq, p_type,
                         p_run, p_ts);
    END IF;
    RETURN QUERY SELECT v_imported, v_skipped;
END
$fn$;

-- ---------------------------------------------------------------- retention (contract 8)
-- The same lock order: the sessions' counters in id order, then their session rows in id
-- order. Counters are locked where they exist, not created (that would write a row per
-- session for nothing): a writer creating one meanwhile waits for our session row lock
-- (flush's upsert, an append's touch) and comes after us; the one deadlock left, an append
-- touching two of these sessions in the other order, is the server's to break and the
-- store's to retry.

-- Soft delete: the caller read the due sessions (id, doc, xmin) and rewrote each doc with
-- deleted_at set; a session changed since (another xmin) or no longer due is left alone.
CREATE OR REPLACE FUNCTION {s}.soft_delete(
    p_id text[], p_doc text[], p_xmin text[],
    p_cutoff bigint, p_exempt_statuses text[], p_exempt_tags text[]
) RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $fn$
DECLARE
    v_marked bigint;
BEGIN
    PERFORM 1 FROM {s}.counters WHERE session_id = ANY(p_id) ORDER BY session_id FOR UPDATE;
    PERFORM 1 FROM {s}.sessions WHERE id = ANY(p_id) ORDER BY id FOR UPDATE;
    UPDATE {s}.sessions AS s SET doc = u.doc  -- the trigger sets deleted_us from the doc
    FROM unnest(p_id, p_doc, p_xmin) AS u(id, doc, x)
    WHERE s.id = u.id AND s.xmin = u.x::xid AND s.deleted_us IS NULL
      AND s.updated_us < p_cutoff AND s.status <> ALL(p_exempt_statuses)
      AND NOT (s.tags && p_exempt_tags);
    GET DIAGNOSTICS v_marked = ROW_COUNT;
    RETURN v_marked;
END
$fn$;

-- Hard delete of a batch, as delete_session does for each; only sessions still soft-deleted
-- before the cutoff. Returns the ids deleted.
CREATE OR REPLACE FUNCTION {s}.delete_sessions(p_id text[], p_cutoff bigint)
RETURNS TABLE (id text) LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $fn$
#variable_conflict use_column
DECLARE
    v_ids text[];
BEGIN
    PERFORM 1 FROM {s}.counters AS c WHERE c.session_id = ANY(p_id) ORDER BY c.session_id
    FOR UPDATE;
    SELECT array_agg(s.id ORDER BY s.id) INTO v_ids FROM (
        SELECT s.id FROM {s}.sessions AS s
        WHERE s.id = ANY(p_id) AND s.deleted_us < p_cutoff ORDER BY s.id FOR UPDATE
    ) AS s;
    IF v_ids IS NULL THEN
        RETURN;
    END IF;
    DELETE FROM {s}.sessions AS s WHERE s.id = ANY(v_ids);
    DELETE FROM {s}.runs AS r WHERE r.session_id = ANY(v_ids);
    DELETE FROM {s}.events AS e WHERE e.session_id = ANY(v_ids);
    DELETE FROM {s}.counters AS c WHERE c.session_id = ANY(v_ids);
    RETURN QUERY SELECT unnest(v_ids);
END
$fn$;

-- Prune one session's oldest events beyond p_max: first of p_first, then of any other type,
-- never of p_protected. The counter stays; the ids go (a re-append stores them anew).
CREATE OR REPLACE FUNCTION {s}.prune_events(
    p_session text, p_max bigint, p_first text[], p_protected text[], p_dry boolean
) RETURNS bigint LANGUAGE plpgsql SET plan_cache_mode = force_custom_plan AS $fn$
DECLARE
    v_count bigint;
BEGIN
    IF NOT p_dry THEN
        PERFORM 1 FROM {s}.counters WHERE session_id = p_session FOR UPDATE;
    END IF;
    WITH excess AS (
        SELECT greatest(count(*) - p_max, 0) AS n FROM {s}.events WHERE session_id = p_session
    ), victims AS (
        SELECT e.seq FROM {s}.events AS e
        WHERE e.session_id = p_session AND e.type <> ALL(p_protected)
        ORDER BY (e.type = ANY(p_first)) DESC, e.seq
        LIMIT (SELECT n FROM excess)
    ), gone AS (
        DELETE FROM {s}.events AS e USING victims AS v
        WHERE NOT p_dry AND e.session_id = p_session AND e.seq = v.seq
        RETURNING 1
    )
    SELECT CASE WHEN p_dry THEN (SELECT count(*) FROM victims) ELSE (SELECT count(*) FROM gone)
           END INTO v_count;
    RETURN v_count;
END
$fn$;
