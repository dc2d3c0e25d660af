-- Access: users and robots, their grants over namespaces, the change log that lets every
-- replica drop cached credentials, and the append-only audit log.

CREATE TABLE principals (
    name           TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,          -- 'user' | 'robot'
    secret         TEXT NOT NULL,          -- argon2id or bcrypt PHC string; 'sha256:<hex>' for robots
    expires_at     BIGINT,                 -- epoch ms; robots only
    description    TEXT NOT NULL,
    created_at     BIGINT NOT NULL,
    created_by     TEXT NOT NULL
);

-- What a principal (or 'anonymous') may do in the repositories a glob names: a role name
-- (reader, writer, maintainer, admin) or an action list (pull,push) for robots.
CREATE TABLE grants (
    principal      TEXT NOT NULL,
    namespace      TEXT NOT NULL,
    permission     TEXT NOT NULL,
    PRIMARY KEY (principal, namespace)
);

-- One row per change of anyone's access; its highest id is the access version that replicas
-- poll, and a token issued before a change of its subject is no longer honoured.
CREATE TABLE access_changes (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    principal      TEXT NOT NULL,
    at             BIGINT NOT NULL
);
CREATE INDEX access_changes_by_time ON access_changes (at);

CREATE TABLE audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             BIGINT NOT NULL,
    actor          TEXT NOT NULL,
    action         TEXT NOT NULL,
    target         TEXT NOT NULL,
    client         TEXT,
    detail         TEXT
);
CREATE INDEX audit_by_actor ON audit (actor, id);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END;
