//! C-MOVE and C-GET (PS3.4 C.4.2, C.4.3): the instances an identifier selects are read from STORAGE_ROOT
//! and sent as C-STORE sub-operations in the transfer syntax they were stored in: over a new association
//! to the move destination (a node of pacs_node, looked up by AE title) for C-MOVE, over the requestor's own
//! association for C-GET. A pending response after each sub-operation carries the remaining / completed /
//! failed / warning counts; the final one tells the truth:
//!
//! | final status | when |
//! |---|---|
//! | 0x0000 | every sub-operation succeeded (or nothing matched) |
//! | 0xB000 | some failed or had warnings; the identifier lists the failed SOP Instance UIDs |
//! | 0xFE00 | the requestor sent C-CANCEL; remaining = sub-operations not started |
//! | 0xA801 | C-MOVE destination not in pacs_node, disabled, or not allowed to receive from us |
//! | 0xA701 | the index cannot be read (database down) |
//! | 0xA702 | no association with the move destination could be made |
//! | 0xA900 / 0xC000 / 0xC001 | identifier without level or unique key / undecodable / bad value |
//!
//! A stored data set goes out byte for byte when the destination accepts its transfer syntax. When it
//! accepts only the other uncompressed little-endian syntax (Explicit ↔ Implicit VR), the data set is
//! re-encoded; any other mismatch fails that sub-operation (nothing is decompressed or recompressed).

use std::collections::{BTreeSet, HashSet};
use std::path::{Component, Path};
use std::time::Instant;

use dicom_core::value::PrimitiveValue;
use dicom_core::{DataElement, VR};
use dicom_dictionary_std::tags;
use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};

use crate::association::NegotiatedContext;
use crate::dimse::{self, CommandSet};
use crate::error::{AssociationError, ReceiptError};
use crate::query::{self, Identifier, IdentifierError, Model, StoredInstance};
use crate::query_retrieve::{is_cancel, QueryRetrieve, Requestor};
use crate::scu::{AcceptedContext, Destination, ScuAssociation, MAX_CONTEXTS};
use crate::status;

pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";

/// Failed SOP Instance UID List values beyond this many bytes are left out (a UI value must fit the
/// 16-bit length of Explicit VR).
const FAILED_LIST_MAX_BYTES: usize = 65_000;

/// pacs_node columns that, when the table has one and it is false, forbid sending to that node. The
/// node model's capability flags are read by name, so a column added later is honoured without a change
/// here as long as it is one of these.
const MAY_RECEIVE_FLAGS: &[&str] = &[
    "may_receive",
    "can_receive",
    "may_receive_from_us",
    "receive_from_us",
];

const NODE_BY_AE: &str =
    "SELECT to_jsonb(n)::text FROM pacs_node n WHERE trim(n.ae_title) = $1::text ORDER BY n.id";

/// The counts of a C-MOVE / C-GET.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SubOperations {
    pub remaining: u32,
    pub completed: u32,
    pub failed: u32,
    pub warning: u32,
    pub failed_uids: Vec<String>,
    /// Why the first failure failed (the final response's error comment).
    pub first_failure: Option<String>,
}

/// How one sub-operation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Completed,
    Warning,
    Failed(String),
}

/// A C-STORE-RSP status as an outcome (PS3.4 B.2.3: 0xB000, 0xB006, 0xB007 and 0x0001 are warnings).
pub fn outcome_of(status: u16) -> Outcome {
    match status {
        0x0000 => Outcome::Completed,
        0x0001 | 0xB000..=0xBFFF => Outcome::Warning,
        s => Outcome::Failed(format!("destination answered {s:#06x}")),
    }
}

impl SubOperations {
    pub fn new(total: usize) -> SubOperations {
        SubOperations {
            remaining: total as u32,
            ..SubOperations::default()
        }
    }

    /// DICOM counts are US: larger numbers are sent as 65535.
    pub fn u16(n: u32) -> u16 {
        n.min(u16::MAX as u32) as u16
    }

    pub fn remaining_u16(&self) -> u16 {
        SubOperations::u16(self.remaining)
    }

