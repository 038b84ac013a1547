//! Black-box tests of the SCP binary: real dcmtk peers, a real PostgreSQL migrated by Django
//! (NOCTIS_TEST_DATABASE_URL), a temp STORAGE_ROOT, and a fake Django webhook.

mod common;

use std::time::Duration;

use common::*;
use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_object::InMemDicomObject;
use dicom_ul::pdu::{PDataValue, PDataValueType};
use dicom_ul::{ClientAssociationOptions, Pdu};

#[test]
fn echo_succeeds_and_wrong_called_ae_is_rejected() {
    let scp = Scp::start(ScpOptions::new(CLOSED_DB_URL));
    let port = scp.port();
    let ok = dcmtk("echoscu", &["-aec", "NOCTIS", "127.0.0.1", &port]);
    assert!(ok.status.success(), "{}", text(&ok));
    let wrong = dcmtk("echoscu", &["-v", "-aec", "WRONG", "127.0.0.1", &port]);
    assert!(!wrong.status.success());
    let out = text(&wrong);
    assert!(out.contains("Rejected Permanent"), "{out}");
    assert!(out.contains("Called AE Title Not Recognized"), "{out}");
    // The database is down: health says so, by name.
    let (code, body) = http_get(scp.http, "/health");
    assert_eq!(code, 503, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["storage"], "ok");
    assert_ne!(v["database"], "ok");
    let opts = ScpOptions::new(CLOSED_DB_URL).env("SCP_HTTP_PORT", &scp.http.port().to_string());
    let probe = scp_command(&opts, &scp.storage)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert_eq!(probe.status.code(), Some(1), "{}", text(&probe));
}

#[test]
fn store_writes_file_and_receipt() {
    stores_file_and_receipt(Scp::start(ScpOptions::new(&db_url())));
}

/// The same through the page cache (SCP_DIRECT_IO=false, as where a file system refuses O_DIRECT).
#[test]
fn store_writes_file_and_receipt_without_direct_io() {
    stores_file_and_receipt(Scp::start(
        ScpOptions::new(&db_url()).env("SCP_DIRECT_IO", "false"),
    ));
}

