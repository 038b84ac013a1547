//! receipt.rs and the durability barrier against the real table (a database migrated by Django: NOCTIS_TEST_DATABASE_URL), so column
//! drift fails here.

mod common;

use common::{db_url, receipts_for, runtime, unique_uid};
use std::path::{Path, PathBuf};

use dicom_scp_server::durability::{self, Barrier, PlaceRequest};
use dicom_scp_server::receipt::{self, Db, NewReceipt};

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
        digest: format!("blake3:{}", "ab".repeat(32)),
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

/// A temp file holding `body`, and the receipt for it (its path under `root`, its SHA-256).
fn new_instance(root: &Path, body: &[u8]) -> PlaceRequest {
    instance_at(root, body, false)
}

/// As new_instance; `early`: already renamed into place, as store.rs does when the path is free.
fn instance_at(root: &Path, body: &[u8], early: bool) -> PlaceRequest {
    let mut receipt = new_receipt();
    receipt.digest = common::file_digest(body);
    receipt.size_bytes = body.len() as i64;
    let temp = root.join(format!("{}.part", receipt.sop_instance_uid));
    std::fs::write(&temp, body).unwrap();
    let final_path = root.join(&receipt.path);
    if early {
        assert!(durability::file_place_early(&temp, &final_path).unwrap());
        assert!(final_path.is_file() && !temp.exists());
    }
    PlaceRequest {
        temp,
        final_path,
        receipt,
        early,
    }
}

/// One pass runs its barrier steps for these jobs; the answers, in order.
fn pass_answers(
    db: &Db,
    requests: Vec<PlaceRequest>,
) -> Vec<Result<durability::Placed, dicom_scp_server::error::StoreError>> {
    runtime().block_on(async {
        let mut jobs = vec![];
        let mut answers = vec![];
        for r in requests {
            let (tx, rx) = tokio::sync::oneshot::channel();
            jobs.push((r, tx));
            answers.push(rx);
        }
        durability::barrier_pass(db, jobs).await;
        let mut out = vec![];
        for a in answers {
            out.push(a.await.unwrap());
        }
        out
    })
}

#[test]
fn concurrent_barrier_places_each_get_their_own_id_and_file() {
    let db = Db::new(&db_url(), 2).unwrap();
    let root = tempfile::tempdir().unwrap();
    let requests: Vec<PlaceRequest> = (0..20)
        .map(|i| new_instance(root.path(), format!("instance {i}").as_bytes()))
        .collect();
    let expected: Vec<(String, PathBuf)> = requests
        .iter()
        .map(|r| (r.receipt.sop_instance_uid.clone(), r.final_path.clone()))
        .collect();
    let placed = runtime().block_on(async {
        let barrier = Barrier::start(db);
        let tasks: Vec<_> = requests
            .into_iter()
            .map(|r| {
                let b = barrier.clone();
                tokio::spawn(async move { b.instance_place(r).await })
            })
            .collect();
        let mut placed = vec![];
        for t in tasks {
            placed.push(t.await.unwrap().unwrap());
        }
        placed
    });
    for ((sop, path), p) in expected.iter().zip(&placed) {
        assert!(p.renamed);
        assert_eq!(receipts_for(sop)[0].id, p.receipt_id.expect("new row"));
        assert!(path.is_file(), "{}", path.display());
    }
}

/// One pass whose INSERT fails (one row's attrs are not JSON, so the whole statement fails): every store
/// of the pass is answered with the error, and none of their files stays.
#[test]
fn barrier_pass_whose_insert_fails_fails_every_store_and_leaves_no_file() {
    for early in [false, true] {
        insert_fails_leaves_no_file(early);
    }
}

