//! receipt.rs against the real table (a database migrated by Django: NOCTIS_TEST_DATABASE_URL), so column
//! drift fails here.

mod common;

use common::{db_url, receipts_for, runtime, unique_uid};
use dicom_scp_server::receipt::{self, Db, NewReceipt, ReceiptWriter};

fn new_receipt() -> NewReceipt {
    let (study, series, sop) = (unique_uid(), unique_uid(), unique_uid());
    NewReceipt {
        path: format!("{study}/{series}/{sop}.dcm"),
        sop_instance_uid: sop,
        sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
        study_instance_uid: study,
        series_instance_uid: series,
        transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
        size_bytes: 1234,
        sha256: "ab".repeat(32),
        calling_ae: "MOD".into(),
        called_ae: "NOCTIS".into(),
        attrs: r#"{"PatientName":"Doe^J","Modality":"CT"}"#.into(),
    }
}

#[test]
fn group_insert_writes_new_rows_and_skips_known_uids() {
    let db = Db::new(&db_url(), 2).unwrap();
    let (a, b, c) = (new_receipt(), new_receipt(), new_receipt());
    runtime().block_on(async {
        let first = receipt::receipts_insert(&db, std::slice::from_ref(&a))
            .await
            .unwrap();
        assert_eq!(first.len(), 1);
        let again = receipt::receipts_insert(&db, &[a.clone(), b.clone(), c.clone()])
            .await
            .unwrap();
        assert_eq!(again.len(), 2, "the known UID is skipped");
        assert!(again.contains_key(&b.sop_instance_uid) && again.contains_key(&c.sop_instance_uid));
        let pending = receipt::receipts_pending(&db).await.unwrap();
        assert!(
            pending.contains(&first[&a.sop_instance_uid]) && pending.contains(&again[&b.sop_instance_uid])
        );
    });
    let rows = receipts_for(&b.sop_instance_uid);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].cols["source"].as_deref(), Some("dimse"));
    assert_eq!(rows[0].cols["size_bytes"].as_deref(), Some("1234"));
    assert_eq!(rows[0].attrs["PatientName"], "Doe^J");
}

#[test]
fn concurrent_writer_inserts_each_get_their_own_id() {
    let db = Db::new(&db_url(), 2).unwrap();
    let receipts: Vec<NewReceipt> = (0..20).map(|_| new_receipt()).collect();
    let ids = runtime().block_on(async {
        let writer = ReceiptWriter::start(db);
        let tasks: Vec<_> = receipts
            .iter()
            .cloned()
            .map(|r| {
                let w = writer.clone();
                tokio::spawn(async move { w.receipt_insert(r).await })
            })
            .collect();
        let mut ids = vec![];
        for t in tasks {
            ids.push(t.await.unwrap().unwrap().expect("new row"));
        }
        // The same UID again: no new row.
        assert_eq!(writer.receipt_insert(receipts[0].clone()).await.unwrap(), None);
        ids
    });
    for (r, id) in receipts.iter().zip(&ids) {
        assert_eq!(receipts_for(&r.sop_instance_uid)[0].id, *id);
    }
}

#[test]
fn unreachable_database_is_an_error_not_a_hang() {
    let db = Db::new(common::CLOSED_DB_URL, 1).unwrap();
    let started = std::time::Instant::now();
    let result = runtime().block_on(receipt::database_ping(&db));
    assert!(result.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(12));
}
