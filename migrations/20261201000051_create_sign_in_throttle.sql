-- Failed sign-ins, kept in Postgres so that every process of a deployment throttles alike.
-- One row per key: `ip:<address>` and `ip-account:<address>:<e-mail>` (the e-mail as typed,
-- normalised, whether or not an account holds it, so an unknown e-mail counts like a wrong
-- password). After the free attempts each failure blocks the key for a delay that doubles up to
-- a cap; a success deletes the IP-and-account row. A row untouched for a day starts over.
CREATE TABLE sign_in_throttle (
    key           text        PRIMARY KEY,
    failures      integer     NOT NULL,
    blocked_until timestamptz,
    updated_at    timestamptz NOT NULL DEFAULT now()
);
