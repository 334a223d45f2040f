-- Documents, their append-only update log, and the snapshots that compact it.
-- Timestamps are timestamptz; ids are uuid; CRDT bytes are bytea.

create table documents (
    id uuid primary key,
    title text not null,
    created_at timestamptz not null,
    updated_at timestamptz not null
);

-- Keyset paging of the document list: newest first, ties broken by id.
create index documents_updated_at_id on documents (updated_at desc, id desc);

-- One row per applied batch entry. `seq` comes from an identity so that several
-- writers (one per server instance, when scaled out) never collide.
create table doc_updates (
    doc_id uuid not null references documents (id) on delete cascade,
    seq bigint generated always as identity,
    data bytea not null,
    created_at timestamptz not null default now(),
    primary key (doc_id, seq)
);

-- The whole state of a document, covering every log entry with seq <= upto_seq.
create table doc_snapshots (
    doc_id uuid not null references documents (id) on delete cascade,
    upto_seq bigint not null,
    state bytea not null,
    created_at timestamptz not null default now(),
    primary key (doc_id, upto_seq)
);
