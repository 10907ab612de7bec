-- The chat tables, laid out for how the server reads and writes them.
--
-- Integers: user ids, group ids and dead-letter ids are u64 on the wire; they are stored in
-- bigint by reinterpreting the bits (ids below 2^63 read the same in psql). Seqs, useqs and
-- times are plain non-negative bigints.
--
-- Free-form text a client chooses (bodies, group names, push platforms and tokens, and the
-- dead letters that carry them) is bytea: PostgreSQL text cannot hold U+0000, which JSON
-- can. Identifiers are text COLLATE "C", so they sort byte by byte as the other backends
-- sort them.

-- One row per conversation: its sequencer. `key` is the protocol's id (`d:LO:HI`,
-- `g:GROUP`); `id` is the compact handle every other table stores. An append takes this
-- row's lock (UPDATE ... RETURNING) before anything else, which serializes the sends of one
-- conversation and makes `seq` gap-free.
CREATE TABLE convs (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    key text COLLATE "C" NOT NULL UNIQUE,
    last_seq bigint NOT NULL,
    last_ts bigint NOT NULL
);

-- Each message once, clustered by conversation and seq. The primary key's order
-- (conv_id, seq) is the order of (conv, bucket, offset) with bucket = seq / 65536, so a
-- history page is one backward index range scan, newest first.
CREATE TABLE messages (
    conv_id bigint NOT NULL,
    seq bigint NOT NULL,
    sender bigint NOT NULL,
    ts bigint NOT NULL,
    client_id text COLLATE "C" NOT NULL,
    body bytea NOT NULL,
    PRIMARY KEY (conv_id, seq)
);

-- Per user: the last inbox position handed out. Appends lock these rows in ascending
-- user id order, after the conversation row, so two sends never wait on each other in a
-- cycle.
CREATE TABLE users (
    user_id bigint PRIMARY KEY,
    last_useq bigint NOT NULL
);

-- Each user's inbox: every message of every conversation they take part in, in `useq`
-- order, pointing at the stored message. `sync` reads it as one index range scan.
CREATE TABLE inbox (
    user_id bigint NOT NULL,
    useq bigint NOT NULL,
    conv_id bigint NOT NULL,
    seq bigint NOT NULL,
    PRIMARY KEY (user_id, useq)
);

-- Per (user, conversation): the cumulative markers, and what counts unread messages without
-- a scan (the user's newest own seq, and how many of their own messages are after `read`).
-- A row puts the conversation in the user's list.
CREATE TABLE marks (
    user_id bigint NOT NULL,
    conv_id bigint NOT NULL,
    ack bigint NOT NULL,
    read bigint NOT NULL,
    last_own bigint NOT NULL,
    own_after_read bigint NOT NULL,
    PRIMARY KEY (user_id, conv_id)
);

-- The outcome of the first send of each (sender, client message id). Written in the
-- append's own transaction, so a retry after a commit whose answer was lost finds it.
CREATE TABLE idem (
    user_id bigint NOT NULL,
    client_id text COLLATE "C" NOT NULL,
    conv_id bigint NOT NULL,
    seq bigint NOT NULL,
    useq bigint NOT NULL,
    ts bigint NOT NULL,
    PRIMARY KEY (user_id, client_id)
);

-- Groups with their members in ascending id order. Sends to a group and membership changes
-- both lock the group's row first, which orders them.
CREATE TABLE groups (
    id bigint PRIMARY KEY,
    name bytea NOT NULL,
    admin bigint NOT NULL,
    members bigint[] NOT NULL
);

-- Push registrations, one per device of a user.
CREATE TABLE pushes (
    user_id bigint NOT NULL,
    device text COLLATE "C" NOT NULL,
    platform bytea NOT NULL,
    token bytea NOT NULL,
    PRIMARY KEY (user_id, device)
);

-- Pushes that failed for good, for an operator to replay.
CREATE TABLE dead_letters (
    id bigint PRIMARY KEY,
    payload bytea NOT NULL,
    error bytea NOT NULL,
    ts bigint NOT NULL
);

-- Gap-free id counters (a sequence would skip the ids of rolled-back transactions).
CREATE TABLE counters (
    name text COLLATE "C" PRIMARY KEY,
    value bigint NOT NULL
);

INSERT INTO counters (name, value) VALUES ('last_group', 0), ('last_dead_letter', 0);