    pub fn record(&mut self, sop_instance_uid: &str, outcome: Outcome) {
        self.remaining = self.remaining.saturating_sub(1);
        match outcome {
            Outcome::Completed => self.completed += 1,
            Outcome::Warning => self.warning += 1,
            Outcome::Failed(reason) => {
                self.failed += 1;
                self.failed_uids.push(sop_instance_uid.to_string());
                if self.first_failure.is_none() {
                    self.first_failure = Some(reason);
                }
            }
        }
    }

    /// The final status (cancel aside, see the module table).
    pub fn final_status(&self, cancelled: bool) -> u16 {
        if cancelled {
            status::CANCEL
        } else if self.failed > 0 || self.warning > 0 {
            status::SUBOPERATIONS_WARNING
        } else {
            status::SUCCESS
        }
    }

    /// The final identifier: the Failed SOP Instance UID List, when something failed.
    pub fn failed_identifier(&self) -> Option<InMemDicomObject> {
        if self.failed_uids.is_empty() {
            return None;
        }
        let mut list = String::new();
        for uid in &self.failed_uids {
            if list.len() + uid.len() + 1 > FAILED_LIST_MAX_BYTES {
                break;
            }
            if !list.is_empty() {
                list.push('\\');
            }
            list.push_str(uid);
        }
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::FAILED_SOP_INSTANCE_UID_LIST,
            VR::UI,
            PrimitiveValue::from(list),
        ));
        Some(obj)
    }
}

/// A stored file's data set: the bytes after its file meta group, and the transfer syntax the meta
/// group names.
#[derive(Debug)]
pub struct Payload {
    pub transfer_syntax: String,
    bytes: Vec<u8>,
    start: usize,
}

impl Payload {
    pub fn data(&self) -> &[u8] {
        &self.bytes[self.start..]
    }

    /// Split a Part-10 file into its meta group's transfer syntax and its data set (element by element,
    /// so a meta group written without (0002,0000) is read too).
    pub fn parse(bytes: Vec<u8>) -> Result<Payload, String> {
        if bytes.len() < 132 || &bytes[128..132] != b"DICM" {
            return Err("not a DICOM Part-10 file".into());
        }
        let mut i = 132;
        let mut transfer_syntax = None;
        while i + 8 <= bytes.len() && bytes[i..i + 2] == [0x02, 0x00] {
            let element = u16::from_le_bytes([bytes[i + 2], bytes[i + 3]]);
            let vr = &bytes[i + 4..i + 6];
            let long = matches!(
                vr,
                b"OB"
                    | b"OW"
                    | b"OF"
                    | b"OD"
                    | b"OL"
                    | b"OV"
                    | b"SQ"
                    | b"UT"
                    | b"UN"
                    | b"UC"
                    | b"UR"
                    | b"SV"
                    | b"UV"
            );
            let (len, header) = if long {
                if i + 12 > bytes.len() {
                    return Err("truncated file meta group".into());
                }
                (
                    u32::from_le_bytes(bytes[i + 8..i + 12].try_into().expect("4 bytes")) as usize,
                    12,
                )
            } else {
                (u16::from_le_bytes([bytes[i + 6], bytes[i + 7]]) as usize, 8)
            };
            let end = i + header + len;
            if end > bytes.len() {
                return Err("truncated file meta group".into());
            }
            if element == 0x0010 {
                let uid = String::from_utf8_lossy(&bytes[i + header..end]);
                transfer_syntax = Some(uid.trim_end_matches(['\0', ' ']).to_string());
            }
            i = end;
        }
        let transfer_syntax = transfer_syntax.ok_or("file meta group without TransferSyntaxUID")?;
        Ok(Payload {
            transfer_syntax,
            bytes,
            start: i,
        })
    }
}

/// Read a stored instance. `path` comes from the index and is relative to STORAGE_ROOT; anything that
/// could leave it is refused.
pub async fn payload_load(root: &Path, path: &str) -> Result<Payload, String> {
    let relative = Path::new(path);
    if path.is_empty() || !relative.components().all(|c| matches!(c, Component::Normal(_))) {
        return Err(format!("stored path {path:?} is not inside STORAGE_ROOT"));
    }
    let bytes = tokio::fs::read(root.join(relative))
        .await
        .map_err(|e| format!("cannot read {path}: {e}"))?;
    Payload::parse(bytes).map_err(|e| format!("{path}: {e}"))
}

