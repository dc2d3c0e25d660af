-- When a manifest last lost a tag (moved to another manifest, or deleted): how long it has been
-- untagged, which a retention policy's `delete_untagged_after` counts from.
ALTER TABLE manifests ADD COLUMN untagged_at BIGINT;
