# The paved road: customs' default policy.
#
# Input: the evidence of one image (docs/policy.md): repository, digest, vulnerabilities, secrets,
# malware, misconfigurations, packages, os, ... Output: `deny` (reasons that block the image) and
# `warn` (reasons shown but not blocking).
package customs

import rego.v1

# Credentials whose leak is never acceptable in an image.
hard_secret(rule) if startswith(rule, "private-key-")

hard_secret(rule) if rule in {
	"aws-access-key-id", "aws-secret-access-key", "aws-session-token",
	"gcp-service-account", "gcp-oauth-client-secret",
	"azure-storage-account-key", "azure-ad-client-secret", "azure-sas-token",
	"digitalocean-pat", "alibaba-secret-key", "cloudflare-global-api-key",
	"github-pat", "github-fine-grained-pat", "github-oauth-token", "github-app-token",
	"gitlab-pat", "npm-access-token", "pypi-token", "dockerhub-pat", "crates-io-token",
	"vault-service-token", "terraform-cloud-token", "stripe-secret-key",
}

critical_with_fix(v) if {
	v.severity == "CRITICAL"
	v.fixed_version != null
}

deny contains msg if {
	some m in input.malware
	msg := sprintf("malware: %s in %s (%s)", [m.rule, m.path, m.engine])
}

deny contains msg if {
	some s in input.secrets
	hard_secret(s.rule)
	msg := sprintf("secret: %s in %s (%s)", [s.rule, s.path, s.redacted])
}

deny contains msg if {
	some v in input.vulnerabilities
	critical_with_fix(v)
	msg := sprintf("vulnerability: %s (CRITICAL) in %s %s, fixed in %s", [v.id, v.package, v.installed_version, v.fixed_version])
}

warn contains msg if {
	some v in input.vulnerabilities
	not critical_with_fix(v)
	v.severity in {"CRITICAL", "HIGH"}
	fix := object.get(v, "fixed_version", null)
	msg := sprintf("vulnerability: %s (%s) in %s %s%s", [v.id, v.severity, v.package, v.installed_version, fixed_note(fix)])
}

fixed_note(fix) := "" if fix == null

fixed_note(fix) := sprintf(", fixed in %s", [fix]) if fix != null

warn contains msg if {
	some s in input.secrets
	not hard_secret(s.rule)
	msg := sprintf("secret: %s in %s (%s)", [s.rule, s.path, s.redacted])
}

warn contains msg if {
	some m in input.misconfigurations
	m.severity in {"CRITICAL", "HIGH", "MEDIUM"}
	msg := sprintf("misconfiguration: %s: %s", [m.id, m.detail])
}
