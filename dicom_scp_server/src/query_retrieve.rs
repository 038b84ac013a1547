//! The Query/Retrieve service class (PS3.4 C) on the SCP's associations: which SOP classes and transfer
//! syntaxes association.rs accepts for it, the SCP/SCU role selection that C-GET needs, the request being
//! received (command + identifier), and the operation that answers it while watching for C-CANCEL.
//!
//! An operation takes over the association's stream until its final response: C-FIND answers one pending
//! response per match (query.rs builds the SQL and the identifiers); C-MOVE and C-GET run their C-STORE
//! sub-operations (retrieve.rs). Between two responses the stream is polled without waiting; a C-CANCEL-RQ
//! for the operation stops it with status 0xFE00.

use std::collections::HashSet;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use dicom_object::InMemDicomObject;
use dicom_transfer_syntax_registry::{TransferSyntaxIndex, TransferSyntaxRegistry};
use dicom_ul::pdu::{AssociationRQ, PDataValue, PDataValueType, RequestorRoles, UserVariableItem};
use dicom_ul::Pdu;
use futures_core::Stream;
use tokio::io::{AsyncBufRead, AsyncRead, AsyncWrite};
use tokio_postgres::RowStream;

use crate::association::{storage_sop_class, NegotiatedContext, Services};
use crate::config::Config;
use crate::dimse::{self, Command, CommandSet};
use crate::error::{AssociationError, ReceiptError};
use crate::query::{self, Identifier, Model, Row};
use crate::receipt::{Db, PooledClient};
use crate::retrieve::{self, SubOperations};
use crate::scu::{self, Message, Received};
use crate::status;

pub const PATIENT_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.1.1";
pub const PATIENT_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.1.2";
pub const PATIENT_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.1.3";
pub const STUDY_ROOT_FIND: &str = "1.2.840.10008.5.1.4.1.2.2.1";
pub const STUDY_ROOT_MOVE: &str = "1.2.840.10008.5.1.4.1.2.2.2";
pub const STUDY_ROOT_GET: &str = "1.2.840.10008.5.1.4.1.2.2.3";

/// Identifiers are small; they travel in Explicit or Implicit VR Little Endian (first proposed wins).
pub const TRANSFER_SYNTAXES: &[&str] = &["1.2.840.10008.1.2.1", "1.2.840.10008.1.2"];

/// How long one query may take in the database (for a C-FIND's matches: until each next match).
const QUERY_TIMEOUT: Duration = Duration::from_secs(60);
/// Connections of the Q/R pool (separate from the ingest pool so long queries never delay a C-STORE).
const POOL_SIZE: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Find,
    Move,
    Get,
}

impl Service {
    pub fn request_field(self) -> u16 {
        match self {
            Service::Find => dimse::C_FIND_RQ,
            Service::Move => dimse::C_MOVE_RQ,
            Service::Get => dimse::C_GET_RQ,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Service::Find => "C-FIND",
            Service::Move => "C-MOVE",
            Service::Get => "C-GET",
        }
    }
}

/// The model and service of a Q/R SOP class we support.
pub fn sop_class(uid: &str) -> Option<(Model, Service)> {
    Some(match uid {
        PATIENT_ROOT_FIND => (Model::PatientRoot, Service::Find),
        PATIENT_ROOT_MOVE => (Model::PatientRoot, Service::Move),
        PATIENT_ROOT_GET => (Model::PatientRoot, Service::Get),
        STUDY_ROOT_FIND => (Model::StudyRoot, Service::Find),
        STUDY_ROOT_MOVE => (Model::StudyRoot, Service::Move),
        STUDY_ROOT_GET => (Model::StudyRoot, Service::Get),
        _ => return None,
    })
}

pub fn sop_class_supported(uid: &str) -> bool {
    sop_class(uid).is_some()
}

/// The transfer syntaxes acceptable for a presentation context of `abstract_syntax`, when they differ from
/// the storage list (association.rs).
pub fn transfer_syntaxes_for(abstract_syntax: &str) -> Option<&'static [&'static str]> {
    sop_class_supported(abstract_syntax).then_some(TRANSFER_SYNTAXES)
}

fn uid_clean(uid: &str) -> &str {
    uid.trim_end_matches('\0').trim()
}

/// Answers to the SCP/SCU role selection items of an A-ASSOCIATE-RQ (PS3.7 D.3.3.4). For storage SOP
/// classes both proposed roles are accepted: the requestor's SCP role is what lets C-GET send it
/// C-STOREs on this association. For other classes only the default roles exist.
pub fn role_replies(rq: &AssociationRQ) -> Vec<UserVariableItem> {
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for item in &rq.user_variables {
        if let UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) = item {
            let uid = uid_clean(uid);
            if !seen.insert(uid.to_string()) {
                continue;
            }
            let reply = if storage_sop_class(uid) {
                *roles
            } else if crate::association::abstract_syntax_supported(uid) {
                RequestorRoles {
                    scu: roles.scu,
                    scp: false,
                }
            } else {
                continue;
            };
            out.push(UserVariableItem::ScuScpRoleSelectionSubItem(
                uid.to_string(),
                reply,
            ));
        }
    }
    out
}

