-- accounts: each account as GET /v1/me and GET /v1/accounts/{id} show it. The e-mail and the
-- name are kept as the events hold them (sealed for the account, see domain::privacy) and opened
-- only when a response is built; once the account is forgotten they hold "forgotten" instead.
-- Built by the `accounts` projection from the start of the stream; on a deployment whose stream
-- no longer holds its first events, rebuild it (`commerce projections rebuild accounts`).
CREATE TABLE rm_accounts (
    account_id    uuid        PRIMARY KEY,
    role          text        NOT NULL,
    email         jsonb       NOT NULL,
    name          jsonb       NOT NULL,
    registered_at timestamptz NOT NULL,
    forgotten_at  timestamptz
);