fn stores_file_and_receipt(scp: Scp) {
    let dir = tempfile::tempdir().unwrap();
    let a = Instance::ct();
    let mut b = Instance::ct();
    b.transfer_syntax = IMPLICIT_VR_LE.into();
    let (fa, fb) = (a.write(dir.path()), b.write(dir.path()));
    let (code, out) = storescu(&scp, &[&fa]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(store_responses(&out), vec!["Success"], "{out}");
    // Implicit VR LE offered alone, so storescu sends the file as it is (the SCP never transcodes).
    let (code, out) = storescu_with(&scp, &["-xi"], &[&fb]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(store_responses(&out), vec!["Success"], "{out}");

    for (inst, sent) in [(&a, &fa), (&b, &fb)] {
        let stored = scp.storage.join(inst.relpath());
        assert!(stored.is_file(), "missing {}", stored.display());
        assert_eq!(
            dataset_bytes(&stored),
            dataset_bytes(sent),
            "data set stored exactly as sent"
        );
        let meta = dicom_object::OpenFileOptions::new()
            .read_until(dicom_dictionary_std::tags::PIXEL_DATA)
            .open_file(&stored)
            .unwrap();
        assert_eq!(meta.meta().media_storage_sop_instance_uid(), inst.sop());
        assert_eq!(meta.meta().transfer_syntax(), inst.transfer_syntax);
        assert_eq!(
            meta.meta()
                .source_application_entity_title
                .as_deref()
                .map(str::trim),
            Some("TESTSCU")
        );

        let rows = receipts_for(inst.sop());
        assert_eq!(rows.len(), 1);
        let r = &rows[0];
        let col = |c: &str| r.cols[c].clone();
        assert_eq!(col("sop_class_uid").as_deref(), Some(CT_IMAGE_STORAGE));
        assert_eq!(col("study_instance_uid").as_deref(), Some(inst.study.as_str()));
        assert_eq!(col("series_instance_uid").as_deref(), Some(inst.series.as_str()));
        assert_eq!(
            col("transfer_syntax_uid").as_deref(),
            Some(inst.transfer_syntax.as_str())
        );
        assert_eq!(col("path").as_deref(), Some(inst.relpath().as_str()));
        let bytes = std::fs::read(&stored).unwrap();
        assert_eq!(col("size_bytes"), Some(bytes.len().to_string()));
        assert_eq!(col("digest"), Some(file_digest(&bytes)));
        assert_eq!(col("calling_ae").as_deref(), Some("TESTSCU"));
        assert_eq!(col("called_ae").as_deref(), Some("NOCTIS"));
        assert_eq!(col("source").as_deref(), Some("dimse"));
        assert!(col("received_at").is_some());
        assert_eq!(col("indexed_at"), None);
        assert_eq!(col("index_attempts").as_deref(), Some("0"));
        assert_eq!(r.attrs["PatientName"], "Doe^Jane");
        assert_eq!(r.attrs["PatientID"], "PID-1");
        assert_eq!(r.attrs["Modality"], "CT");
        assert_eq!(r.attrs["ImageType"], "ORIGINAL\\PRIMARY\\AXIAL");
        assert_eq!(r.attrs["PixelSpacing"], "0.5\\0.5");
        assert_eq!(r.attrs["Rows"], "4");
        assert_eq!(r.attrs["InstanceNumber"], "7");
        assert!(
            r.attrs.get("AccessionNumber").is_none(),
            "absent attributes are omitted"
        );
        assert_eq!(r.attrs.as_object().unwrap().len(), 11, "{}", r.attrs);
    }
    assert!(scp.incoming_files().is_empty());
}

/// A header longer than the first bytes the writer keeps in memory (here a 200 KB private element before
/// the pixel data): identity and attributes are read back from the temp file, and the store is the same.
#[test]
fn long_header_is_parsed_from_the_file() {
    let scp = Scp::start(ScpOptions::new(&db_url()));
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::ct();
    let mut obj = inst.dataset();
    obj.put(DataElement::new(
        dicom_core::Tag(0x0029, 0x0010),
        VR::LO,
        PrimitiveValue::from("NOCTIS TEST"),
    ));
    obj.put(DataElement::new(
        dicom_core::Tag(0x0029, 0x1010),
        VR::OB,
        PrimitiveValue::from(vec![7u8; 200_000]),
    ));
    let sent = inst.write_dataset(dir.path(), obj);
    let (code, out) = storescu(&scp, &[&sent]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(store_responses(&out), vec!["Success"], "{out}");
    let stored = scp.storage.join(inst.relpath());
    assert_eq!(dataset_bytes(&stored), dataset_bytes(&sent));
    let rows = receipts_for(inst.sop());
    assert_eq!(rows.len(), 1);
    assert_eq!(
        rows[0].cols["series_instance_uid"].as_deref(),
        Some(inst.series.as_str())
    );
    assert_eq!(rows[0].attrs["PatientName"], "Doe^Jane");
    assert_eq!(rows[0].attrs["InstanceNumber"], "7");
    assert!(scp.incoming_files().is_empty());
}

#[test]
fn same_instance_twice_is_one_file_and_one_row() {
    let scp = Scp::start(ScpOptions::new(&db_url()));
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::ct();
    let f = inst.write(dir.path());
    for _ in 0..2 {
        let (code, out) = storescu(&scp, &[&f]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(store_responses(&out), vec!["Success"], "{out}");
    }
    assert_eq!(scp.stored_files(), vec![scp.storage.join(inst.relpath())]);
    assert_eq!(receipts_for(inst.sop()).len(), 1);

    // Different content under the same SOP Instance UID: the first stays (SCP_ON_CONFLICT=keep).
    let before = std::fs::read(scp.storage.join(inst.relpath())).unwrap();
    let mut changed = inst.clone();
    changed.patient_name = "Other^Name".into();
    let f2 = changed.write(dir.path());
    let (code, out) = storescu(&scp, &[&f2]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(store_responses(&out), vec!["Success"], "{out}");
    assert_eq!(std::fs::read(scp.storage.join(inst.relpath())).unwrap(), before);
    let rows = receipts_for(inst.sop());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].attrs["PatientName"], "Doe^Jane");
}

/// The same instance from several associations at once: the stores of one SOP Instance UID take turns (a
/// writer that finds the UID's lock taken leaves the placing to its association's task, which waits), and
/// every sender gets Success for one file and one receipt.
#[test]
fn same_instance_from_parallel_associations_is_one_file_and_one_row() {
    let scp = Scp::start(ScpOptions::new(&db_url()));
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::ct();
    let f = inst.write(dir.path());
    let answers: Vec<(i32, String)> = std::thread::scope(|scope| {
        let senders: Vec<_> = (0..6).map(|_| scope.spawn(|| storescu(&scp, &[&f]))).collect();
        senders.into_iter().map(|s| s.join().unwrap()).collect()
    });
    for (code, out) in answers {
        assert_eq!(code, 0, "{out}");
        assert_eq!(store_responses(&out), vec!["Success"], "{out}");
    }
    assert_eq!(scp.stored_files(), vec![scp.storage.join(inst.relpath())]);
    assert_eq!(receipts_for(inst.sop()).len(), 1);
    assert!(scp.incoming_files().is_empty());
}

#[test]
fn overwrite_policy_replaces_file_and_receipt() {
    let scp = Scp::start(ScpOptions::new(&db_url()).env("SCP_ON_CONFLICT", "overwrite"));
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::ct();
    let (code, out) = storescu(&scp, &[&inst.write(dir.path())]);
    assert_eq!(code, 0, "{out}");
    let first_id = receipts_for(inst.sop())[0].id;
    db_execute(&format!(
        "UPDATE pacs_receipt SET indexed_at = now() WHERE id = {first_id}"
    ));
    let mut changed = inst.clone();
    changed.patient_name = "Other^Name".into();
    let f2 = changed.write(dir.path());
    let (code, out) = storescu(&scp, &[&f2]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(store_responses(&out), vec!["Success"], "{out}");
    assert_eq!(
        dataset_bytes(&scp.storage.join(inst.relpath())),
        dataset_bytes(&f2)
    );
    let rows = receipts_for(inst.sop());
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].id, first_id);
    assert_eq!(rows[0].attrs["PatientName"], "Other^Name");
    assert_eq!(rows[0].cols["indexed_at"], None, "indexing starts over");
    let bytes = std::fs::read(scp.storage.join(inst.relpath())).unwrap();
    assert_eq!(rows[0].cols["digest"], Some(file_digest(&bytes)));
    assert_eq!(scp.stored_files().len(), 1);
}

#[test]
fn bad_uids_fail_and_leave_nothing_and_the_association_goes_on() {
    let scp = Scp::start(ScpOptions::new(&db_url()));
    let dir = tempfile::tempdir().unwrap();
    let mut traversal = Instance::ct();
    traversal.study = "../x".into();
    let mut too_long = Instance::ct();
    too_long.series = format!("1.{}", "2".repeat(63));
    assert_eq!(too_long.series.len(), 65);
    let mut letters = Instance::ct();
    letters.study = "1.2.abc".into();
    let good = Instance::ct();
    let files: Vec<_> = [&traversal, &too_long, &letters, &good]
        .iter()
        .map(|i| i.write(dir.path()))
        .collect();
    let refs: Vec<&std::path::Path> = files.iter().map(|p| p.as_path()).collect();
    let (_code, out) = storescu(&scp, &refs);
    let responses = store_responses(&out);
    assert_eq!(responses.len(), 4, "{out}");
    for r in &responses[..3] {
        assert_eq!(r, "Error: CannotUnderstand", "{out}");
    }
    assert_eq!(responses[3], "Success");
    for bad in [&traversal, &too_long, &letters] {
        assert!(receipts_for(bad.sop()).is_empty());
    }
    assert_eq!(scp.stored_files(), vec![scp.storage.join(good.relpath())]);
    assert!(!scp.storage.join("x").exists() && !scp.storage.parent().unwrap().join("x").exists());
    assert!(scp.incoming_files().is_empty());
    assert_eq!(receipts_for(good.sop()).len(), 1);
}

/// A raw SCU (dicom-ul client) for what storescu refuses to send: data sets whose SOP Instance UID is
/// missing or differs from the command's.
fn raw_association(scp: &Scp) -> dicom_ul::ClientAssociation<std::net::TcpStream> {
    ClientAssociationOptions::new()
        .calling_ae_title("RAWSCU")
        .called_ae_title("NOCTIS")
        .with_presentation_context(CT_IMAGE_STORAGE, vec![IMPLICIT_VR_LE])
        .establish(scp.dicom)
        .unwrap()
}

fn raw_store(scp: &Scp, cases: &[(String, InMemDicomObject)]) -> Vec<u16> {
    let mut assoc = raw_association(scp);
    let statuses = raw_store_on(&mut assoc, cases);
    assoc.release().unwrap();
    statuses
}

fn raw_store_on(
    assoc: &mut dicom_ul::ClientAssociation<std::net::TcpStream>,
    cases: &[(String, InMemDicomObject)],
) -> Vec<u16> {
    let pcid = assoc.presentation_contexts()[0].id;
    let ts = dicom_transfer_syntax_registry::entries::IMPLICIT_VR_LITTLE_ENDIAN.erased();
    let mut statuses = vec![];
    for (i, (affected_sop, dataset)) in cases.iter().enumerate() {
        let mut cmd = InMemDicomObject::new_empty();
        cmd.put(DataElement::new(
            dicom_core::Tag(0, 0x0002),
            VR::UI,
            PrimitiveValue::from(CT_IMAGE_STORAGE),
        ));
        cmd.put(DataElement::new(
            dicom_core::Tag(0, 0x0100),
            VR::US,
            PrimitiveValue::from(0x0001u16),
        ));
        cmd.put(DataElement::new(
            dicom_core::Tag(0, 0x0110),
            VR::US,
            PrimitiveValue::from(i as u16 + 1),
        ));
        cmd.put(DataElement::new(
            dicom_core::Tag(0, 0x0700),
            VR::US,
            PrimitiveValue::from(0u16),
        ));
        cmd.put(DataElement::new(
            dicom_core::Tag(0, 0x0800),
            VR::US,
            PrimitiveValue::from(0x0000u16),
        ));
        cmd.put(DataElement::new(
            dicom_core::Tag(0, 0x1000),
            VR::UI,
            PrimitiveValue::from(affected_sop.as_str()),
        ));
        let mut body = vec![];
        cmd.write_dataset_with_ts(&mut body, &ts).unwrap();
        let mut command = vec![0, 0, 0, 0, 4, 0, 0, 0];
        command.extend_from_slice(&(body.len() as u32).to_le_bytes());
        command.extend_from_slice(&body);
        let mut data = vec![];
        dataset.write_dataset_with_ts(&mut data, &ts).unwrap();
        for (value_type, bytes) in [(PDataValueType::Command, command), (PDataValueType::Data, data)] {
            assoc
                .send(&Pdu::PData {
                    data: vec![PDataValue {
                        presentation_context_id: pcid,
                        value_type,
                        is_last: true,
                        data: bytes,
                    }],
                })
                .unwrap();
        }
        let Pdu::PData { data } = assoc.receive().unwrap() else {
            panic!("expected P-DATA")
        };
        let rsp = InMemDicomObject::read_dataset_with_ts(&data[0].data[..], &ts).unwrap();
        statuses.push(
            rsp.element(dicom_core::Tag(0, 0x0900))
                .unwrap()
                .to_int::<u16>()
                .unwrap(),
        );
    }
    statuses
}

#[test]
fn missing_or_mismatched_sop_instance_fails_without_trace() {
    let scp = Scp::start(ScpOptions::new(&db_url()));
    let mut missing = Instance::ct();
    missing.sop_instance = None;
    let missing_cmd_uid = unique_uid();
    let mismatch = Instance::ct();
    let other_uid = unique_uid();
    let good = Instance::ct();
    let statuses = raw_store(
        &scp,
        &[
            (missing_cmd_uid.clone(), missing.dataset()),
            (other_uid.clone(), mismatch.dataset()),
            (good.sop().to_string(), good.dataset()),
        ],
    );
    assert_eq!(statuses[0] & 0xF000, 0xC000, "{:#06x}", statuses[0]);
    assert_eq!(statuses[1] & 0xFF00, 0xA900, "{:#06x}", statuses[1]);
    assert_eq!(statuses[2], 0x0000);
    for uid in [&missing_cmd_uid, &other_uid, &mismatch.sop().to_string()] {
        assert!(receipts_for(uid).is_empty());
    }
    assert_eq!(scp.stored_files(), vec![scp.storage.join(good.relpath())]);
    assert!(scp.incoming_files().is_empty());
}

#[test]
fn database_down_answers_out_of_resources_and_leaves_no_file() {
    let scp = Scp::start(ScpOptions::new(CLOSED_DB_URL));
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::ct();
    let (_code, out) = storescu(&scp, &[&inst.write(dir.path())]);
    let responses = store_responses(&out);
    assert_eq!(responses.len(), 1, "{out}");
    assert_eq!(responses[0], "Refused: OutOfResources", "{out}");
    assert!(scp.stored_files().is_empty(), "{:?}", scp.stored_files());
    assert!(scp.incoming_files().is_empty());
}

#[test]
fn webhook_gets_signed_batch() {
    let django = FakeDjango::start(vec![]);
    let scp = Scp::start(ScpOptions::new(&db_url()).webhook(&django.url));
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (Instance::ct(), Instance::ct());
    let (code, out) = storescu(&scp, &[&a.write(dir.path()), &b.write(dir.path())]);
    assert_eq!(code, 0, "{out}");
    let ids = [receipts_for(a.sop())[0].id, receipts_for(b.sop())[0].id];
    let hooks = django.wait_for_ids(&ids, Duration::from_secs(10));
    let contract: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../tests/contracts/hmac.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let ts_header = contract["timestamp_header"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    let sig_header = contract["signature_header"]
        .as_str()
        .unwrap()
        .to_ascii_lowercase();
    for hook in &hooks {
        let ts: u64 = hook.headers[&ts_header].parse().unwrap();
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs();
        assert!(now.abs_diff(ts) <= contract["max_skew_seconds"].as_u64().unwrap());
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        mac.update(format!("{ts}.{}", hook.body).as_bytes());
        let expected: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(hook.headers[&sig_header], format!("sha256={expected}"));
        let v: serde_json::Value = serde_json::from_str(&hook.body).unwrap();
        assert_eq!(
            v.as_object().unwrap().keys().collect::<Vec<_>>(),
            vec!["receipt_ids"]
        );
        assert!(!hook.body.contains(' '), "compact body: {}", hook.body);
    }
    let (code, body) = http_get(scp.http, "/metrics");
    assert_eq!(code, 200);
    assert!(body.contains("noctis_scp_stores_ok_total 2"), "{body}");
}

#[test]
fn webhook_is_retried_until_2xx() {
    let django = FakeDjango::start(vec![500, 503]);
    let scp = Scp::start(ScpOptions::new(&db_url()).webhook(&django.url));
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::ct();
    let (code, out) = storescu(&scp, &[&inst.write(dir.path())]);
    assert_eq!(code, 0, "{out}");
    let id = receipts_for(inst.sop())[0].id;
    let hooks = django.wait_for_ids(&[id], Duration::from_secs(10));
    let codes: Vec<u16> = hooks.iter().map(|h| h.code).collect();
    assert!(
        codes.len() >= 3 && codes[..2] == [500, 503],
        "two failures then a success: {hooks:?}"
    );
}

#[test]
fn restart_delivers_receipts_left_unindexed() {
    let db = db_url();
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::ct();
    {
        let scp = Scp::start(ScpOptions::new(&db)); // webhook down
        let (code, out) = storescu(&scp, &[&inst.write(dir.path())]);
        assert_eq!(code, 0, "{out}");
        assert_eq!(scp.terminate(), Some(0));
    }
    let id = receipts_for(inst.sop())[0].id;
    let django = FakeDjango::start(vec![]);
    let _scp = Scp::start(ScpOptions::new(&db).webhook(&django.url));
    django.wait_for_ids(&[id], Duration::from_secs(15));
}

#[test]
fn health_is_ok_with_database_and_storage() {
    let scp = Scp::start(ScpOptions::new(&db_url()));
    let (code, body) = http_get(scp.http, "/health");
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&body).unwrap(),
        serde_json::json!({"status": "ok", "database": "ok", "storage": "ok"})
    );
    assert_eq!(http_get(scp.http, "/nope").0, 404);
    // The container HEALTHCHECK: `dicom_scp_server healthcheck` with the same environment.
    let opts = ScpOptions::new(&db_url()).env("SCP_HTTP_PORT", &scp.http.port().to_string());
    let probe = scp_command(&opts, &scp.storage)
        .arg("healthcheck")
        .output()
        .unwrap();
    assert!(probe.status.success(), "{}", text(&probe));
    assert_eq!(scp.terminate(), Some(0));
}

#[test]
fn association_limit_rejects_transiently() {
    let scp = Scp::start(ScpOptions::new(CLOSED_DB_URL).env("SCP_MAX_ASSOCIATIONS", "1"));
    let held = ClientAssociationOptions::new()
        .calling_ae_title("HOLDER")
        .called_ae_title("NOCTIS")
        .with_abstract_syntax("1.2.840.10008.1.1")
        .establish(scp.dicom)
        .unwrap();
    let busy = dcmtk("echoscu", &["-v", "-aec", "NOCTIS", "127.0.0.1", &scp.port()]);
    assert!(!busy.status.success());
    let out = text(&busy);
    assert!(
        out.contains("Rejected Transient") && out.contains("Local Limit Exceeded"),
        "{out}"
    );
    held.release().unwrap();
    // The slot frees once the released association's task ends.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !dcmtk("echoscu", &["-aec", "NOCTIS", "127.0.0.1", &scp.port()])
        .status
        .success()
    {
        assert!(std::time::Instant::now() < deadline, "slot never freed");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn config_errors_stop_with_one_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let opts = ScpOptions::new(CLOSED_DB_URL).env("WEBHOOK_SECRET", "");
    let out = scp_command(&opts, dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("WEBHOOK_SECRET") && err.contains("required"),
        "{err}"
    );

    let opts = ScpOptions::new(CLOSED_DB_URL).env("DICOM_PORT", "port");
    let out = scp_command(&opts, dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("DICOM_PORT"));

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let opts = ScpOptions::new(CLOSED_DB_URL).env("DICOM_PORT", &port);
    let out = scp_command(&opts, dir.path()).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!("DICOM port {port} is already in use")),
        "{err}"
    );
}

