-- The gate per repository: each (repository, image) is judged by the policy its namespace chose.
-- `basis` fingerprints what the verdict was judged on (advisory DB version, policies, waivers);
-- a verdict whose basis is not the current one is judged again. An empty basis asks for that now
-- (a signature arrived, say). The report stays per digest: the facts of the same bytes are the
-- same in every repository.
CREATE TABLE verdicts (
    repo        TEXT NOT NULL,
    digest      TEXT NOT NULL,
    allowed     BOOLEAN NOT NULL,
    -- FALSE in audit mode: the verdict is recorded and reported, the image served.
    enforced    BOOLEAN NOT NULL,
    policy      TEXT NOT NULL,
    reasons     TEXT NOT NULL,
    warnings    TEXT NOT NULL,
    basis       TEXT NOT NULL,
    judged_at   BIGINT NOT NULL,
    PRIMARY KEY (repo, digest)
);
CREATE INDEX verdicts_by_basis ON verdicts (basis, digest);

INSERT INTO verdicts (repo, digest, allowed, enforced, policy, reasons, warnings, basis, judged_at)
    SELECT j.repo, j.digest, r.allowed, TRUE, r.policy, r.reasons, '[]', '', r.inspected_at
    FROM inspection_jobs j JOIN inspection_reports r ON r.digest = j.digest;

ALTER TABLE inspection_reports DROP COLUMN allowed;
ALTER TABLE inspection_reports DROP COLUMN policy;
ALTER TABLE inspection_reports DROP COLUMN reasons;

-- What each inspected image holds, for "which images contain X": rewritten with its report.
CREATE TABLE components (
    digest      TEXT NOT NULL,
    ecosystem   TEXT NOT NULL,
    name        TEXT NOT NULL,
    version     TEXT NOT NULL,
    purl        TEXT NOT NULL,
    layer       TEXT
);
CREATE INDEX components_by_digest ON components (digest);
CREATE INDEX components_by_name ON components (name);
CREATE INDEX components_by_purl ON components (purl);

-- One row per id (the CVE and each alias) of each vulnerability of each image.
CREATE TABLE image_vulnerabilities (
    digest      TEXT NOT NULL,
    vuln        TEXT NOT NULL,
    canonical   TEXT NOT NULL,
    package     TEXT NOT NULL,
    version     TEXT NOT NULL,
    severity    TEXT NOT NULL,
    fixed       TEXT
);
CREATE INDEX image_vulnerabilities_by_digest ON image_vulnerabilities (digest);
CREATE INDEX image_vulnerabilities_by_vuln ON image_vulnerabilities (vuln);

-- Findings set aside: a vulnerability id (or alias), a secret's fingerprint or a misconfiguration
-- id, in the repositories a glob names, until the waiver expires.
CREATE TABLE waivers (
    id           INTEGER PRIMARY KEY AUTOINCREMENT,
    finding      TEXT NOT NULL,
    repositories TEXT NOT NULL,
    reason       TEXT NOT NULL,
    expires_at   BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    created_by   TEXT NOT NULL
);
