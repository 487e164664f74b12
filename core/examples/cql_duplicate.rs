//! What deciding `PutOutcome::Duplicate` costs on Cassandra, three ways,
//! in one run against a real node (`POSTMESH_CQL=host:port`):
//!
//! - `lwt`: `INSERT .. IF NOT EXISTS` on the UUID's row (the CQL store's
//!   choice: exact with any number of writers);
//! - `read-then-write`: `SELECT` the row, `INSERT` when absent (two
//!   writers may both read "absent");
//! - `best-effort`: a plain `INSERT` (no answer at all: every put would be
//!   "inserted").
//!
//! Each claims `N` fresh UUIDs (default 4000) with `C` in flight (default
//! 16) in a keyspace of its own, then claims the same UUIDs again (every
//! one a duplicate). Prints claims/s and latency percentiles per strategy.
//!
//! On a node of its own (not the one a test run shares), for example
//! `POSTMESH_CQL_HOST=127.0.0.7 POSTMESH_CQL_PORT=19542
//! POSTMESH_CASSANDRA_STORAGE_PORT=19543 POSTMESH_CASSANDRA_JMX_PORT=19544
//! deploy/cassandra.sh start`, then
//! `POSTMESH_CQL=127.0.0.7:19542 cargo run --release -p postmesh-core --example cql_duplicate`
//! (and `deploy/cassandra.sh stop` with the same settings). Figures:
//! bench/RESULTS.md.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::stream::{self, StreamExt};
use postmesh_core::store::cql;
use postmesh_schema::Uuid;
use scylla::client::session::Session;
use scylla::statement::prepared::PreparedStatement;
use scylla::value::CqlTimeuuid;

#[derive(Clone, Copy, Debug)]
enum Strategy {
    Lwt,
    ReadThenWrite,
    BestEffort,
}

struct Statements {
    lwt: PreparedStatement,
    read: PreparedStatement,
    write: PreparedStatement,
}

async fn claim(
    s: &Session,
    st: &Statements,
    how: Strategy,
    uuid: Uuid,
    cursor: CqlTimeuuid,
) -> bool {
    match how {
        Strategy::Lwt => {
            let r = s
                .execute_unpaged(&st.lwt, (uuid, cursor))
                .await
                .expect("LWT");
            let rows = r.into_rows_result().expect("rows");
            let (applied,) = rows
                .maybe_first_row::<(bool,)>()
                .ok()
                .flatten()
                .unwrap_or((false,));
            applied
        }
        Strategy::ReadThenWrite => {
            let r = s.execute_unpaged(&st.read, (uuid,)).await.expect("read");
            let present = r.into_rows_result().expect("rows").rows_num() > 0;
            if !present {
                s.execute_unpaged(&st.write, (uuid, cursor))
                    .await
                    .expect("write");
            }
            !present
        }
        Strategy::BestEffort => {
            s.execute_unpaged(&st.write, (uuid, cursor))
                .await
                .expect("write");
            true
        }
    }
}

fn pct(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() {
    let host = std::env::var("POSTMESH_CQL")
        .expect("POSTMESH_CQL=host:port: this measures a real Cassandra node");
    let n: usize = std::env::var("N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(4000);
    let c: usize = std::env::var("C")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(16);
    let session = Arc::new(cql::connect(&[host]).await.expect("the node answers"));
    let ks = format!("bench_duplicate_{}", std::process::id());
    session
        .query_unpaged(
            format!(
                "CREATE KEYSPACE IF NOT EXISTS {ks} WITH replication = \
                 {{'class': 'SimpleStrategy', 'replication_factor': 1}}"
            ),
            (),
        )
        .await
        .unwrap();
    println!("strategy\tphase\tclaims/s\tp50 ms\tp99 ms\tinserted");
    for how in [Strategy::Lwt, Strategy::ReadThenWrite, Strategy::BestEffort] {
        let table = format!("{ks}.ids_{how:?}").to_lowercase();
        session
            .query_unpaged(
                format!(
                    "CREATE TABLE IF NOT EXISTS {table} (uuid uuid PRIMARY KEY, cursor timeuuid)"
                ),
                (),
            )
            .await
            .unwrap();
        session.await_schema_agreement().await.unwrap();
        let st = Arc::new(Statements {
            lwt: session
                .prepare(format!(
                    "INSERT INTO {table} (uuid, cursor) VALUES (?, ?) IF NOT EXISTS"
                ))
                .await
                .unwrap(),
            read: session
                .prepare(format!("SELECT uuid FROM {table} WHERE uuid = ?"))
                .await
                .unwrap(),
            write: session
                .prepare(format!("INSERT INTO {table} (uuid, cursor) VALUES (?, ?)"))
                .await
                .unwrap(),
        });
        let stamper = postmesh_schema::Stamper::new(0);
        let ids: Vec<(Uuid, CqlTimeuuid)> = (0..n)
            .map(|_| (Uuid::new_v4(), CqlTimeuuid::from(*stamper.next().as_uuid())))
            .collect();
        for phase in ["fresh", "again"] {
            let t0 = Instant::now();
            let results: Vec<(Duration, bool)> = stream::iter(ids.iter().copied())
                .map(|(u, cur)| {
                    let (s, st) = (session.clone(), st.clone());
                    async move {
                        let t = Instant::now();
                        let inserted = claim(&s, &st, how, u, cur).await;
                        (t.elapsed(), inserted)
                    }
                })
                .buffer_unordered(c)
                .collect()
                .await;
            let secs = t0.elapsed().as_secs_f64();
            let inserted = results.iter().filter(|r| r.1).count();
            let mut lat: Vec<Duration> = results.into_iter().map(|r| r.0).collect();
            lat.sort();
            println!(
                "{how:?}\t{phase}\t{:.0}\t{:.2}\t{:.2}\t{inserted}",
                n as f64 / secs,
                pct(&lat, 0.5).as_secs_f64() * 1e3,
                pct(&lat, 0.99).as_secs_f64() * 1e3,
            );
        }
    }
    session
        .query_unpaged(format!("DROP KEYSPACE IF EXISTS {ks}"), ())
        .await
        .unwrap();
}