/// What the Q/R service shares across associations: its database pool, the archive and the limits.
pub struct QueryRetrieve {
    db: Db,
    pub ae_title: String,
    pub storage_root: PathBuf,
    /// The largest PDU we read (SCP_MAX_PDU_LENGTH), also announced on outgoing associations.
    pub max_pdu_length: u32,
    /// Connecting to a C-MOVE destination and waiting for its A-ASSOCIATE-AC (SCP_ARTIM_TIMEOUT_SECS).
    pub connect_timeout: Duration,
    /// Waiting for any answer of a peer during an operation (SCP_IDLE_TIMEOUT_SECS).
    pub response_timeout: Duration,
}

impl QueryRetrieve {
    pub fn new(config: &Config) -> Result<QueryRetrieve, ReceiptError> {
        Ok(QueryRetrieve {
            db: Db::new(&config.database_url, POOL_SIZE)?,
            ae_title: config.ae_title.trim().to_string(),
            storage_root: config.storage_root.clone(),
            max_pdu_length: config.max_pdu_length,
            connect_timeout: config.artim_timeout,
            response_timeout: config.idle_timeout,
        })
    }

    /// Rows of a query whose every column is text; binds typed, so it takes one round trip.
    pub async fn rows(&self, sql: &str, params: &[query::Param]) -> Result<Vec<Row>, ReceiptError> {
        let client = self.db.get().await?;
        let typed: Vec<_> = params.iter().map(query::Param::typed).collect();
        let rows = tokio::time::timeout(QUERY_TIMEOUT, client.query_typed(sql, &typed))
            .await
            .map_err(|_| ReceiptError::Timeout)??;
        Ok(rows.iter().map(text_row).collect())
    }

    /// The rows of a query whose every column is text, read as they are taken (see Matches).
    pub async fn matches(&self, sql: &str, params: &[query::Param]) -> Result<Matches, ReceiptError> {
        let client = self.db.get().await?;
        let typed: Vec<_> = params.iter().map(query::Param::typed).collect();
        let rows = tokio::time::timeout(QUERY_TIMEOUT, client.query_typed_raw(sql, typed))
            .await
            .map_err(|_| ReceiptError::Timeout)??;
        Ok(Matches {
            client,
            rows: Box::pin(rows),
            done: false,
        })
    }
}

fn text_row(r: &tokio_postgres::Row) -> Row {
    (0..r.len()).map(|i| r.get::<_, Option<String>>(i)).collect()
}

/// A C-FIND's matches, taken from PostgreSQL one at a time as the responses go out. A query matching a
/// million studies holds a few rows in memory, not a million: while the requestor reads slowly the
/// connection stops reading too, and PostgreSQL waits. Dropped before the end (C-CANCEL, a closed
/// association), the query is cancelled in PostgreSQL and the connection closed rather than pooled.
pub struct Matches {
    client: PooledClient,
    rows: Pin<Box<RowStream>>,
    done: bool,
}

impl Matches {
    /// The next match, None after the last.
    pub async fn next(&mut self) -> Result<Option<Row>, ReceiptError> {
        if self.done {
            return Ok(None);
        }
        let rows = &mut self.rows;
        let next = tokio::time::timeout(
            QUERY_TIMEOUT,
            std::future::poll_fn(|cx| rows.as_mut().poll_next(cx)),
        )
        .await
        .map_err(|_| ReceiptError::Timeout)?;
        match next {
            Some(row) => Ok(Some(text_row(&row?))),
            None => {
                self.done = true;
                Ok(None)
            }
        }
    }
}

impl Drop for Matches {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Closing the connection alone would not stop PostgreSQL: the client keeps reading (and
        // discarding) the rest of the result first. A cancel request ends the query at once.
        let token = self.client.cancel_token();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(e) = token.cancel_query(tokio_postgres::NoTls).await {
                    tracing::warn!(error = %e, "could not cancel a C-FIND query stopped early");
                }
            });
        }
        self.client.discard();
    }
}

/// The facilities that claim an AE title (facilities_facilityae; Django stores it stripped).
const FACILITIES_BY_AE: &str =
    "SELECT facility_id::text FROM facilities_facilityae WHERE ae_title = $1::text ORDER BY facility_id";