fn insert_fails_leaves_no_file(early: bool) {
    let db = Db::new(&db_url(), 2).unwrap();
    let root = tempfile::tempdir().unwrap();
    let mut requests: Vec<PlaceRequest> = (0..3)
        .map(|i| instance_at(root.path(), format!("instance {i}").as_bytes(), early))
        .collect();
    requests[1].receipt.attrs = "not json".into();
    let finals: Vec<PathBuf> = requests.iter().map(|r| r.final_path.clone()).collect();
    let sops: Vec<String> = requests
        .iter()
        .map(|r| r.receipt.sop_instance_uid.clone())
        .collect();
    let answers = pass_answers(&db, requests);
    for (answer, (path, sop)) in answers.iter().zip(finals.iter().zip(&sops)) {
        let e = answer.as_ref().expect_err("the whole pass fails");
        assert!(
            e.to_string().contains("jsonb") || e.to_string().contains("json"),
            "{e}"
        );
        assert!(!path.exists(), "no file without its receipt: {}", path.display());
        assert!(receipts_for(sop).is_empty());
    }
}

/// The COMMIT itself fails (a deferred constraint trigger refuses these rows at commit time), after the
/// files were renamed into place and their folder fsynced: every store of the pass gets the error, every
/// renamed file is removed again, and no row stays.
#[test]
fn barrier_pass_whose_commit_fails_fails_every_store_and_leaves_no_file() {
    for early in [false, true] {
        commit_fails_leaves_no_file(early);
    }
}

fn commit_fails_leaves_no_file(early: bool) {
    let db = Db::new(&db_url(), 2).unwrap();
    let root = tempfile::tempdir().unwrap();
    let marker = format!("FAIL{}", &unique_uid().replace('.', "")[..10]);
    let function = format!("test_refuse_{}", marker.to_lowercase());
    common::db_execute(&format!(
        "CREATE FUNCTION {function}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
           IF NEW.calling_ae = '{marker}' THEN RAISE EXCEPTION 'refused at commit ({marker})'; END IF; \
           RETURN NULL; END $$; \
         CREATE CONSTRAINT TRIGGER {function} AFTER INSERT ON pacs_receipt \
           DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION {function}();"
    ));
    let mut requests: Vec<PlaceRequest> = (0..3)
        .map(|i| instance_at(root.path(), format!("instance {i}").as_bytes(), early))
        .collect();
    requests[2].receipt.calling_ae = marker.clone();
    let finals: Vec<PathBuf> = requests.iter().map(|r| r.final_path.clone()).collect();
    let sops: Vec<String> = requests
        .iter()
        .map(|r| r.receipt.sop_instance_uid.clone())
        .collect();
    let answers = pass_answers(&db, requests);
    common::db_execute(&format!(
        "DROP TRIGGER {function} ON pacs_receipt; DROP FUNCTION {function}();"
    ));
    for (answer, (path, sop)) in answers.iter().zip(finals.iter().zip(&sops)) {
        let e = answer.as_ref().expect_err("the whole pass fails");
        assert!(e.to_string().contains("refused at commit"), "{e}");
        assert_eq!(
            dicom_scp_server::status::for_store_error(e),
            dicom_scp_server::status::OUT_OF_RESOURCES
        );
        assert!(!path.exists(), "no file without its receipt: {}", path.display());
        assert!(receipts_for(sop).is_empty());
    }
    // The renamed files left their temp names too: nothing of the pass is anywhere.
    let left: Vec<_> = walk(root.path());
    assert!(left.is_empty(), "{left:?}");
}

/// A pass answers each store only once its row is committed (another connection sees it) and its file is
/// in place, whether the store placed the file itself or the pass does.
#[test]
fn barrier_pass_answers_a_store_once_its_row_is_committed_and_its_file_in_place() {
    for early in [false, true] {
        answers_after_commit(early);
    }
}

fn answers_after_commit(early: bool) {
    let db = Db::new(&db_url(), 2).unwrap();
    let root = tempfile::tempdir().unwrap();
    let requests: Vec<PlaceRequest> = (0..3)
        .map(|i| instance_at(root.path(), format!("instance {i}").as_bytes(), early))
        .collect();
    let finals: Vec<PathBuf> = requests.iter().map(|r| r.final_path.clone()).collect();
    let sops: Vec<String> = requests
        .iter()
        .map(|r| r.receipt.sop_instance_uid.clone())
        .collect();
    runtime().block_on(async {
        let mut jobs = vec![];
        let mut answers = vec![];
        for r in requests {
            let (tx, rx) = tokio::sync::oneshot::channel();
            jobs.push((r, tx));
            answers.push(rx);
        }
        let pass = tokio::spawn({
            let db = db.clone();
            async move { durability::barrier_pass(&db, jobs).await }
        });
        for (i, a) in answers.into_iter().enumerate() {
            let placed = a.await.unwrap().expect("stored");
            let sop = sops[i].clone();
            let rows = std::thread::spawn(move || receipts_for(&sop)).join().unwrap();
            assert_eq!(rows.len(), 1, "committed before the answer");
            assert_eq!(Some(rows[0].id), placed.receipt_id);
            assert!(placed.renamed && finals[i].is_file());
        }
        pass.await.unwrap();
    });
}

