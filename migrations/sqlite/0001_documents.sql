-- Documents, their append-only update log, and the snapshots that compact it.
-- Timestamps are integer microseconds since the Unix epoch (sortable, exact);
-- ids are uuid text; CRDT bytes are blobs.

create table documents (
    id text primary key not null,
    title text not null,
    created_at integer not null,
    updated_at integer not null
);

-- Keyset paging of the document list: newest first, ties broken by id.
create index documents_updated_at_id on documents (updated_at desc, id desc);

-- One row per applied batch entry. `seq` is the rowid, so it only grows.
create table doc_updates (
    seq integer primary key autoincrement,
    doc_id text not null references documents (id) on delete cascade,
    data blob not null,
    created_at integer not null
);

create index doc_updates_doc_id_seq on doc_updates (doc_id, seq);

-- The whole state of a document, covering every log entry with seq <= upto_seq.
create table doc_snapshots (
    doc_id text not null references documents (id) on delete cascade,
    upto_seq integer not null,
    state blob not null,
    created_at integer not null,
    primary key (doc_id, upto_seq)
);
