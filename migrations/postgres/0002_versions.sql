-- Versions: the whole state of a document at a moment people may want to go back to.
-- Kept automatically when a burst of editing ends (and during long sessions), on request,
-- and just before a restore. They live apart from the update log, so compacting the log
-- never removes one; retention thins the unlabelled ones, labelled ones stay until deleted.

create table doc_versions (
    id uuid primary key,
    doc_id uuid not null references documents (id) on delete cascade,
    created_at timestamptz not null,
    -- A name a person gave it; null for the unnamed.
    label text,
    -- Why it was kept: 'auto' (editing paused, or a long session), 'request', 'restore'.
    reason text not null check (reason in ('auto', 'request', 'restore')),
    -- Who edited since the version before: a JSON array of display names.
    editors text not null default '[]',
    -- The state (a Yjs v1 update of the whole document), zstd-compressed.
    state bytea not null,
    -- Its size before compression, for operators.
    state_bytes bigint not null
);

-- Keyset paging of a document's versions: newest first, ties broken by id.
create index doc_versions_doc_created on doc_versions (doc_id, created_at desc, id desc);