/// The facility ids a calling AE may see, from FACILITIES_BY_AE's rows: the facilities that claim it, or
/// [0] (unassigned studies only) when none does, as for a user in no facility (noctis_pro/contracts/access.py).
/// A single-site install maps no AE, so every study is unassigned and every node sees all of them.
pub fn visible_facilities_of(rows: &[Row]) -> Vec<i64> {
    let ids: Vec<i64> = rows
        .iter()
        .filter_map(|r| r.first().cloned().flatten())
        .filter_map(|t| t.parse().ok())
        .collect();
    if ids.is_empty() {
        vec![0]
    } else {
        ids
    }
}

const NODE_BY_AE: &str = "SELECT to_jsonb(n)::text FROM pacs_node n WHERE trim(n.ae_title) = $1::text";

/// Why a calling AE registered as a node may not use `service` (its `may_query` / `may_retrieve` is off),
/// from pacs_node rows as JSON. AE titles that are no node are not refused here (the optional allow-list
/// of association.rs decides about them).
pub fn calling_refusal_of(rows: &[String], calling_ae: &str, service: Service) -> Option<String> {
    match service {
        Service::Find => node_flag_refusal(rows, calling_ae, "may_query", "query"),
        Service::Move | Service::Get => node_flag_refusal(rows, calling_ae, "may_retrieve", "retrieve"),
    }
}

/// Why a calling AE registered as a node may not `verb` (its `flag` is off), from pacs_node rows as JSON.
fn node_flag_refusal(rows: &[String], calling_ae: &str, flag: &str, verb: &str) -> Option<String> {
    rows.iter()
        .filter_map(|text| serde_json::from_str::<serde_json::Value>(text).ok())
        .any(|row| row.get(flag).and_then(|v| v.as_bool()) == Some(false))
        .then(|| format!("{calling_ae} may not {verb} ({flag} off)"))
}

impl QueryRetrieve {
    async fn node_rows(&self, calling_ae: &str) -> Result<Vec<String>, ReceiptError> {
        let rows = self
            .rows(NODE_BY_AE, &[query::Param::Text(calling_ae.trim().to_string())])
            .await?;
        Ok(rows.into_iter().filter_map(|mut r| r.pop().flatten()).collect())
    }

    /// Whether `calling_ae` is an enabled node (SCP_KNOWN_NODES_ONLY).
    pub async fn known_node(&self, calling_ae: &str) -> Result<bool, ReceiptError> {
        let rows = self.node_rows(calling_ae).await?;
        Ok(rows
            .iter()
            .filter_map(|text| serde_json::from_str::<serde_json::Value>(text).ok())
            .any(|row| row.get("enabled").and_then(|v| v.as_bool()) == Some(true)))
    }

    async fn calling_refusal(
        &self,
        calling_ae: &str,
        service: Service,
    ) -> Result<Option<String>, ReceiptError> {
        Ok(calling_refusal_of(
            &self.node_rows(calling_ae).await?,
            calling_ae,
            service,
        ))
    }
}

/// A Q/R request on this association: its command and, once received, its identifier.
#[derive(Debug, Clone)]
pub struct Request {
    pub pcid: u8,
    pub transfer_syntax: String,
    pub model: Model,
    pub service: Service,
    pub message_id: u16,
    pub sop_class: String,
    pub move_destination: String,
    pub identifier: Vec<u8>,
    /// The facilities whose studies the calling AE may query and retrieve (query::find_query).
    pub facilities: Vec<i64>,
    /// Decided from the command alone: answered once the identifier has been read.
    refusal: Option<(u16, String)>,
}

/// The Q/R state of one association.
#[derive(Debug, Default)]
pub struct QrSession {
    /// The requestor's maximum PDU length (0: no limit).
    pub peer_max_pdu: u32,
    /// Storage SOP classes for which the requestor took the SCP role (C-GET may send them).
    pub scp_role_classes: HashSet<String>,
    /// The calling AE's node flags, read once per association and service kind (query, retrieve).
    refusals: [tokio::sync::OnceCell<Option<String>>; 2],
    /// Why the calling AE may not store (a node with may_store off), read once per association.
    store_refusal: tokio::sync::OnceCell<Option<String>>,
    /// The calling AE's facilities, read once per association.
    facilities: tokio::sync::OnceCell<Vec<i64>>,
    collecting: Option<Request>,
    ready: Option<Request>,
}

