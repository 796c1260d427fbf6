-- Data keys: one per person whose personal data is sealed in events (see domain::privacy).
-- Never published, never in an event. Forgetting a person sets `data_key` to NULL for good:
-- the row stays, so that the person is known as forgotten and no new key is ever made for them.
CREATE TABLE person_keys (
    person_id    uuid        PRIMARY KEY,
    data_key     bytea,
    created_at   timestamptz NOT NULL DEFAULT now(),
    forgotten_at timestamptz,
    CHECK ((data_key IS NULL) = (forgotten_at IS NOT NULL)),
    CHECK (data_key IS NULL OR length(data_key) = 32)
);
