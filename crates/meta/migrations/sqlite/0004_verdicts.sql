-- The gate: each report's verdict under the policy that judged it.
ALTER TABLE inspection_reports ADD COLUMN allowed BOOLEAN NOT NULL DEFAULT TRUE;
ALTER TABLE inspection_reports ADD COLUMN policy TEXT NOT NULL DEFAULT '';
ALTER TABLE inspection_reports ADD COLUMN reasons TEXT NOT NULL DEFAULT '[]';
