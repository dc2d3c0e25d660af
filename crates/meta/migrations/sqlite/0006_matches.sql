-- A report in two parts: what the layers showed (`report`, written once) and what the advisory DB
-- said of it (`vulnerabilities` and `db`, rewritten only when a newer DB says something else).
-- `vulnerabilities_digest` tells a re-match whether anything changed without reading them; the
-- empty digest of moved reports means "unknown", so their first re-match writes them again.
ALTER TABLE inspection_reports ADD COLUMN vulnerabilities TEXT NOT NULL DEFAULT '[]';
ALTER TABLE inspection_reports ADD COLUMN vulnerabilities_digest TEXT NOT NULL DEFAULT '';
ALTER TABLE inspection_reports ADD COLUMN db TEXT NOT NULL DEFAULT 'null';

UPDATE inspection_reports SET
    vulnerabilities = COALESCE(json_extract(report, '$.vulnerabilities'), '[]'),
    db = COALESCE(json_extract(report, '$.db'), 'null'),
    report = json_remove(report, '$.vulnerabilities', '$.db')
    WHERE json_valid(report);
