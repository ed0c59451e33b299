-- Call history. A call row is written when the call is placed and updated as it is answered and ended;
-- `status` is final once `ended_at` is set: missed, declined, answered, cancelled or failed.

CREATE TABLE calls (
    id          TEXT PRIMARY KEY,
    caller_id   TEXT NOT NULL REFERENCES users(id),
    callee_id   TEXT NOT NULL REFERENCES users(id),
    kind        TEXT NOT NULL,                  -- audio | video
    status      TEXT NOT NULL,                  -- ringing | active | missed | declined | answered | cancelled | failed
    end_reason  TEXT,                           -- hangup | declined | timeout | busy | cancelled | failed
    started_at  BIGINT NOT NULL,
    answered_at BIGINT,
    ended_at    BIGINT
);
CREATE INDEX calls_caller ON calls (caller_id, started_at);
CREATE INDEX calls_callee ON calls (callee_id, started_at);