impl QrSession {
    pub fn new(rq: &AssociationRQ) -> QrSession {
        let peer_max_pdu = rq
            .user_variables
            .iter()
            .find_map(|u| match u {
                UserVariableItem::MaxLength(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(0);
        let scp_role_classes = rq
            .user_variables
            .iter()
            .filter_map(|u| match u {
                UserVariableItem::ScuScpRoleSelectionSubItem(uid, roles) if roles.scp => {
                    Some(uid_clean(uid).to_string())
                }
                _ => None,
            })
            .filter(|uid| storage_sop_class(uid))
            .collect();
        QrSession {
            peer_max_pdu,
            scp_role_classes,
            refusals: Default::default(),
            facilities: Default::default(),
            store_refusal: Default::default(),
            collecting: None,
            ready: None,
        }
    }

    /// A C-FIND / C-MOVE / C-GET command arrived on `ctx`. Returns the answer when there is nothing more to
    /// read (no identifier follows); otherwise the identifier is collected by `data`.
    pub fn request_begin(&mut self, ctx: &NegotiatedContext, command: &Command) -> Option<Pdu> {
        let field = command.command_field().unwrap_or(0);
        let asked = command.string(dimse::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
        let service = match field {
            dimse::C_MOVE_RQ => Service::Move,
            dimse::C_GET_RQ => Service::Get,
            _ => Service::Find,
        };
        let on_context = sop_class(&ctx.abstract_syntax);
        let refusal = match on_context {
            Some((_, s)) if s == service && asked == ctx.abstract_syntax => None,
            _ => Some((
                status::SOP_CLASS_NOT_SUPPORTED,
                format!("{} of {asked} not on this presentation context", service.name()),
            )),
        };
        let request = Request {
            pcid: ctx.id,
            transfer_syntax: ctx.transfer_syntax.clone(),
            model: on_context.map_or(Model::StudyRoot, |(m, _)| m),
            service,
            message_id: command.message_id(),
            sop_class: asked,
            move_destination: command.string(dimse::MOVE_DESTINATION).unwrap_or_default(),
            identifier: Vec::new(),
            facilities: Vec::new(),
            refusal,
        };
        if command.has_data_set() {
            self.collecting = Some(request);
            return None;
        }
        let (status, comment) = request
            .refusal
            .clone()
            .unwrap_or((status::UNABLE_TO_PROCESS, "request without identifier".into()));
        tracing::warn!(operation = service.name(), status = format!("{status:#06x}"), reason = %comment, "Q/R request refused");
        let rsp = response_command(&request, status, None, false, Some(&comment));
        Some(Pdu::PData {
            data: vec![PDataValue {
                presentation_context_id: ctx.id,
                value_type: PDataValueType::Command,
                is_last: true,
                data: rsp,
            }],
        })
    }

    /// Why the calling AE may not C-STORE: it is a node with may_store off (read on its first C-STORE; AE
    /// titles that are no node may store).
    pub async fn store_refusal(
        &self,
        qr: &QueryRetrieve,
        calling_ae: &str,
    ) -> Result<Option<String>, ReceiptError> {
        self.store_refusal
            .get_or_try_init(|| async {
                let rows = qr.node_rows(calling_ae).await?;
                Ok(node_flag_refusal(&rows, calling_ae, "may_store", "store"))
            })
            .await
            .cloned()
    }

    /// Whether an identifier is being received.
    pub fn collecting(&self) -> bool {
        self.collecting.is_some()
    }

    /// A data fragment of the identifier being received.
    pub fn data(&mut self, pcid: u8, data: &[u8], is_last: bool) -> Result<(), AssociationError> {
        let request = self
            .collecting
            .as_mut()
            .ok_or_else(|| AssociationError::Protocol("data set fragment without a command".into()))?;
        if request.pcid != pcid {
            return Err(AssociationError::Protocol(
                "data set on a different presentation context".into(),
            ));
        }
        if request.identifier.len() + data.len() > 1 << 20 {
            return Err(AssociationError::Protocol("identifier larger than 1 MiB".into()));
        }
        request.identifier.extend_from_slice(data);
        if is_last {
            self.ready = self.collecting.take();
        }
        Ok(())
    }

    /// The request whose identifier is complete, to be served now.
    pub fn ready_take(&mut self) -> Option<Request> {
        self.ready.take()
    }
}

/// A response command set for `request`.
fn response_command(
    request: &Request,
    status: u16,
    counts: Option<&SubOperations>,
    identifier_follows: bool,
    comment: Option<&str>,
) -> Vec<u8> {
    let mut c = CommandSet::new(request.service.request_field() | dimse::RESPONSE_BIT)
        .uid(dimse::AFFECTED_SOP_CLASS_UID, &request.sop_class)
        .us(dimse::MESSAGE_ID_BEING_RESPONDED_TO, request.message_id)
        .us(
            dimse::COMMAND_DATA_SET_TYPE,
            if identifier_follows {
                dimse::DATA_SET_PRESENT
            } else {
                dimse::NO_DATA_SET
            },
        )
        .us(dimse::STATUS, status);
    if let Some(n) = counts {
        // Remaining is part of pending and cancel responses only (PS3.4 C.4.2.3.1).
        if status == status::PENDING || status == status::CANCEL {
            c = c.us(dimse::NUMBER_OF_REMAINING_SUBOPERATIONS, n.remaining_u16());
        }
        c = c
            .us(
                dimse::NUMBER_OF_COMPLETED_SUBOPERATIONS,
                SubOperations::u16(n.completed),
            )
            .us(
                dimse::NUMBER_OF_FAILED_SUBOPERATIONS,
                SubOperations::u16(n.failed),
            )
            .us(
                dimse::NUMBER_OF_WARNING_SUBOPERATIONS,
                SubOperations::u16(n.warning),
            );
    }
    if let Some(comment) = comment {
        c = c.text(dimse::ERROR_COMMENT, comment);
    }
    c.encode()
}

/// The requestor's side of a running operation: responses out, C-CANCEL (and C-GET's C-STORE-RSPs) in.
pub struct Requestor<'a, S> {
    stream: &'a mut S,
    pub request: Request,
    peer_max_pdu: u32,
    read_max: u32,
    timeout: Duration,
    /// A C-CANCEL-RQ for this operation arrived.
    pub cancelled: bool,
}

impl<S: AsyncBufRead + AsyncRead + AsyncWrite + Unpin> Requestor<'_, S> {
    /// Send a response; `identifier` is encoded in the request's transfer syntax.
    pub async fn respond(
        &mut self,
        status: u16,
        counts: Option<&SubOperations>,
        identifier: Option<&InMemDicomObject>,
        comment: Option<&str>,
    ) -> Result<(), AssociationError> {
        let data = match identifier {
            Some(obj) => {
                let ts = TransferSyntaxRegistry
                    .get(&self.request.transfer_syntax)
                    .ok_or_else(|| AssociationError::Protocol("unknown transfer syntax".into()))?;
                let mut bytes = Vec::with_capacity(512);
                obj.write_dataset_with_ts(&mut bytes, ts)
                    .map_err(|e| AssociationError::Protocol(format!("cannot encode identifier: {e}")))?;
                Some(bytes)
            }
            None => None,
        };
        let command = response_command(&self.request, status, counts, data.is_some(), comment);
        tokio::time::timeout(
            self.timeout,
            scu::message_write(
                self.stream,
                self.request.pcid,
                self.peer_max_pdu,
                &command,
                data.as_deref(),
            ),
        )
        .await
        .map_err(|_| AssociationError::Timeout("sending a response"))??;
        Ok(())
    }

    /// A failure answer with its comment.
    pub async fn fail(&mut self, status: u16, comment: &str) -> Result<(), AssociationError> {
        tracing::warn!(
            operation = self.request.service.name(), status = format!("{status:#06x}"), reason = %comment,
            "Q/R request failed"
        );
        self.respond(status, None, None, Some(comment)).await
    }

    /// Without waiting: whether the requestor has cancelled (reads what it sent, if anything).
    pub async fn cancel_poll(&mut self) -> Result<bool, AssociationError> {
        if self.cancelled {
            return Ok(true);
        }
        // One poll of the read buffer, no timer (a zero timeout still waits for the timer's next millisecond
        // tick): whatever it reads stays in the buffer for message_next.
        let stream = &mut *self.stream;
        let polled = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(match std::pin::Pin::new(&mut *stream).poll_fill_buf(cx) {
                std::task::Poll::Ready(Ok(buf)) => Some(Ok(!buf.is_empty())),
                std::task::Poll::Ready(Err(e)) => Some(Err(e)),
                std::task::Poll::Pending => None,
            })
        })
        .await;
        let waiting = match polled {
            None => false,
            Some(Ok(true)) => true,
            Some(Ok(false)) => return Err(AssociationError::Closed),
            Some(Err(e)) => return Err(e.into()),
        };
        if waiting {
            let message = self.message_next().await?;
            if is_cancel(&message) {
                // A cancel naming another message ID is ignored.
                return Ok(self.cancelled);
            }
            return Err(AssociationError::Protocol(format!(
                "command {:#06x} during a {}",
                message.command.command_field().unwrap_or(0),
                self.request.service.name()
            )));
        }
        Ok(self.cancelled)
    }