#[test]
fn ready_line_parses() {
    assert_eq!(
        parse_ready("NOCTIS_SCP_READY dicom=127.0.0.1:4242 http=127.0.0.1:4343"),
        Some((
            "127.0.0.1:4242".parse().unwrap(),
            "127.0.0.1:4343".parse().unwrap()
        ))
    );
}

#[test]
fn large_instances_stream_over_many_pdus_from_parallel_associations() {
    let scp = Scp::start(ScpOptions::new(&db_url()).env("SCP_MAX_PDU_LENGTH", "16384"));
    let dir = tempfile::tempdir().unwrap();
    let batches: Vec<Vec<Instance>> = (0..3)
        .map(|_| {
            (0..3)
                .map(|_| {
                    let mut i = Instance::ct();
                    i.side = 512; // 512 KiB of pixels: dozens of 16 KiB PDUs
                    i
                })
                .collect()
        })
        .collect();
    let files: Vec<Vec<_>> = batches
        .iter()
        .map(|b| b.iter().map(|i| i.write(dir.path())).collect())
        .collect();
    std::thread::scope(|s| {
        for fs in &files {
            let scp = &scp;
            s.spawn(move || {
                let refs: Vec<&std::path::Path> = fs.iter().map(|p| p.as_path()).collect();
                let (code, out) = storescu(scp, &refs);
                assert_eq!(code, 0, "{out}");
                assert_eq!(store_responses(&out), vec!["Success"; 3], "{out}");
            });
        }
    });
    for (inst, sent) in batches.iter().flatten().zip(files.iter().flatten()) {
        assert_eq!(
            dataset_bytes(&scp.storage.join(inst.relpath())),
            dataset_bytes(sent)
        );
        assert_eq!(receipts_for(inst.sop()).len(), 1);
    }
}