/// Re-encode an uncompressed little-endian data set in the other one (Explicit ↔ Implicit VR).
pub fn transcode_little_endian(data: &[u8], from: &str, to: &str) -> Result<Vec<u8>, String> {
    let registry = TransferSyntaxRegistry;
    let (Some(from_ts), Some(to_ts)) = (registry.get(from), registry.get(to)) else {
        return Err(format!("transfer syntax {from} or {to} unknown"));
    };
    let obj =
        InMemDicomObject::read_dataset_with_ts(data, from_ts).map_err(|e| format!("cannot decode: {e}"))?;
    let mut out = Vec::with_capacity(data.len() + 1024);
    obj.write_dataset_with_ts(&mut out, to_ts)
        .map_err(|e| format!("cannot encode in {to}: {e}"))?;
    Ok(out)
}

fn little_endian_partner(ts: &str) -> Option<&'static str> {
    match ts {
        IMPLICIT_VR_LE => Some(EXPLICIT_VR_LE),
        EXPLICIT_VR_LE => Some(IMPLICIT_VR_LE),
        _ => None,
    }
}

/// The context to send an instance of `sop_class` stored in `stored_ts` on: one with that very syntax,
/// else one with its little-endian partner (the second value is then the syntax to re-encode into).
pub fn context_choose<'a>(
    contexts: impl Iterator<Item = (u8, &'a str, &'a str)> + Clone,
    sop_class: &str,
    stored_ts: &str,
) -> Option<(u8, Option<String>)> {
    if let Some((id, _, _)) = contexts
        .clone()
        .find(|(_, a, t)| *a == sop_class && *t == stored_ts)
    {
        return Some((id, None));
    }
    let partner = little_endian_partner(stored_ts)?;
    contexts
        .clone()
        .find(|(_, a, t)| *a == sop_class && *t == partner)
        .map(|(id, _, _)| (id, Some(partner.to_string())))
}

/// The data set to send: as stored, or re-encoded (off the async threads) when the context needs it.
async fn payload_for_context(payload: Payload, target: Option<String>) -> Result<Vec<u8>, String> {
    match target {
        None => {
            let start = payload.start;
            let mut bytes = payload.bytes;
            bytes.drain(..start);
            Ok(bytes)
        }
        Some(to) => tokio::task::spawn_blocking(move || {
            transcode_little_endian(payload.data(), &payload.transfer_syntax, &to)
        })
        .await
        .map_err(|e| format!("re-encoding stopped: {e}"))?,
    }
}

/// A C-MOVE destination as pacs_node describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub name: String,
    pub ae_title: String,
    pub host: String,
    pub port: u16,
}

/// Why a known AE title is still no destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeRefusal {
    Unknown,
    Disabled,
    MayNotReceive(String),
}

/// The first usable node among the rows of pacs_node with this AE title (each row as JSON, so columns
/// added by later migrations are tolerated and capability flags honoured).
pub fn node_choose(rows: &[String]) -> Result<Node, NodeRefusal> {
    let mut refusal = NodeRefusal::Unknown;
    for text in rows {
        let Ok(serde_json::Value::Object(row)) = serde_json::from_str::<serde_json::Value>(text) else {
            continue;
        };
        let s = |k: &str| {
            row.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_default()
                .trim()
                .to_string()
        };
        if row.get("enabled").and_then(|v| v.as_bool()) == Some(false) {
            refusal = NodeRefusal::Disabled;
            continue;
        }
        if let Some(flag) = MAY_RECEIVE_FLAGS
            .iter()
            .find(|f| row.get(**f).and_then(|v| v.as_bool()) == Some(false))
        {
            refusal = NodeRefusal::MayNotReceive(flag.to_string());
            continue;
        }
        let Some(port) = row
            .get("port")
            .and_then(|v| v.as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        let host = s("host");
        if host.is_empty() || port == 0 {
            continue;
        }
        return Ok(Node {
            name: s("name"),
            ae_title: s("ae_title"),
            host,
            port,
        });
    }
    Err(refusal)
}

impl QueryRetrieve {
    async fn node_find(&self, ae_title: &str) -> Result<Result<Node, NodeRefusal>, ReceiptError> {
        let rows = self
            .rows(NODE_BY_AE, &[query::Param::Text(ae_title.trim().to_string())])
            .await?;
        let texts: Vec<String> = rows.into_iter().filter_map(|mut r| r.pop().flatten()).collect();
        Ok(node_choose(&texts))
    }

    async fn instances_find(
        &self,
        sql: &str,
        params: &[query::Param],
    ) -> Result<Vec<StoredInstance>, ReceiptError> {
        let rows = self.rows(sql, params).await?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let mut it = r.into_iter().map(Option::unwrap_or_default);
                StoredInstance {
                    sop_instance_uid: it.next().unwrap_or_default(),
                    sop_class_uid: it.next().unwrap_or_default(),
                    transfer_syntax_uid: it.next().unwrap_or_default(),
                    path: it.next().unwrap_or_default(),
                }
            })
            .collect())
    }
}