    /// The next message, waiting at most the response timeout. A C-CANCEL-RQ for this operation sets
    /// `cancelled` (and is returned like any message).
    pub async fn message_next(&mut self) -> Result<Message, AssociationError> {
        let received = tokio::time::timeout(self.timeout, scu::message_read(self.stream, self.read_max))
            .await
            .map_err(|_| AssociationError::Timeout("waiting for the requestor"))??;
        match received {
            Received::Message(m) if m.command.command_field() == Some(dimse::C_CANCEL_RQ) => {
                if m.command.u16(dimse::MESSAGE_ID_BEING_RESPONDED_TO) == Some(self.request.message_id) {
                    tracing::info!(operation = self.request.service.name(), "C-CANCEL received");
                    self.cancelled = true;
                }
                Ok(m)
            }
            Received::Message(m) => Ok(m),
            Received::Abort => Err(AssociationError::Aborted),
            Received::ReleaseRequest => Err(AssociationError::Protocol(format!(
                "A-RELEASE-RQ during a {}",
                self.request.service.name()
            ))),
        }
    }

    /// Send a command and data set on `pcid` of this association (C-GET's C-STORE-RQ).
    pub async fn send(&mut self, pcid: u8, command: &[u8], data: &[u8]) -> Result<(), AssociationError> {
        tokio::time::timeout(
            self.timeout,
            scu::message_write(self.stream, pcid, self.peer_max_pdu, command, Some(data)),
        )
        .await
        .map_err(|_| AssociationError::Timeout("sending a C-STORE-RQ"))??;
        Ok(())
    }
}