#[test]
fn sigterm_lets_the_active_association_finish() {
    // A grace period far longer than the echoscu loop below can take on a loaded machine: with the default 5 s of
    // the tests, the open association was sometimes aborted before it stored (the SCP exits as soon as it ends).
    let scp = Scp::start(ScpOptions::new(&db_url()).env("SCP_SHUTDOWN_GRACE_SECS", "60"));
    let mut assoc = raw_association(&scp);
    let pid = scp_pid(&scp);
    let _ = std::process::Command::new("kill").args(["-TERM", &pid]).status();
    // No new associations (once the signal is handled)...
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while dcmtk("echoscu", &["-aec", "NOCTIS", "127.0.0.1", &scp.port()])
        .status
        .success()
    {
        assert!(
            std::time::Instant::now() < deadline,
            "still accepting after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // ...but the open one still stores, durably.
    let inst = Instance::ct();
    assert_eq!(
        raw_store_on(&mut assoc, &[(inst.sop().to_string(), inst.dataset())]),
        vec![0]
    );
    assoc.release().unwrap();
    assert_eq!(scp.terminate(), Some(0));
    assert_eq!(receipts_for(inst.sop()).len(), 1);
}

fn scp_pid(scp: &Scp) -> String {
    scp.pid().to_string()
}

#[test]
fn oversized_pdu_is_aborted() {
    use std::io::{Read, Write};
    let scp = Scp::start(ScpOptions::new(CLOSED_DB_URL).env("SCP_MAX_PDU_LENGTH", "4096"));
    // A raw peer (dicom-ul's client refuses to send an oversized PDU, as it should).
    let mut s = std::net::TcpStream::connect(scp.dicom).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let rq = Pdu::AssociationRQ(dicom_ul::pdu::AssociationRQ {
        protocol_version: 1,
        calling_ae_title: "RAWSCU".into(),
        called_ae_title: "NOCTIS".into(),
        application_context_name: "1.2.840.10008.3.1.1.1".into(),
        presentation_contexts: vec![dicom_ul::pdu::PresentationContextProposed {
            id: 1,
            abstract_syntax: CT_IMAGE_STORAGE.into(),
            transfer_syntaxes: vec![IMPLICIT_VR_LE.into()],
        }],
        user_variables: vec![dicom_ul::pdu::UserVariableItem::MaxLength(16384)],
    });
    let mut buf = vec![];
    dicom_ul::write_pdu(&mut buf, &rq).unwrap();
    s.write_all(&buf).unwrap();
    let mut head = [0u8; 6];
    s.read_exact(&mut head).unwrap();
    assert_eq!(head[0], 0x02, "A-ASSOCIATE-AC");
    let mut rest = vec![0u8; u32::from_be_bytes(head[2..6].try_into().unwrap()) as usize];
    s.read_exact(&mut rest).unwrap();
    let big = Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: 1,
            value_type: PDataValueType::Data,
            is_last: false,
            data: vec![0u8; 10_000],
        }],
    };
    let mut buf = vec![];
    dicom_ul::write_pdu(&mut buf, &big).unwrap();
    let _ = s.write_all(&buf);
    let mut answer = [0u8; 10];
    s.read_exact(&mut answer).unwrap();
    assert_eq!(answer[0], 0x07, "A-ABORT");
    assert_eq!(answer[8], 2, "source: service provider");
    // The server goes on serving.
    let ok = dcmtk("echoscu", &["-aec", "NOCTIS", "127.0.0.1", &scp.port()]);
    assert!(ok.status.success(), "{}", text(&ok));
}