/// The identifier of a C-MOVE / C-GET, its instances, or the failure to answer.
async fn instances_select<S>(
    req: &mut Requestor<'_, S>,
    qr: &QueryRetrieve,
    identifier: &[u8],
) -> Result<Option<Vec<StoredInstance>>, AssociationError>
where
    S: AsyncBufRead + AsyncRead + AsyncWrite + Unpin,
{
    let model: Model = req.request.model;
    let selected = Identifier::decode(identifier, &req.request.transfer_syntax, model)
        .and_then(|id| query::retrieve_query(&id, model, &req.request.facilities));
    let (sql, params) = match selected {
        Ok(q) => q,
        Err(e) => {
            let e: IdentifierError = e;
            req.fail(e.status(), &e.to_string()).await?;
            return Ok(None);
        }
    };
    match qr.instances_find(&sql, &params).await {
        Ok(instances) => Ok(Some(instances)),
        Err(e) => {
            tracing::error!(error = %e, "cannot select the instances to retrieve");
            req.fail(status::OUT_OF_RESOURCES_MATCHES, &e.to_string()).await?;
            Ok(None)
        }
    }
}

/// (SOP class, transfer syntax) pairs proposed on one association, and the instances sent over it.
type Batch<'a> = (Vec<(String, String)>, Vec<&'a StoredInstance>);

/// Groups of instances whose (SOP class, transfer syntax) proposals fit one association each.
fn batches(instances: &[StoredInstance]) -> Vec<Batch<'_>> {
    let mut out: Vec<Batch<'_>> = Vec::new();
    let mut proposals: BTreeSet<(String, String)> = BTreeSet::new();
    let mut members = Vec::new();
    for inst in instances {
        let mut needed = vec![(inst.sop_class_uid.clone(), inst.transfer_syntax_uid.clone())];
        if let Some(partner) = little_endian_partner(&inst.transfer_syntax_uid) {
            needed.push((inst.sop_class_uid.clone(), partner.to_string()));
        }
        let new: Vec<_> = needed.into_iter().filter(|p| !proposals.contains(p)).collect();
        if proposals.len() + new.len() > MAX_CONTEXTS && !members.is_empty() {
            out.push((
                std::mem::take(&mut proposals).into_iter().collect(),
                std::mem::take(&mut members),
            ));
            let mut again = vec![(inst.sop_class_uid.clone(), inst.transfer_syntax_uid.clone())];
            if let Some(partner) = little_endian_partner(&inst.transfer_syntax_uid) {
                again.push((inst.sop_class_uid.clone(), partner.to_string()));
            }
            proposals.extend(again);
        } else {
            proposals.extend(new);
        }
        members.push(inst);
    }
    if !members.is_empty() {
        out.push((proposals.into_iter().collect(), members));
    }
    out
}