/// A SOP Instance UID that already has a receipt: the pass moves nothing and says so (receipt_id None),
/// leaving the temp file to the store.
#[test]
fn barrier_pass_leaves_a_known_instance_alone() {
    let db = Db::new(&db_url(), 2).unwrap();
    let root = tempfile::tempdir().unwrap();
    let first = new_instance(root.path(), b"first");
    let mut again = new_instance(root.path(), b"second");
    again.receipt.sop_instance_uid = first.receipt.sop_instance_uid.clone();
    again.final_path = first.final_path.clone();
    let temp = again.temp.clone();
    let sop = first.receipt.sop_instance_uid.clone();
    let answers = pass_answers(&db, vec![first]);
    let id = answers[0].as_ref().unwrap().receipt_id.expect("new row");
    let answers = pass_answers(&db, vec![again]);
    let placed = answers[0].as_ref().unwrap();
    assert_eq!((placed.receipt_id, placed.renamed), (None, false));
    assert!(temp.exists(), "the temp file is still the store's");
    let rows = receipts_for(&sop);
    assert_eq!((rows.len(), rows[0].id), (1, id));
}

/// Renamed early into a free path, but the SOP Instance UID has a receipt (under another series): the
/// pass renames the file back to its temp name and leaves it to the store, and the path is free again.
#[test]
fn barrier_pass_moves_an_early_known_instance_back() {
    let db = Db::new(&db_url(), 2).unwrap();
    let root = tempfile::tempdir().unwrap();
    let first = new_instance(root.path(), b"first");
    let sop = first.receipt.sop_instance_uid.clone();
    let answers = pass_answers(&db, vec![first]);
    let id = answers[0].as_ref().unwrap().receipt_id.expect("new row");
    let mut again = new_instance(root.path(), b"second, in another series");
    again.receipt.sop_instance_uid = sop.clone();
    let (study, series) = (unique_uid(), unique_uid());
    again.receipt.path = format!("{study}/{series}/{sop}.dcm");
    again.final_path = root.path().join(&again.receipt.path);
    assert!(durability::file_place_early(&again.temp, &again.final_path).unwrap());
    again.early = true;
    let (temp, final_path) = (again.temp.clone(), again.final_path.clone());
    let answers = pass_answers(&db, vec![again]);
    let placed = answers[0].as_ref().unwrap();
    assert_eq!((placed.receipt_id, placed.renamed), (None, false));
    assert_eq!(std::fs::read(&temp).unwrap(), b"second, in another series");
    assert!(!final_path.exists());
    let rows = receipts_for(&sop);
    assert_eq!((rows.len(), rows[0].id), (1, id));
}

/// Early placement never replaces: a taken path leaves the temp file where it is.
#[test]
fn early_placement_does_not_replace_a_file() {
    let root = tempfile::tempdir().unwrap();
    let first = instance_at(root.path(), b"first", true);
    let second = root.path().join("second.part");
    std::fs::write(&second, b"second").unwrap();
    assert!(!durability::file_place_early(&second, &first.final_path).unwrap());
    assert_eq!(std::fs::read(&first.final_path).unwrap(), b"first");
    assert_eq!(std::fs::read(&second).unwrap(), b"second");
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}

#[test]
fn unreachable_database_is_an_error_not_a_hang() {
    let db = Db::new(common::CLOSED_DB_URL, 1).unwrap();
    let started = std::time::Instant::now();
    let result = runtime().block_on(receipt::database_ping(&db));
    assert!(result.is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(12));
}