#[test]
fn silent_peers_are_dropped_after_artim_and_idle_timeouts() {
    use std::io::Read;
    let scp = Scp::start(
        ScpOptions::new(CLOSED_DB_URL)
            .env("SCP_ARTIM_TIMEOUT_SECS", "1")
            .env("SCP_IDLE_TIMEOUT_SECS", "1"),
    );
    // Connected, never asks for an association: closed after ARTIM.
    let mut silent = std::net::TcpStream::connect(scp.dicom).unwrap();
    silent.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 16];
    assert_eq!(silent.read(&mut buf).unwrap(), 0, "connection closed");
    assert!(started.elapsed() < Duration::from_secs(4));
    // Associated, then idle: aborted after the idle timeout.
    let mut assoc = raw_association(&scp);
    match assoc.receive() {
        Ok(Pdu::AbortRQ { .. }) => {}
        other => panic!("expected A-ABORT after idle timeout, got {other:?}"),
    }
}

#[test]
fn compressed_and_deflated_instances_are_stored_as_received() {
    let scp = Scp::start(ScpOptions::new(&db_url()));
    let dir = tempfile::tempdir().unwrap();
    // RLE Lossless, made by dcmtk from a generated file: stored byte-exact, never decompressed.
    let rle = Instance::ct();
    let plain = rle.write(dir.path());
    let rle_file = dir.path().join("rle.dcm");
    let made = dcmtk("dcmcrle", &[plain.to_str().unwrap(), rle_file.to_str().unwrap()]);
    assert!(made.status.success(), "{}", text(&made));
    let (code, out) = storescu_with(&scp, &["-xr"], &[&rle_file]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(store_responses(&out), vec!["Success"], "{out}");
    assert_eq!(
        dataset_bytes(&scp.storage.join(rle.relpath())),
        dataset_bytes(&rle_file)
    );
    let rows = receipts_for(rle.sop());
    assert_eq!(
        rows[0].cols["transfer_syntax_uid"].as_deref(),
        Some("1.2.840.10008.1.2.5")
    );
    assert_eq!(rows[0].attrs["PatientName"], "Doe^Jane");

    // Deflated Explicit VR LE (storescu deflates on the wire): parsed for the receipt, kept deflated.
    let deflated = Instance::ct();
    let f = deflated.write(dir.path());
    let (code, out) = storescu_with(&scp, &["-xd"], &[&f]);
    assert_eq!(code, 0, "{out}");
    assert_eq!(store_responses(&out), vec!["Success"], "{out}");
    let rows = receipts_for(deflated.sop());
    assert_eq!(
        rows[0].cols["transfer_syntax_uid"].as_deref(),
        Some("1.2.840.10008.1.2.1.99")
    );
    assert_eq!(rows[0].attrs["Modality"], "CT");
    let check = dcmtk(
        "dcmdump",
        &[scp.storage.join(deflated.relpath()).to_str().unwrap()],
    );
    assert!(
        check.status.success() && text(&check).contains(deflated.sop()),
        "{}",
        text(&check)
    );
}

#[test]
fn unknown_calling_ae_is_rejected_when_a_list_is_configured() {
    let scp =
        Scp::start(ScpOptions::new(CLOSED_DB_URL).env("DICOM_ALLOWED_CALLING_AE_TITLES", "CT1,TESTSCU"));
    let port = scp.port();
    let known = dcmtk("echoscu", &["-aet", "CT1", "-aec", "NOCTIS", "127.0.0.1", &port]);
    assert!(known.status.success(), "{}", text(&known));
    let unknown = dcmtk(
        "echoscu",
        &["-v", "-aet", "STRANGER", "-aec", "NOCTIS", "127.0.0.1", &port],
    );
    assert!(!unknown.status.success());
    assert!(
        text(&unknown).contains("Calling AE Title Not Recognized"),
        "{}",
        text(&unknown)
    );
}

#[test]
fn known_nodes_only_admits_enabled_nodes_and_the_systems_own_aes() {
    let tag = unique_uid().replace('.', "");
    let tail = &tag[tag.len() - 8..];
    let (known, disabled) = (format!("KN{tail}"), format!("KD{tail}"));
    db_execute(&format!(
        "INSERT INTO pacs_node (name, ae_title, host, port, enabled, last_error, created_at) VALUES \
         ('kn-{tail}', '{known}', '127.0.0.1', 9, true, '', now()), \
         ('kd-{tail}', '{disabled}', '127.0.0.1', 9, false, '', now())"
    ));
    let scp = Scp::start(
        ScpOptions::new(&db_url())
            .env("SCP_KNOWN_NODES_ONLY", "true")
            .env("AI_WRITEBACK_CALLING_AE", "AIWB"),
    );
    let port = scp.port();
    let echo = |ae: &str| {
        dcmtk(
            "echoscu",
            &["-v", "-aet", ae, "-aec", "NOCTIS", "127.0.0.1", &port],
        )
    };
    let outcomes: Vec<(String, bool, String)> = [
        known.as_str(),
        "NOCTIS_STOW",
        "AIWB",
        disabled.as_str(),
        "STRANGER",
    ]
    .iter()
    .map(|ae| {
        let out = echo(ae);
        (ae.to_string(), out.status.success(), text(&out))
    })
    .collect();
    db_execute(&format!(
        "DELETE FROM pacs_node WHERE ae_title IN ('{known}', '{disabled}')"
    ));
    for (ae, ok, out) in &outcomes[..3] {
        assert!(ok, "{ae}: {out}");
    }
    for (ae, ok, out) in &outcomes[3..] {
        assert!(!ok, "{ae}: {out}");
        assert!(out.contains("Calling AE Title Not Recognized"), "{ae}: {out}");
    }
}

/// A role that may read pacs_receipt but not write it: the receipt insert fails after the rename.
#[test]
fn failed_receipt_insert_removes_the_renamed_file() {
    let admin: tokio_postgres::Config = db_url().parse().unwrap();
    let role = format!("scp_ro_{}", unique_uid().replace('.', "_"));
    let password = "read-only-test";
    let admin_exec = |sql: String| {
        runtime().block_on(async {
            let (client, conn) = tokio_postgres::connect(&db_url(), tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(conn);
            client.batch_execute(&sql).await.unwrap();
        })
    };
    admin_exec(format!(
        "CREATE ROLE {role} LOGIN PASSWORD '{password}'; GRANT SELECT ON pacs_receipt, pacs_node TO {role};"
    ));
    let host = match &admin.get_hosts()[0] {
        tokio_postgres::config::Host::Tcp(h) => h.clone(),
        tokio_postgres::config::Host::Unix(p) => p.display().to_string(),
    };
    let url = format!(
        "host={host} port={} user={role} password={password} dbname={}",
        admin.get_ports().first().copied().unwrap_or(5432),
        admin.get_dbname().unwrap_or("postgres"),
    );
    let scp = Scp::start(ScpOptions::new(&url));
    let dir = tempfile::tempdir().unwrap();
    let inst = Instance::ct();
    let (_code, out) = storescu(&scp, &[&inst.write(dir.path())]);
    let responses = store_responses(&out);
    let stored = scp.stored_files();
    let incoming = scp.incoming_files();
    let log = scp.log_text();
    drop(scp);
    admin_exec(format!("DROP OWNED BY {role}; DROP ROLE {role};"));
    assert_eq!(responses, vec!["Refused: OutOfResources"], "{out}\n{log}");
    assert!(log.contains("permission denied"), "{log}");
    assert!(stored.is_empty(), "no file without its receipt: {stored:?}");
    assert!(incoming.is_empty());
    assert!(receipts_for(inst.sop()).is_empty());
}