/// One C-STORE sub-operation of a C-MOVE on the destination's association.
async fn move_one(
    association: &mut ScuAssociation,
    inst: &StoredInstance,
    payload: Result<Payload, String>,
    originator: (&str, u16),
) -> Result<Outcome, crate::error::ScuError> {
    let payload = match payload {
        Ok(p) => p,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let contexts = association
        .contexts
        .iter()
        .map(|c: &AcceptedContext| (c.id, c.abstract_syntax.as_str(), c.transfer_syntax.as_str()));
    let Some((pcid, target)) = context_choose(contexts, &inst.sop_class_uid, &payload.transfer_syntax) else {
        return Ok(Outcome::Failed(format!(
            "destination accepts {} in no syntax we can send ({} stored)",
            inst.sop_class_uid, payload.transfer_syntax
        )));
    };
    let data = match payload_for_context(payload, target).await {
        Ok(d) => d,
        Err(e) => return Ok(Outcome::Failed(e)),
    };
    let status = association
        .store(
            pcid,
            &inst.sop_class_uid,
            &inst.sop_instance_uid,
            &data,
            originator,
        )
        .await?;
    Ok(outcome_of(status))
}

/// C-MOVE: sub-operations over an association from us to the destination node.
pub async fn move_serve<S>(
    req: &mut Requestor<'_, S>,
    qr: &QueryRetrieve,
    identifier: &[u8],
    calling_ae: &str,
) -> Result<(), AssociationError>
where
    S: AsyncBufRead + AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let destination_ae = req.request.move_destination.trim().to_string();
    if destination_ae.is_empty() {
        return req
            .fail(status::MOVE_DESTINATION_UNKNOWN, "no Move Destination given")
            .await;
    }
    let node = match qr.node_find(&destination_ae).await {
        Ok(Ok(node)) => node,
        Ok(Err(refusal)) => {
            let why = match refusal {
                NodeRefusal::Unknown => format!("move destination {destination_ae} unknown"),
                NodeRefusal::Disabled => format!("move destination {destination_ae} is disabled"),
                NodeRefusal::MayNotReceive(flag) => {
                    format!("move destination {destination_ae} may not receive ({flag})")
                }
            };
            return req.fail(status::MOVE_DESTINATION_UNKNOWN, &why).await;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read pacs_node");
            return req.fail(status::OUT_OF_RESOURCES_MATCHES, &e.to_string()).await;
        }
    };
    let Some(instances) = instances_select(req, qr, identifier).await? else {
        return Ok(());
    };
    let mut ops = SubOperations::new(instances.len());
    let originator = (calling_ae, req.request.message_id);
    let mut associated = false;
    let mut association_error = None;
    'batches: for (proposals, members) in batches(&instances) {
        if req.cancel_poll().await? {
            break;
        }
        let to = Destination {
            calling_ae: qr.ae_title.clone(),
            called_ae: node.ae_title.clone(),
            host: node.host.clone(),
            port: node.port,
        };
        let mut association = match ScuAssociation::establish(
            &to,
            &proposals,
            qr.max_pdu_length,
            qr.connect_timeout,
            qr.response_timeout,
        )
        .await
        {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(destination = %destination_ae, error = %e, "cannot associate with the move destination");
                let reason = format!("{destination_ae}: {e}");
                for inst in &members {
                    ops.record(&inst.sop_instance_uid, Outcome::Failed(reason.clone()));
                }
                association_error = Some(reason);
                req.respond(status::PENDING, Some(&ops), None, None).await?;
                continue;
            }
        };
        associated = true;
        let mut broken: Option<String> = None;
        // The next file is read while the current one is sent: at most two are held.
        let load = |inst: &StoredInstance| {
            let (root, path) = (qr.storage_root.clone(), inst.path.clone());
            tokio::spawn(async move { payload_load(&root, &path).await })
        };
        let mut next = members.first().map(|inst| load(inst));
        for (i, inst) in members.iter().enumerate() {
            let current = next.take();
            if let Some(reason) = &broken {
                ops.record(&inst.sop_instance_uid, Outcome::Failed(reason.clone()));
                continue;
            }
            if req.cancel_poll().await? {
                association.release().await;
                break 'batches;
            }
            next = members.get(i + 1).map(|inst| load(inst));
            let payload = match current {
                Some(handle) => handle
                    .await
                    .unwrap_or_else(|e| Err(format!("reading stopped: {e}"))),
                None => Err("not read".to_string()),
            };
            let outcome = match move_one(&mut association, inst, payload, originator).await {
                Ok(o) => o,
                Err(e) => {
                    let reason = format!("{destination_ae}: {e}");
                    broken = Some(reason.clone());
                    Outcome::Failed(reason)
                }
            };
            if let Outcome::Failed(reason) = &outcome {
                tracing::warn!(sop = %inst.sop_instance_uid, %reason, "C-MOVE sub-operation failed");
            }
            ops.record(&inst.sop_instance_uid, outcome);
            req.respond(status::PENDING, Some(&ops), None, None).await?;
        }
        if broken.is_some() {
            association.abort().await;
        } else {
            association.release().await;
        }
    }
    let final_status = if !req.cancelled && !associated && ops.failed > 0 {
        status::OUT_OF_RESOURCES_SUBOPERATIONS
    } else {
        ops.final_status(req.cancelled)
    };
    tracing::info!(
        destination = %destination_ae, node = %node.name, instances = instances.len(), completed = ops.completed,
        failed = ops.failed, warning = ops.warning, status = format!("{final_status:#06x}"),
        ms = started.elapsed().as_millis() as u64, calling = %calling_ae, "C-MOVE"
    );
    let comment = association_error.or(ops.first_failure.clone());
    let identifier = (final_status != status::SUCCESS)
        .then(|| ops.failed_identifier())
        .flatten();
    req.respond(
        final_status,
        Some(&ops),
        identifier.as_ref(),
        comment.as_deref().filter(|_| final_status != status::SUCCESS),
    )
    .await
}

