-- Berth's metadata index, version 1. Storage is the source of truth; these rows say what it holds.
-- Times are milliseconds since the Unix epoch. Rows of tags and manifests are deleted softly
-- (deleted_at) so that a reconcile running beside live requests can tell a recent delete from
-- a row it never saw.
CREATE TABLE repositories (
    name TEXT PRIMARY KEY,
    created_at BIGINT NOT NULL
);
CREATE TABLE manifests (
    repository TEXT NOT NULL,
    digest TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size BIGINT NOT NULL,
    artifact_type TEXT,
    subject TEXT,
    referrer_entry TEXT,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    deleted_at BIGINT,
    last_pulled_at BIGINT,
    PRIMARY KEY (repository, digest)
);
CREATE INDEX manifests_by_subject ON manifests (repository, subject, digest);
CREATE TABLE manifest_references (
    repository TEXT NOT NULL,
    manifest TEXT NOT NULL,
    target TEXT NOT NULL,
    kind TEXT NOT NULL,
    size BIGINT NOT NULL,
    PRIMARY KEY (repository, manifest, target)
);
CREATE TABLE tags (
    repository TEXT NOT NULL,
    tag TEXT NOT NULL,
    digest TEXT NOT NULL,
    pushed_at BIGINT NOT NULL,
    deleted_at BIGINT,
    PRIMARY KEY (repository, tag)
);
CREATE INDEX tags_by_digest ON tags (repository, digest);
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    size BIGINT NOT NULL
);
CREATE TABLE berth_meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
