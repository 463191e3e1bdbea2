CREATE TABLE IF NOT EXISTS executions (
    id TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    owner TEXT,
    heartbeat_at TIMESTAMPTZ,
    updated_at TIMESTAMPTZ NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS executions_updated ON executions (updated_at);
CREATE TABLE IF NOT EXISTS task_results (
    execution_id TEXT NOT NULL,
    task_id TEXT NOT NULL,
    round INTEGER NOT NULL,
    attempt INTEGER NOT NULL,
    status TEXT NOT NULL,
    written BIGINT GENERATED ALWAYS AS IDENTITY,
    data JSONB NOT NULL,
    PRIMARY KEY (execution_id, task_id, round, attempt)
);
CREATE TABLE IF NOT EXISTS checkpoints (
    execution_id TEXT NOT NULL,
    stage INTEGER NOT NULL,
    round INTEGER NOT NULL,
    data JSONB NOT NULL,
    PRIMARY KEY (execution_id, stage, round)
);
CREATE TABLE IF NOT EXISTS gate_results (
    execution_id TEXT NOT NULL,
    stage INTEGER NOT NULL,
    round INTEGER NOT NULL,
    data JSONB NOT NULL,
    PRIMARY KEY (execution_id, stage, round)
);
CREATE TABLE IF NOT EXISTS events (
    seq BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    execution_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    data JSONB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_execution ON events (execution_id, seq);
