-- Credentials live beside the events, never in them (DESIGN.md, Privacy): the events table is
-- append-only and published on NATS, so a password hash there could never be taken back.
-- A row is written in the registering command's transaction, like the e-mail claim.
--
-- `credential_version` is carried by every token (`cv`): a password change, an admin revoke or a
-- forget bumps it, and every token issued before is refused. A forgotten account keeps its row
-- (with no hash) so that its old tokens stay refused and it can never sign in again.
CREATE TABLE credentials (
    account_id         uuid        PRIMARY KEY,
    password_hash      text,
    credential_version integer     NOT NULL DEFAULT 1,
    forgotten_at       timestamptz,
    updated_at         timestamptz NOT NULL DEFAULT now()
);

-- Accounts registered before this table held their hash in AccountRegistered version 1: copy
-- it here. From now on the upcaster drops the field from those events whenever they are read.
INSERT INTO credentials (account_id, password_hash)
SELECT aggregate_id::uuid, payload -> 'AccountRegistered' ->> 'password_hash'
FROM events
WHERE aggregate_type = 'account'
  AND event_type = 'AccountRegistered'
  AND payload -> 'AccountRegistered' ? 'password_hash'
ON CONFLICT (account_id) DO NOTHING;

-- Copies of those events outside the append-only table lose the hash too: a snapshot of an
-- account's state held it (the state is rebuilt from the events), and so would a parked event.
DELETE FROM snapshots WHERE aggregate_type = 'account';
UPDATE dead_letters
SET payload = payload #- '{AccountRegistered,password_hash}'
WHERE aggregate_type = 'account' AND payload -> 'AccountRegistered' ? 'password_hash';
