-- What each layer showed the inspection, by layer digest and by what looked (the scanner's record
-- format and version, its engines' rules and its limits): an image that shares a layer with one
-- inspected before does not read that layer again. Written once; a row is as good as any other.
CREATE TABLE layer_records (
    layer       TEXT NOT NULL,
    engines     TEXT NOT NULL,
    record      BLOB NOT NULL,
    created_at  BIGINT NOT NULL,
    PRIMARY KEY (layer, engines)
);