/// Whether a message is a C-CANCEL-RQ.
pub fn is_cancel(message: &Message) -> bool {
    message.command.command_field() == Some(dimse::C_CANCEL_RQ)
}

/// Serve a request whose identifier is complete, until its final response.
pub async fn operation_serve<S>(
    stream: &mut S,
    services: &Services,
    session: &QrSession,
    contexts: &[NegotiatedContext],
    calling_ae: &str,
    request: Request,
) -> Result<(), AssociationError>
where
    S: AsyncBufRead + AsyncRead + AsyncWrite + Unpin,
{
    let qr = &services.qr;
    let started = Instant::now();
    let service = request.service;
    let mut request = request;
    let refusal = request.refusal.take();
    let identifier = std::mem::take(&mut request.identifier);
    let mut requestor = Requestor {
        stream,
        request,
        peer_max_pdu: session.peer_max_pdu,
        read_max: qr.max_pdu_length,
        timeout: qr.response_timeout,
        cancelled: false,
    };
    if let Some((status, comment)) = refusal {
        return requestor.fail(status, &comment).await;
    }
    let cell = &session.refusals[usize::from(service != Service::Find)];
    match cell
        .get_or_try_init(|| qr.calling_refusal(calling_ae, service))
        .await
        .cloned()
    {
        Ok(None) => {}
        Ok(Some(why)) => return requestor.fail(status::NOT_AUTHORIZED, &why).await,
        Err(e) => {
            tracing::error!(error = %e, "cannot read pacs_node");
            return requestor.fail(status::OUT_OF_RESOURCES, &e.to_string()).await;
        }
    }
    let facilities = session
        .facilities
        .get_or_try_init(|| async {
            let ae = query::Param::Text(calling_ae.trim().to_string());
            qr.rows(FACILITIES_BY_AE, &[ae])
                .await
                .map(|rows| visible_facilities_of(&rows))
        })
        .await;
    match facilities {
        Ok(ids) => requestor.request.facilities = ids.clone(),
        Err(e) => {
            tracing::error!(error = %e, "cannot read facilities_facilityae");
            return requestor.fail(status::OUT_OF_RESOURCES, &e.to_string()).await;
        }
    }
    let result = match service {
        Service::Find => find_serve(&mut requestor, qr, &identifier, calling_ae).await,
        Service::Move => retrieve::move_serve(&mut requestor, qr, &identifier, calling_ae).await,
        Service::Get => {
            retrieve::get_serve(
                &mut requestor,
                qr,
                &identifier,
                contexts,
                &session.scp_role_classes,
            )
            .await
        }
    };
    tracing::debug!(
        operation = service.name(),
        ms = started.elapsed().as_millis() as u64,
        "Q/R operation done"
    );
    result
}

