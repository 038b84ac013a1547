//! C-FIND's matches against the real database (NOCTIS_TEST_DATABASE_URL): taken from PostgreSQL as the
//! responses go out, never loaded whole, and a query stopped early is ended in PostgreSQL too.

mod common;

use std::collections::HashMap;
use std::time::{Duration, Instant};

use dicom_scp_server::config::Config;
use dicom_scp_server::query_retrieve::QueryRetrieve;

fn qr() -> QueryRetrieve {
    let env: HashMap<String, String> = [
        ("DATABASE_URL".to_string(), common::db_url()),
        ("WEBHOOK_SECRET".to_string(), "unused".to_string()),
    ]
    .into();
    QueryRetrieve::new(&Config::from_sources(None, &env).unwrap()).unwrap()
}

/// The states of the other backends whose query text holds `marker`.
async fn backends_running(marker: &str) -> Vec<String> {
    let (client, connection) = tokio_postgres::connect(&common::db_url(), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .query(
            "SELECT coalesce(state, '') FROM pg_stat_activity WHERE query LIKE $1 AND pid <> pg_backend_pid()",
            &[&format!("%{marker}%")],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test]
async fn matches_come_while_the_query_runs_and_an_early_stop_ends_it() {
    let qr = qr();
    let marker = format!("stream_{}", common::unique_uid().replace('.', "_"));
    // Far more rows than fit in memory, were they all loaded before the first response.
    // A set-returning function in the select list streams (in FROM it would be materialized first).
    let sql = format!("SELECT generate_series(1, 2000000000)::text AS {marker}");
    let mut matches = qr.matches(&sql, &[]).await.unwrap();
    for expected in ["1", "2", "3"] {
        assert_eq!(
            matches.next().await.unwrap(),
            Some(vec![Some(expected.to_string())])
        );
    }
    assert_eq!(backends_running(&marker).await, vec!["active".to_string()]);

    // A C-CANCEL or a closed association drops the matches: PostgreSQL stops producing them.
    drop(matches);
    let deadline = Instant::now() + Duration::from_secs(30);
    while !backends_running(&marker).await.is_empty() {
        assert!(
            Instant::now() < deadline,
            "the query still runs after its matches were dropped"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn every_match_comes_once_then_the_end() {
    let qr = qr();
    // More queries than the pool has connections: each one releases its connection when done.
    for _ in 0..6 {
        let mut matches = qr
            .matches(
                "SELECT g::text AS n, NULL::text FROM generate_series(1, 2500) g ORDER BY g",
                &[],
            )
            .await
            .unwrap();
        let mut n = 0;
        while let Some(row) = matches.next().await.unwrap() {
            n += 1;
            assert_eq!(row, vec![Some(n.to_string()), None]);
        }
        assert_eq!(n, 2500);
        assert_eq!(matches.next().await.unwrap(), None);
    }
}
