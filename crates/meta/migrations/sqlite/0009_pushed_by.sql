-- Who pushed each manifest into its repository (the first push of those bytes there): part of the
-- evidence the gate's policy judges on.
ALTER TABLE manifests ADD COLUMN pushed_by TEXT;