async fn find_serve<S>(
    req: &mut Requestor<'_, S>,
    qr: &QueryRetrieve,
    identifier: &[u8],
    calling_ae: &str,
) -> Result<(), AssociationError>
where
    S: AsyncBufRead + AsyncRead + AsyncWrite + Unpin,
{
    let started = Instant::now();
    let model = req.request.model;
    let identifier = match Identifier::decode(identifier, &req.request.transfer_syntax, model) {
        Ok(i) => i,
        Err(e) => return req.fail(e.status(), &e.to_string()).await,
    };
    let query = match query::find_query(&identifier, model, &qr.ae_title, &req.request.facilities) {
        Ok(q) => q,
        Err(e) => return req.fail(e.status(), &e.to_string()).await,
    };
    let mut matches = match qr.matches(&query.sql, &query.params).await {
        Ok(matches) => matches,
        Err(e) => {
            tracing::error!(error = %e, "C-FIND query failed");
            return req.fail(status::OUT_OF_RESOURCES, &e.to_string()).await;
        }
    };
    let pending = if query.unsupported_keys {
        status::PENDING_KEYS_UNSUPPORTED
    } else {
        status::PENDING
    };
    let mut sent = 0usize;
    loop {
        if req.cancel_poll().await? {
            break;
        }
        let row = match matches.next().await {
            Ok(Some(row)) => row,
            Ok(None) => break,
            // Some matches may have gone out already; the final status says the rest could not.
            Err(e) => {
                tracing::error!(error = %e, sent, "C-FIND query failed part-way");
                return req.fail(status::OUT_OF_RESOURCES, &e.to_string()).await;
            }
        };
        req.respond(pending, None, Some(&query.response(&row)), None)
            .await?;
        sent += 1;
    }
    let final_status = if req.cancelled {
        status::CANCEL
    } else {
        status::SUCCESS
    };
    tracing::info!(
        model = model.name(), level = query.level.name(), sent,
        status = format!("{final_status:#06x}"), ms = started.elapsed().as_millis() as u64,
        calling = %calling_ae, "C-FIND"
    );
    req.respond(final_status, None, None, None).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PresentationContextProposed;

    #[test]
    fn qr_classes_are_known_with_their_model_and_service() {
        assert_eq!(
            sop_class(STUDY_ROOT_FIND),
            Some((Model::StudyRoot, Service::Find))
        );
        assert_eq!(
            sop_class(PATIENT_ROOT_GET),
            Some((Model::PatientRoot, Service::Get))
        );
        assert_eq!(sop_class("1.2.840.10008.5.1.4.1.2.3.1"), None); // Patient/Study Only (retired)
        assert_eq!(transfer_syntaxes_for(STUDY_ROOT_MOVE), Some(TRANSFER_SYNTAXES));
        assert_eq!(transfer_syntaxes_for("1.2.840.10008.5.1.4.1.1.2"), None);
    }

    #[test]
    fn role_selection_is_accepted_for_storage_and_limited_to_scu_elsewhere() {
        let rq = AssociationRQ {
            protocol_version: 1,
            calling_ae_title: "GETSCU".into(),
            called_ae_title: "NOCTIS".into(),
            application_context_name: crate::association::APPLICATION_CONTEXT_NAME.into(),
            presentation_contexts: vec![PresentationContextProposed {
                id: 1,
                abstract_syntax: STUDY_ROOT_GET.into(),
                transfer_syntaxes: vec!["1.2.840.10008.1.2".into()],
            }],
            user_variables: vec![
                UserVariableItem::MaxLength(16384),
                UserVariableItem::ScuScpRoleSelectionSubItem(
                    "1.2.840.10008.5.1.4.1.1.2\0".into(),
                    RequestorRoles {
                        scu: false,
                        scp: true,
                    },
                ),
                UserVariableItem::ScuScpRoleSelectionSubItem(
                    STUDY_ROOT_GET.into(),
                    RequestorRoles { scu: true, scp: true },
                ),
                UserVariableItem::ScuScpRoleSelectionSubItem(
                    "1.2.3.4".into(),
                    RequestorRoles { scu: true, scp: true },
                ),
            ],
        };
        assert_eq!(
            role_replies(&rq),
            vec![
                UserVariableItem::ScuScpRoleSelectionSubItem(
                    "1.2.840.10008.5.1.4.1.1.2".into(),
                    RequestorRoles {
                        scu: false,
                        scp: true
                    }
                ),
                UserVariableItem::ScuScpRoleSelectionSubItem(
                    STUDY_ROOT_GET.into(),
                    RequestorRoles {
                        scu: true,
                        scp: false
                    }
                ),
            ]
        );
        let session = QrSession::new(&rq);
        assert_eq!(session.peer_max_pdu, 16384);
        assert_eq!(
            session.scp_role_classes,
            HashSet::from(["1.2.840.10008.5.1.4.1.1.2".to_string()])
        );
    }

    #[test]
    fn qr_contexts_are_accepted_in_little_endian_only_and_roles_answered() {
        use crate::association::{negotiate, Negotiation, Policy};
        use dicom_ul::pdu::PresentationContextResultReason as Reason;
        let rq = AssociationRQ {
            protocol_version: 1,
            calling_ae_title: "GETSCU".into(),
            called_ae_title: "NOCTIS".into(),
            application_context_name: crate::association::APPLICATION_CONTEXT_NAME.into(),
            presentation_contexts: vec![
                PresentationContextProposed {
                    id: 1,
                    abstract_syntax: STUDY_ROOT_FIND.into(),
                    transfer_syntaxes: vec!["1.2.840.10008.1.2.4.50".into(), "1.2.840.10008.1.2".into()],
                },
                PresentationContextProposed {
                    id: 3,
                    abstract_syntax: PATIENT_ROOT_GET.into(),
                    transfer_syntaxes: vec!["1.2.840.10008.1.2.4.50".into()],
                },
                PresentationContextProposed {
                    id: 5,
                    abstract_syntax: "1.2.840.10008.5.1.4.1.1.2".into(),
                    transfer_syntaxes: vec!["1.2.840.10008.1.2.4.50".into()],
                },
            ],
            user_variables: vec![UserVariableItem::ScuScpRoleSelectionSubItem(
                "1.2.840.10008.5.1.4.1.1.2".into(),
                RequestorRoles {
                    scu: false,
                    scp: true,
                },
            )],
        };
        let policy = Policy {
            ae_title: "NOCTIS".into(),
            allowed_calling: vec![],
            max_pdu_length: 65536,
        };
        let Negotiation::Accept(ac, accepted) = negotiate(&rq, &policy) else {
            panic!("rejected")
        };
        let reasons: Vec<_> = ac
            .presentation_contexts
            .iter()
            .map(|p| p.reason.clone())
            .collect();
        assert_eq!(
            reasons,
            vec![
                Reason::Acceptance,
                Reason::TransferSyntaxesNotSupported,
                Reason::Acceptance
            ]
        );
        assert_eq!(accepted[0].transfer_syntax, "1.2.840.10008.1.2");
        // Storage keeps the stored syntax (JPEG here) for C-GET to send as is.
        assert_eq!(accepted[1].transfer_syntax, "1.2.840.10008.1.2.4.50");
        assert!(ac
            .user_variables
            .contains(&UserVariableItem::ScuScpRoleSelectionSubItem(
                "1.2.840.10008.5.1.4.1.1.2".into(),
                RequestorRoles {
                    scu: false,
                    scp: true
                }
            )));
    }

    #[test]
    fn nodes_with_query_or_retrieve_off_are_refused() {
        let row = r#"{"ae_title": "WS1", "may_query": false, "may_retrieve": true}"#.to_string();
        assert_eq!(
            calling_refusal_of(std::slice::from_ref(&row), "WS1", Service::Find).as_deref(),
            Some("WS1 may not query (may_query off)")
        );
        assert_eq!(
            calling_refusal_of(std::slice::from_ref(&row), "WS1", Service::Move),
            None
        );
        assert_eq!(calling_refusal_of(&[], "ANY", Service::Get), None);
        let row = r#"{"ae_title": "CT9", "may_store": false}"#.to_string();
        assert_eq!(
            node_flag_refusal(std::slice::from_ref(&row), "CT9", "may_store", "store").as_deref(),
            Some("CT9 may not store (may_store off)")
        );
        let old_schema = r#"{"ae_title": "WS1"}"#.to_string();
        assert_eq!(calling_refusal_of(&[old_schema], "WS1", Service::Find), None);
    }

    #[test]
    fn unmapped_calling_aes_see_unassigned_studies_mapped_ones_their_facilities() {
        assert_eq!(visible_facilities_of(&[]), vec![0]);
        let rows = vec![vec![Some("4".to_string())], vec![Some("9".to_string())]];
        assert_eq!(visible_facilities_of(&rows), vec![4, 9]);
    }

    #[test]
    fn a_find_on_a_move_context_is_refused_once_its_identifier_is_read() {
        let ctx = NegotiatedContext {
            id: 5,
            abstract_syntax: STUDY_ROOT_MOVE.into(),
            transfer_syntax: TRANSFER_SYNTAXES[0].into(),
        };
        let bytes = CommandSet::new(dimse::C_FIND_RQ)
            .uid(dimse::AFFECTED_SOP_CLASS_UID, STUDY_ROOT_FIND)
            .us(dimse::MESSAGE_ID, 7)
            .us(dimse::COMMAND_DATA_SET_TYPE, dimse::DATA_SET_PRESENT)
            .encode();
        let mut session = QrSession::default();
        assert!(session
            .request_begin(&ctx, &Command::parse(&bytes).unwrap())
            .is_none());
        assert!(session.collecting());
        session.data(5, b"ab", false).unwrap();
        assert!(session.data(3, b"cd", true).is_err());
        session.data(5, b"cd", true).unwrap();
        let request = session.ready_take().unwrap();
        assert_eq!(request.identifier, b"abcd");
        assert_eq!(request.refusal.unwrap().0, status::SOP_CLASS_NOT_SUPPORTED);
        // Without an identifier the answer is immediate.
        let bytes = CommandSet::new(dimse::C_MOVE_RQ)
            .uid(dimse::AFFECTED_SOP_CLASS_UID, STUDY_ROOT_MOVE)
            .us(dimse::MESSAGE_ID, 8)
            .us(dimse::COMMAND_DATA_SET_TYPE, dimse::NO_DATA_SET)
            .encode();
        let Some(Pdu::PData { data }) = session.request_begin(&ctx, &Command::parse(&bytes).unwrap()) else {
            panic!()
        };
        let rsp = Command::parse(&data[0].data).unwrap();
        assert_eq!(rsp.command_field(), Some(0x8021));
        assert_eq!(rsp.u16(dimse::STATUS), Some(status::UNABLE_TO_PROCESS));
        assert_eq!(rsp.u16(dimse::MESSAGE_ID_BEING_RESPONDED_TO), Some(8));
    }
}