/// C-GET: sub-operations as C-STOREs from us on the requestor's association, on contexts for which it
/// took the SCP role.
pub async fn get_serve<S>(
    req: &mut Requestor<'_, S>,
    qr: &QueryRetrieve,
    identifier: &[u8],
    contexts: &[NegotiatedContext],
    scp_role_classes: &HashSet<String>,
) -> Result<(), AssociationError>
where
    S: AsyncBufRead + AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let Some(instances) = instances_select(req, qr, identifier).await? else {
        return Ok(());
    };
    let mut ops = SubOperations::new(instances.len());
    let usable = contexts
        .iter()
        .filter(|c| scp_role_classes.contains(&c.abstract_syntax))
        .map(|c| (c.id, c.abstract_syntax.as_str(), c.transfer_syntax.as_str()));
    let mut message_id: u16 = 0;
    for inst in &instances {
        if req.cancel_poll().await? {
            break;
        }
        let prepared = async {
            let payload = payload_load(&qr.storage_root, &inst.path).await?;
            let Some((pcid, target)) =
                context_choose(usable.clone(), &inst.sop_class_uid, &payload.transfer_syntax)
            else {
                return Err(format!(
                    "no presentation context with the SCP role for {} in {} (or its little-endian partner)",
                    inst.sop_class_uid, payload.transfer_syntax
                ));
            };
            Ok((pcid, payload_for_context(payload, target).await?))
        }
        .await;
        let outcome = match prepared {
            Err(reason) => Outcome::Failed(reason),
            Ok((pcid, data)) => {
                message_id = message_id.wrapping_add(1).max(1);
                let command = CommandSet::new(dimse::C_STORE_RQ)
                    .uid(dimse::AFFECTED_SOP_CLASS_UID, &inst.sop_class_uid)
                    .us(dimse::MESSAGE_ID, message_id)
                    .us(dimse::PRIORITY, 0)
                    .us(dimse::COMMAND_DATA_SET_TYPE, dimse::DATA_SET_PRESENT)
                    .uid(dimse::AFFECTED_SOP_INSTANCE_UID, &inst.sop_instance_uid)
                    .encode();
                req.send(pcid, &command, &data).await?;
                loop {
                    let message = req.message_next().await?;
                    if is_cancel(&message) {
                        continue; // noted; this sub-operation finishes first
                    }
                    if message.command.command_field() == Some(dimse::C_STORE_RSP)
                        && message.command.u16(dimse::MESSAGE_ID_BEING_RESPONDED_TO) == Some(message_id)
                    {
                        break outcome_of(message.command.u16(dimse::STATUS).unwrap_or(0xC000));
                    }
                    return Err(AssociationError::Protocol(format!(
                        "expected C-STORE-RSP during C-GET, got command {:#06x}",
                        message.command.command_field().unwrap_or(0)
                    )));
                }
            }
        };
        if let Outcome::Failed(reason) = &outcome {
            tracing::warn!(sop = %inst.sop_instance_uid, %reason, "C-GET sub-operation failed");
        }
        ops.record(&inst.sop_instance_uid, outcome);
        req.respond(status::PENDING, Some(&ops), None, None).await?;
    }
    let final_status = ops.final_status(req.cancelled);
    tracing::info!(
        instances = instances.len(),
        completed = ops.completed,
        failed = ops.failed,
        warning = ops.warning,
        status = format!("{final_status:#06x}"),
        ms = started.elapsed().as_millis() as u64,
        "C-GET"
    );
    let identifier = (final_status != status::SUCCESS)
        .then(|| ops.failed_identifier())
        .flatten();
    let comment = ops
        .first_failure
        .clone()
        .filter(|_| final_status != status::SUCCESS);
    req.respond(final_status, Some(&ops), identifier.as_ref(), comment.as_deref())
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part10(meta: &[(u16, &[u8; 2], &[u8])], data: &[u8]) -> Vec<u8> {
        let mut out = vec![0u8; 128];
        out.extend_from_slice(b"DICM");
        for (element, vr, value) in meta {
            out.extend_from_slice(&[0x02, 0x00]);
            out.extend_from_slice(&element.to_le_bytes());
            out.extend_from_slice(*vr);
            if *vr == b"OB" {
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&(value.len() as u32).to_le_bytes());
            } else {
                out.extend_from_slice(&(value.len() as u16).to_le_bytes());
            }
            out.extend_from_slice(value);
        }
        out.extend_from_slice(data);
        out
    }

    #[test]
    fn payload_is_the_data_set_after_the_meta_group() {
        let file = part10(
            &[
                (0x0000, b"UL", &[40, 0, 0, 0]),
                (0x0001, b"OB", &[0, 1]),
                (0x0010, b"UI", b"1.2.840.10008.1.2.1\0"),
            ],
            b"\x08\x00\x16\x00UI\x02\x001\0",
        );
        let p = Payload::parse(file).unwrap();
        assert_eq!(p.transfer_syntax, EXPLICIT_VR_LE);
        assert_eq!(p.data(), b"\x08\x00\x16\x00UI\x02\x001\0");
        // Without group length and without a transfer syntax.
        let p = Payload::parse(part10(&[(0x0010, b"UI", b"1.2.840.10008.1.2\0")], b"xy")).unwrap();
        assert_eq!(
            (p.transfer_syntax.as_str(), p.data()),
            (IMPLICIT_VR_LE, &b"xy"[..])
        );
        assert!(Payload::parse(part10(&[(0x0001, b"OB", &[0, 1])], b"")).is_err());
        assert!(Payload::parse(vec![0; 200]).is_err());
    }

    #[test]
    fn stored_paths_must_stay_under_the_root() {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        for bad in ["../x.dcm", "/etc/passwd", "a/../../b", ""] {
            let e = rt.block_on(payload_load(Path::new("/tmp"), bad)).unwrap_err();
            assert!(e.contains("not inside STORAGE_ROOT"), "{bad}: {e}");
        }
    }

    #[test]
    fn contexts_prefer_the_stored_syntax_then_its_little_endian_partner() {
        let ct = "1.2.840.10008.5.1.4.1.1.2";
        let jpeg = "1.2.840.10008.1.2.4.50";
        let list = [
            (1u8, ct, IMPLICIT_VR_LE),
            (3, ct, EXPLICIT_VR_LE),
            (5, "1.2.3", jpeg),
        ];
        let it = || list.iter().map(|(i, a, t)| (*i, *a, *t));
        assert_eq!(context_choose(it(), ct, EXPLICIT_VR_LE), Some((3, None)));
        assert_eq!(
            context_choose(it().take(1), ct, EXPLICIT_VR_LE),
            Some((1, Some(IMPLICIT_VR_LE.into())))
        );
        assert_eq!(context_choose(it(), ct, jpeg), None);
        assert_eq!(context_choose(it(), "1.2.3", jpeg), Some((5, None)));
    }

    #[test]
    fn little_endian_transcoding_keeps_the_values() {
        let mut obj = InMemDicomObject::new_empty();
        obj.put(DataElement::new(
            tags::PATIENT_NAME,
            VR::PN,
            PrimitiveValue::from("Doe^Jane"),
        ));
        obj.put(DataElement::new(tags::ROWS, VR::US, PrimitiveValue::from(64u16)));
        let explicit = TransferSyntaxRegistry.get(EXPLICIT_VR_LE).unwrap();
        let mut bytes = Vec::new();
        obj.write_dataset_with_ts(&mut bytes, explicit).unwrap();
        let implicit = transcode_little_endian(&bytes, EXPLICIT_VR_LE, IMPLICIT_VR_LE).unwrap();
        assert_ne!(implicit, bytes);
        let back = transcode_little_endian(&implicit, IMPLICIT_VR_LE, EXPLICIT_VR_LE).unwrap();
        assert_eq!(back, bytes);
    }

    #[test]
    fn final_status_and_failed_list_tell_the_truth() {
        let mut ops = SubOperations::new(3);
        ops.record("1.1", Outcome::Completed);
        assert_eq!(ops.remaining, 2);
        assert_eq!(ops.final_status(false), status::SUCCESS);
        assert!(ops.failed_identifier().is_none());
        ops.record("1.2", outcome_of(0xA700));
        ops.record("1.3", outcome_of(0xB007));
        assert_eq!(
            (ops.completed, ops.failed, ops.warning, ops.remaining),
            (1, 1, 1, 0)
        );
        assert_eq!(ops.final_status(false), status::SUBOPERATIONS_WARNING);
        assert_eq!(ops.final_status(true), status::CANCEL);
        let id = ops.failed_identifier().unwrap();
        assert_eq!(
            id.get(tags::FAILED_SOP_INSTANCE_UID_LIST)
                .unwrap()
                .value()
                .to_str()
                .unwrap(),
            "1.2"
        );
        assert_eq!(ops.first_failure.as_deref(), Some("destination answered 0xa700"));
        assert_eq!(SubOperations::u16(70_000), 65535);
    }

    #[test]
    fn nodes_are_chosen_by_json_row_with_flags_honoured() {
        let ok = r#"{"id": 2, "name": "ws", "ae_title": "WS1 ", "host": "127.0.0.1", "port": 104, "enabled": true}"#;
        let disabled =
            r#"{"id": 1, "name": "old", "ae_title": "WS1", "host": "h", "port": 104, "enabled": false}"#;
        let no_receive = r#"{"name": "q", "ae_title": "WS1", "host": "h", "port": 104, "enabled": true, "may_receive": false, "extra_column": 3}"#;
        assert_eq!(node_choose(&[]), Err(NodeRefusal::Unknown));
        assert_eq!(node_choose(&[disabled.into()]), Err(NodeRefusal::Disabled));
        assert_eq!(
            node_choose(&[no_receive.into()]),
            Err(NodeRefusal::MayNotReceive("may_receive".into()))
        );
        let node = node_choose(&[disabled.into(), ok.into()]).unwrap();
        assert_eq!(
            (node.ae_title.as_str(), node.host.as_str(), node.port),
            ("WS1", "127.0.0.1", 104)
        );
    }

    #[test]
    fn batches_keep_each_association_within_128_contexts() {
        let instances: Vec<StoredInstance> = (0..100)
            .map(|i| StoredInstance {
                sop_instance_uid: format!("1.{i}"),
                sop_class_uid: format!("1.2.{i}"),
                transfer_syntax_uid: EXPLICIT_VR_LE.into(),
                path: String::new(),
            })
            .collect();
        let b = batches(&instances);
        assert_eq!(b.len(), 2);
        assert!(b.iter().all(|(p, _)| p.len() <= MAX_CONTEXTS));
        assert_eq!(b[0].1.len() + b[1].1.len(), 100);
        assert_eq!(b[0].0.len(), 128);
    }
}
