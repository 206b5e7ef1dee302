-- Schema version 1: sessions, runs, events and the per-session counters.
-- Released: never edit; a change is a new numbered file. {s} is the quoted schema name.

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
