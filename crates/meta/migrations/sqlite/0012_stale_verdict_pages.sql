-- Re-judging reads stale verdicts in (digest, repository) order, a page after another.
CREATE INDEX verdicts_by_digest ON verdicts (digest, repo);
