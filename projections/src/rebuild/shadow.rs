//! The shadow tables a rebuild fills: made like the live ones, filled through the projection's
//! own statements (`search_path`), then swapped in.

use anyhow::Context;
use sqlx::PgConnection;

/// The table a rebuild's parked events go to, merged into the live one at the swap.
const DEAD_LETTERS: &str = "dead_letters";

/// The shadow schema of one projection.
#[derive(Debug, Clone)]
pub(crate) struct Shadow {
    /// Quoted, ready for SQL.
    schema: String,
    /// Where the old tables go for the instant of the swap.
    retired: String,
    tables: &'static [&'static str],
}

impl Shadow {
    pub(crate) fn new(projection: &str, tables: &'static [&'static str]) -> Self {
        // Projection names are `[A-Za-z0-9_-]`: quoting is enough.
        Self {
            schema: format!("\"rebuild_{projection}\""),
            retired: format!("\"rebuild_{projection}_retired\""),
            tables,
        }
    }

    /// Sends the projection's unqualified statements to the shadow tables for the rest of the
    /// transaction (tables it does not own still resolve to `public`), and lets it commit
    /// without waiting for the WAL flush: a batch lost to a Postgres crash is lost with its
    /// checkpoint, and done again.
    pub(crate) async fn route_writes(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query(
            "SELECT set_config('search_path', $1 || ', public', true), \
                    set_config('synchronous_commit', 'off', true)",
        )
        .bind(&self.schema)
        .execute(&mut *conn)
        .await
        .context("routing the projection's writes to its shadow tables")?;
        Ok(())
    }

    /// Creates the schema anew with empty copies of the tables (and of `dead_letters`): columns,
    /// defaults, checks and generated columns, and the primary key and unique constraints the
    /// projection's upserts rely on. The other indexes come with [`Self::finish_indexes`]. They
    /// are unlogged until then: the bulk phase writes no WAL.
    pub(crate) async fn create(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema))
            .execute(&mut *conn)
            .await
            .context("dropping a leftover shadow schema")?;
        sqlx::query(&format!("CREATE SCHEMA {}", self.schema))
            .execute(&mut *conn)
            .await
            .context("creating the shadow schema")?;
        for table in self.tables.iter().chain([&DEAD_LETTERS]) {
            sqlx::query(&format!(
                "CREATE UNLOGGED TABLE {schema}.{table} (LIKE public.{table} INCLUDING DEFAULTS \
                 INCLUDING CONSTRAINTS INCLUDING GENERATED INCLUDING IDENTITY INCLUDING STORAGE)",
                schema = self.schema
            ))
            .execute(&mut *conn)
            .await
            .with_context(|| format!("creating the shadow of {table}"))?;
            let constraints: Vec<(String, String)> = sqlx::query_as(
                "SELECT conname::text, pg_get_constraintdef(oid) FROM pg_constraint \
                 WHERE conrelid = ('public.' || $1)::regclass AND contype IN ('p', 'u', 'x') \
                 ORDER BY contype, conname",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .context("reading a table's keys")?;
            for (name, definition) in constraints {
                sqlx::query(&format!(
                    "ALTER TABLE {}.{table} ADD CONSTRAINT \"{name}\" {definition}",
                    self.schema
                ))
                .execute(&mut *conn)
                .await
                .with_context(|| format!("adding {name} to the shadow of {table}"))?;
            }
        }
        Ok(())
    }

    /// Whether the schema is there (a resumed rebuild expects it).
    pub(crate) async fn exists(&self, conn: &mut PgConnection) -> anyhow::Result<bool> {
        sqlx::query_scalar("SELECT to_regnamespace($1) IS NOT NULL")
            .bind(&self.schema)
            .fetch_one(&mut *conn)
            .await
            .context("looking for the shadow schema")
    }

    /// Builds the live tables' other indexes on the shadows, under the same names (each in one
    /// pass over the loaded rows, cheaper than maintaining it row by row), makes the shadows
    /// logged (one sequential copy into the WAL, which replicas need before the swap), and
    /// analyses them so the planner knows their size before readers meet them. Idempotent, for
    /// a resumed rebuild.
    pub(crate) async fn finish_indexes(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        sqlx::query(&format!(
            "ALTER TABLE {}.{DEAD_LETTERS} SET LOGGED",
            self.schema
        ))
        .execute(&mut *conn)
        .await
        .context("logging the shadow dead letters")?;
        for table in self.tables {
            let definitions: Vec<String> = sqlx::query_scalar(
                "SELECT pg_get_indexdef(i.indexrelid) FROM pg_index i \
                 WHERE i.indrelid = ('public.' || $1)::regclass \
                   AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.indexrelid) \
                 ORDER BY i.indexrelid",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .context("reading a table's indexes")?;
            // Logged first: SET LOGGED rewrites the table and rebuilds every index it has.
            sqlx::query(&format!("ALTER TABLE {}.{table} SET LOGGED", self.schema))
                .execute(&mut *conn)
                .await
                .context("logging a shadow table")?;
            for definition in definitions {
                let shadow =
                    retarget_index(&definition, table, &self.schema).with_context(|| {
                        format!("an index definition of {table} not understood: {definition}")
                    })?;
                sqlx::query(&shadow)
                    .execute(&mut *conn)
                    .await
                    .with_context(|| format!("building an index of the shadow of {table}"))?;
            }
            sqlx::query(&format!("ANALYZE {}.{table}", self.schema))
                .execute(&mut *conn)
                .await
                .context("analysing a shadow table")?;
        }
        Ok(())
    }

    /// Replaces the projection's dead letters (still parked) with the rebuild's: every event
    /// the old ones stood for was applied again by the rebuild, or parked again.
    pub(crate) async fn replace_dead_letters(
        &self,
        conn: &mut PgConnection,
        projection: &str,
    ) -> anyhow::Result<u64> {
        sqlx::query(
            "DELETE FROM public.dead_letters d WHERE d.projection = $1 AND d.retried_at IS NULL \
             AND NOT EXISTS (SELECT 1 FROM stuck_sagas s WHERE s.dead_letter_id = d.id)",
        )
        .bind(projection)
        .execute(&mut *conn)
        .await
        .context("clearing the projection's dead letters")?;
        let moved = sqlx::query(&format!(
            "INSERT INTO public.dead_letters SELECT * FROM {}.dead_letters \
             ON CONFLICT (projection, aggregate_type, aggregate_id, sequence) DO UPDATE SET \
               error = EXCLUDED.error, attempts = EXCLUDED.attempts, \
               parked_at = EXCLUDED.parked_at, retried_at = NULL",
            self.schema
        ))
        .execute(&mut *conn)
        .await
        .context("moving the rebuild's dead letters")?;
        Ok(moved.rows_affected())
    }

    /// Moves the live tables out and the shadows in, then drops the old ones. Sequences owned by
    /// a live column (a `bigserial`) stay in `public` and pass to the new column, so ids keep
    /// growing. Run it last in the swap's transaction: it takes each table's exclusive lock.
    pub(crate) async fn swap(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        self.drop_with(conn, &self.retired).await?;
        sqlx::query(&format!("CREATE SCHEMA {}", self.retired))
            .execute(&mut *conn)
            .await
            .context("making room for the old tables")?;
        for table in self.tables {
            let owned: Vec<(String, String)> = sqlx::query_as(
                "SELECT a.attname::text, pg_get_serial_sequence('public.' || $1, a.attname) \
                 FROM pg_attribute a \
                 WHERE a.attrelid = ('public.' || $1)::regclass AND a.attnum > 0 \
                   AND NOT a.attisdropped \
                   AND pg_get_serial_sequence('public.' || $1, a.attname) IS NOT NULL",
            )
            .bind(table)
            .fetch_all(&mut *conn)
            .await
            .context("reading a table's owned sequences")?;
            for (_, sequence) in &owned {
                sqlx::query(&format!("ALTER SEQUENCE {sequence} OWNED BY NONE"))
                    .execute(&mut *conn)
                    .await
                    .context("keeping a sequence")?;
            }
            for (from, to) in [
                ("public", self.retired.as_str()),
                (self.schema.as_str(), "public"),
            ] {
                sqlx::query(&format!("ALTER TABLE {from}.{table} SET SCHEMA {to}"))
                    .execute(&mut *conn)
                    .await
                    .with_context(|| format!("swapping {table}"))?;
            }
            for (column, sequence) in &owned {
                sqlx::query(&format!(
                    "ALTER SEQUENCE {sequence} OWNED BY public.{table}.\"{column}\""
                ))
                .execute(&mut *conn)
                .await
                .context("handing a sequence to the new table")?;
            }
        }
        self.drop_with(conn, &self.retired).await?;
        self.drop(conn).await
    }

    /// Drops the shadow schema and everything in it (a cancelled or finished rebuild).
    pub(crate) async fn drop(&self, conn: &mut PgConnection) -> anyhow::Result<()> {
        self.drop_with(conn, &self.schema).await
    }

    async fn drop_with(&self, conn: &mut PgConnection, schema: &str) -> anyhow::Result<()> {
        sqlx::query(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
            .execute(&mut *conn)
            .await
            .context("dropping a rebuild schema")?;
        Ok(())
    }
}

/// `CREATE [UNIQUE] INDEX name ON public.table …` as `CREATE [UNIQUE] INDEX IF NOT EXISTS name
/// ON schema.table …`.
fn retarget_index(definition: &str, table: &str, schema: &str) -> Option<String> {
    let on_live = format!(" ON public.{table} ");
    let at = definition.find(&on_live)?;
    let (head, tail) = definition.split_at(at);
    let head = head.replacen(" INDEX ", " INDEX IF NOT EXISTS ", 1);
    let tail = &tail[on_live.len()..];
    Some(format!("{head} ON {schema}.{table} {tail}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_is_retargeted_at_the_shadow_table_under_its_own_name() {
        assert_eq!(
            retarget_index(
                "CREATE INDEX rm_orders_buyer ON public.rm_orders USING btree (buyer_id, placed_at DESC)",
                "rm_orders",
                "\"rebuild_orders\""
            )
            .as_deref(),
            Some(
                "CREATE INDEX IF NOT EXISTS rm_orders_buyer ON \"rebuild_orders\".rm_orders USING btree (buyer_id, placed_at DESC)"
            )
        );
        assert_eq!(
            retarget_index(
                "CREATE INDEX x ON public.rm_orders_other USING btree (a)",
                "rm_orders",
                "s"
            ),
            None
        );
    }
}
