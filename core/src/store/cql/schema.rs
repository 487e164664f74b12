//! The CQL schema: `deploy/cql/NNN_*.cql`, applied in order and recorded
//! in the keyspace's `schema_version` table.

use scylla::client::session::Session;

use super::CqlError;

/// The schema files, in order: version `i + 1` is `SCHEMA[i]`.
pub const SCHEMA: &[(&str, &str)] = &[(
    "001_messages.cql",
    include_str!("../../../../deploy/cql/001_messages.cql"),
)];

/// The schema version this build reads and writes.
pub const VERSION: i32 = SCHEMA.len() as i32;

/// The statements of one file: split on `;`, comments dropped.
fn statements(file: &str) -> Vec<String> {
    let text: String = file
        .lines()
        .filter(|l| !l.trim_start().starts_with("--"))
        .collect::<Vec<_>>()
        .join("\n");
    text.split(';')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// Whether `name` can be a keyspace: CQL's unquoted identifier, at most 48
/// characters.
pub fn valid_keyspace(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

async fn ddl(session: &Session, statement: &str) -> Result<(), CqlError> {
    session
        .query_unpaged(statement, ())
        .await
        .map_err(|e| CqlError::Schema(format!("{statement}: {e}")))?;
    session
        .await_schema_agreement()
        .await
        .map_err(|e| CqlError::Schema(format!("schema agreement: {e}")))?;
    Ok(())
}

/// The version recorded in `keyspace`, `None` when it has no schema yet.
pub async fn version(session: &Session, keyspace: &str) -> Result<Option<i32>, CqlError> {
    let exists = session
        .query_unpaged(
            "SELECT table_name FROM system_schema.tables WHERE keyspace_name = ? AND table_name = 'schema_version'",
            (keyspace,),
        )
        .await
        .map_err(|e| CqlError::Schema(e.to_string()))?
        .into_rows_result()
        .map_err(|e| CqlError::Schema(e.to_string()))?
        .rows_num()
        > 0;
    if !exists {
        return Ok(None);
    }
    let rows = session
        .query_unpaged(
            format!("SELECT version FROM {keyspace}.schema_version WHERE id = 'postmesh'"),
            (),
        )
        .await
        .map_err(|e| CqlError::Schema(e.to_string()))?
        .into_rows_result()
        .map_err(|e| CqlError::Schema(e.to_string()))?;
    rows.maybe_first_row::<(i32,)>()
        .map(|r| r.map(|(v,)| v))
        .map_err(|e| CqlError::Schema(e.to_string()))
}

/// Creates `keyspace` (with `replication`, a CQL map such as
/// `{'class': 'NetworkTopologyStrategy', 'dc1': 3}`) if it does not exist
/// and applies the schema files it does not have yet. Idempotent. Returns
/// the version it is at; refuses a keyspace at a newer version than this
/// build knows.
pub async fn apply(session: &Session, keyspace: &str, replication: &str) -> Result<i32, CqlError> {
    if !valid_keyspace(keyspace) {
        return Err(CqlError::Keyspace(keyspace.to_owned()));
    }
    ddl(
        session,
        &format!("CREATE KEYSPACE IF NOT EXISTS {keyspace} WITH replication = {replication}"),
    )
    .await?;
    ddl(
        session,
        &format!(
            "CREATE TABLE IF NOT EXISTS {keyspace}.schema_version (id text PRIMARY KEY, version int)"
        ),
    )
    .await?;
    let at = version(session, keyspace).await?.unwrap_or(0);
    if at > VERSION {
        return Err(CqlError::NewerSchema {
            found: at,
            known: VERSION,
        });
    }
    for (i, (name, file)) in SCHEMA.iter().enumerate().skip(at as usize) {
        for s in statements(file) {
            // Tables are named without a keyspace in the files.
            let s = s.replacen(
                "CREATE TABLE IF NOT EXISTS ",
                &format!("CREATE TABLE IF NOT EXISTS {keyspace}."),
                1,
            );
            ddl(session, &s)
                .await
                .map_err(|e| CqlError::Schema(format!("{name}: {e}")))?;
        }
        session
            .query_unpaged(
                format!(
                    "INSERT INTO {keyspace}.schema_version (id, version) VALUES ('postmesh', ?)"
                ),
                (i as i32 + 1,),
            )
            .await
            .map_err(|e| CqlError::Schema(e.to_string()))?;
    }
    Ok(VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_split_into_statements() {
        let s = statements(SCHEMA[0].1);
        assert!(s.len() >= 8);
        assert!(
            s.iter()
                .all(|s| s.starts_with("CREATE TABLE IF NOT EXISTS "))
        );
    }

    #[test]
    fn keyspace_names() {
        assert!(valid_keyspace("postmesh_1"));
        for bad in ["", "1a", "a-b", "a;DROP", &"a".repeat(49)] {
            assert!(!valid_keyspace(bad), "{bad}");
        }
    }
}
