//! Association policy (who and what we accept) and the life of one association: A-ASSOCIATE, P-DATA
//! carrying C-ECHO / C-STORE, A-RELEASE, A-ABORT, with the ARTIM, idle and duration limits.

use std::sync::Arc;
use std::time::{Duration, Instant};

use dicom_core::dictionary::UidDictionary;
use dicom_dictionary_std::StandardSopClassDictionary;
use dicom_ul::pdu::{
    AbortRQServiceProviderReason, AbortRQSource, AssociationAC, AssociationRJ, AssociationRJResult,
    AssociationRJServiceProviderASCEReason, AssociationRJServiceProviderPresentationReason,
    AssociationRJServiceUserReason, AssociationRJSource, AssociationRQ, PDataValue, PDataValueType,
    PresentationContextResult, PresentationContextResultReason, UserVariableItem,
};
use dicom_ul::Pdu;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::config::Config;
use crate::dimse::{self, Command};
use crate::error::{AssociationError, StoreError};
use crate::health::Metrics;
use crate::notify::Notifier;
use crate::status;
use crate::store::{
    BufferPool, Incoming, Storage, StoreOutcome, StoreRequest, IMPLEMENTATION_CLASS_UID,
    IMPLEMENTATION_VERSION_NAME,
};

pub const APPLICATION_CONTEXT_NAME: &str = "1.2.840.10008.3.1.1.1";
pub const VERIFICATION_SOP_CLASS: &str = "1.2.840.10008.1.1";

/// Transfer syntaxes we accept, stored as received (never transcoded).
pub const TRANSFER_SYNTAXES: &[&str] = &[
    "1.2.840.10008.1.2",      // Implicit VR Little Endian
    "1.2.840.10008.1.2.1",    // Explicit VR Little Endian
    "1.2.840.10008.1.2.2",    // Explicit VR Big Endian (retired, still sent by old modalities)
    "1.2.840.10008.1.2.1.99", // Deflated Explicit VR Little Endian
    "1.2.840.10008.1.2.4.50", // JPEG Baseline
    "1.2.840.10008.1.2.4.51", // JPEG Extended
    "1.2.840.10008.1.2.4.57", // JPEG Lossless
    "1.2.840.10008.1.2.4.70", // JPEG Lossless SV1
    "1.2.840.10008.1.2.4.80", // JPEG-LS Lossless
    "1.2.840.10008.1.2.4.81", // JPEG-LS Near-Lossless
    "1.2.840.10008.1.2.4.90", // JPEG 2000 Lossless
    "1.2.840.10008.1.2.4.91", // JPEG 2000
    "1.2.840.10008.1.2.5",    // RLE Lossless
];

/// Whether a SOP class UID is one of the standard's storage SOP classes. The dictionary names them
/// "... Storage" (some with " - For Presentation", " - Trial (Retired)"...); Storage Commitment and the
/// print "... Storage SOP Class" entries are services, not storage, and DICOMDIR is media only.
pub fn storage_sop_class(uid: &str) -> bool {
    StandardSopClassDictionary.by_uid(uid).is_some_and(|e| {
        e.name.contains("Storage")
            && !e.name.contains("SOP Class")
            && !e.name.starts_with("Media Storage Directory")
    })
}

pub fn abstract_syntax_supported(uid: &str) -> bool {
    uid == VERIFICATION_SOP_CLASS || storage_sop_class(uid) || crate::query_retrieve::sop_class_supported(uid)
}

/// A presentation context we accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NegotiatedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

#[derive(Debug)]
pub enum Negotiation {
    Accept(AssociationAC, Vec<NegotiatedContext>),
    Reject(AssociationRJ),
}

/// Who may associate with us.
#[derive(Debug, Clone)]
pub struct Policy {
    pub ae_title: String,
    /// Empty: any calling AE title.
    pub allowed_calling: Vec<String>,
    pub max_pdu_length: u32,
}

/// The negotiation policy: called AE must be ours (trimmed), the calling AE known when a list is
/// configured, DICOM application context, then each presentation context gets the first proposed
/// transfer syntax we support.
pub fn negotiate(rq: &AssociationRQ, policy: &Policy) -> Negotiation {
    let (ae_title, max_pdu_length) = (policy.ae_title.as_str(), policy.max_pdu_length);
    if rq.protocol_version & 1 == 0 {
        return Negotiation::Reject(AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceProviderASCE(
                AssociationRJServiceProviderASCEReason::ProtocolVersionNotSupported,
            ),
        });
    }
    if rq.called_ae_title.trim() != ae_title.trim() {
        return Negotiation::Reject(AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CalledAETitleNotRecognized,
            ),
        });
    }
    if !policy.allowed_calling.is_empty()
        && !policy
            .allowed_calling
            .iter()
            .any(|a| a.trim() == rq.calling_ae_title.trim())
    {
        return Negotiation::Reject(AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
            ),
        });
    }
    if rq.application_context_name.trim_end_matches('\0').trim() != APPLICATION_CONTEXT_NAME {
        return Negotiation::Reject(AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::ApplicationContextNameNotSupported,
            ),
        });
    }
    let mut results = Vec::with_capacity(rq.presentation_contexts.len());
    let mut accepted = Vec::new();
    for pc in &rq.presentation_contexts {
        let abstract_syntax = pc.abstract_syntax.trim_end_matches('\0').trim();
        let (reason, ts) = if !abstract_syntax_supported(abstract_syntax) {
            (
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                pc.transfer_syntaxes.first(),
            )
        } else {
            let supported =
                crate::query_retrieve::transfer_syntaxes_for(abstract_syntax).unwrap_or(TRANSFER_SYNTAXES);
            match pc
                .transfer_syntaxes
                .iter()
                .find(|ts| supported.contains(&ts.trim_end_matches('\0').trim()))
            {
                Some(ts) => (PresentationContextResultReason::Acceptance, Some(ts)),
                None => (
                    PresentationContextResultReason::TransferSyntaxesNotSupported,
                    pc.transfer_syntaxes.first(),
                ),
            }
        };
        let transfer_syntax = ts
            .map(|t| t.trim_end_matches('\0').trim().to_string())
            .unwrap_or_default();
        if reason == PresentationContextResultReason::Acceptance {
            accepted.push(NegotiatedContext {
                id: pc.id,
                abstract_syntax: abstract_syntax.to_string(),
                transfer_syntax: transfer_syntax.clone(),
            });
        }
        results.push(PresentationContextResult {
            id: pc.id,
            reason,
            transfer_syntax,
        });
    }
    let mut ac = AssociationAC {
        protocol_version: 1,
        calling_ae_title: rq.calling_ae_title.clone(),
        called_ae_title: rq.called_ae_title.clone(),
        application_context_name: APPLICATION_CONTEXT_NAME.to_string(),
        presentation_contexts: results,
        user_variables: vec![
            UserVariableItem::MaxLength(max_pdu_length),
            UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
            UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.to_string()),
        ],
    };
    ac.user_variables.extend(crate::query_retrieve::role_replies(rq));
    Negotiation::Accept(ac, accepted)
}

/// Everything an association needs, shared by all of them.
pub struct Services {
    pub config: Arc<Config>,
    pub storage: Arc<Storage>,
    pub notifier: Notifier,
    pub metrics: Arc<Metrics>,
    pub qr: crate::query_retrieve::QueryRetrieve,
}

/// Largest non-P-DATA PDU we read (an A-ASSOCIATE-RQ with many contexts stays far below).
const MAX_CONTROL_PDU: u32 = 1024 * 1024;

/// How much of the socket we read at once: PDU and PDV headers come out of this buffer, while PDV
/// data larger than it is read straight into its own buffer (one copy, kernel to the buffer that the
/// temp file writer takes).
const READ_BUFFER: usize = 16 * 1024;

/// The connection: reads buffered, writes unbuffered (each response PDU goes out at once).
type Stream = BufReader<TcpStream>;

async fn pdu_read<S: AsyncRead + Unpin>(
    stream: &mut S,
    max_pdu_length: u32,
    buffers: &BufferPool,
) -> Result<Pdu, AssociationError> {
    let mut head = [0u8; 6];
    match stream.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(AssociationError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    let limit = if head[0] == 0x04 {
        max_pdu_length
    } else {
        MAX_CONTROL_PDU
    };
    if len > limit {
        return Err(AssociationError::Protocol(format!(
            "PDU type {:#04x} of {len} bytes exceeds the limit of {limit}",
            head[0]
        )));
    }
    if head[0] == 0x04 {
        return pdata_read(stream, len, buffers).await;
    }
    let mut buf = vec![0u8; 6 + len as usize];
    buf[..6].copy_from_slice(&head);
    stream.read_exact(&mut buf[6..]).await?;
    match dicom_ul::read_pdu(&buf[..], dicom_ul::pdu::MAXIMUM_PDU_SIZE, false) {
        Ok(Some(pdu)) => Ok(pdu),
        Ok(None) => Err(AssociationError::Protocol("incomplete PDU".into())),
        Err(e) => Err(AssociationError::Protocol(e.to_string())),
    }
}

/// The items of a P-DATA-TF PDU of `len` bytes (PS3.8 9.3.5), each PDV's data read into a pooled
/// buffer, with the checks dicom-ul's reader makes (item length at least 2, items fill the PDU).
async fn pdata_read<S: AsyncRead + Unpin>(
    stream: &mut S,
    len: u32,
    buffers: &BufferPool,
) -> Result<Pdu, AssociationError> {
    let mut left = len as usize;
    let mut data = Vec::with_capacity(1);
    while left > 0 {
        if left < 6 {
            return Err(AssociationError::Protocol("invalid PDU field length".into()));
        }
        let mut item = [0u8; 6];
        stream.read_exact(&mut item).await?;
        let item_length = u32::from_be_bytes([item[0], item[1], item[2], item[3]]) as usize;
        if item_length < 2 {
            return Err(AssociationError::Protocol(format!(
                "invalid PDV item length {item_length}"
            )));
        }
        if item_length > left - 4 {
            return Err(AssociationError::Protocol("invalid PDU field length".into()));
        }
        let mut value = buffers.take(item_length - 2);
        stream.read_exact(&mut value).await?;
        left -= 4 + item_length;
        data.push(PDataValue {
            presentation_context_id: item[4],
            value_type: if item[5] & 0x01 != 0 {
                PDataValueType::Command
            } else {
                PDataValueType::Data
            },
            is_last: item[5] & 0x02 != 0,
            data: value,
        });
    }
    Ok(Pdu::PData { data })
}

async fn pdu_write<S: AsyncWrite + Unpin>(stream: &mut S, pdu: &Pdu) -> Result<(), AssociationError> {
    let mut buf = Vec::with_capacity(256);
    dicom_ul::write_pdu(&mut buf, pdu).map_err(|e| AssociationError::Protocol(e.to_string()))?;
    stream.write_all(&buf).await?;
    stream.flush().await?;
    Ok(())
}

async fn abort(stream: &mut Stream, reason: AbortRQServiceProviderReason) {
    let pdu = Pdu::AbortRQ {
        source: AbortRQSource::ServiceProvider(reason),
    };
    let _ = pdu_write(stream, &pdu).await;
    let _ = stream.shutdown().await;
}

/// Over the association limit: read the request (within ARTIM) and refuse it as a transient
/// "local limit exceeded", so the modality retries later.
pub async fn association_reject_busy(stream: TcpStream, artim: Duration) {
    let mut stream = BufReader::with_capacity(READ_BUFFER, stream);
    let buffers = BufferPool::default();
    if let Ok(Ok(Pdu::AssociationRQ(_))) =
        tokio::time::timeout(artim, pdu_read(&mut stream, 16 * 1024, &buffers)).await
    {
        let rj = AssociationRJ {
            result: AssociationRJResult::Transient,
            source: AssociationRJSource::ServiceProviderPresentation(
                AssociationRJServiceProviderPresentationReason::LocalLimitExceeded,
            ),
        };
        let _ = pdu_write(&mut stream, &Pdu::AssociationRJ(rj)).await;
    }
    let _ = stream.shutdown().await;
}

/// SCP_KNOWN_NODES_ONLY: a calling AE that is no enabled node gets "calling AE title not recognized"; when the
/// node table cannot be read, a transient rejection (the peer may retry).
async fn known_node_refusal(services: &Services, calling_ae: &str) -> Option<AssociationRJ> {
    match services.qr.known_node(calling_ae).await {
        Ok(true) => None,
        Ok(false) => Some(AssociationRJ {
            result: AssociationRJResult::Permanent,
            source: AssociationRJSource::ServiceUser(
                AssociationRJServiceUserReason::CallingAETitleNotRecognized,
            ),
        }),
        Err(e) => {
            tracing::error!(error = %e, "cannot read pacs_node");
            Some(AssociationRJ {
                result: AssociationRJResult::Transient,
                source: AssociationRJSource::ServiceProviderPresentation(
                    AssociationRJServiceProviderPresentationReason::TemporaryCongestion,
                ),
            })
        }
    }
}

/// Why a pending DIMSE operation will fail, decided before its data set arrives.
struct Failure {
    status: u16,
    comment: String,
}

/// A request whose data set is being received.
struct Pending {
    pcid: u8,
    command_field: u16,
    message_id: u16,
    sop_class: String,
    sop_instance: String,
    sink: Result<Incoming, Failure>,
    started: Instant,
    /// When the last fragment of the data set arrived.
    received: Option<Instant>,
}

struct Session<'a> {
    services: &'a Services,
    contexts: Vec<NegotiatedContext>,
    calling_ae: String,
    called_ae: String,
    command: Vec<u8>,
    pending: Option<Pending>,
    qr: crate::query_retrieve::QrSession,
}

/// Serve one accepted TCP connection until release, abort, timeout or error.
pub async fn association_serve(stream: TcpStream, services: &Services) {
    let peer = stream.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let mut stream = BufReader::with_capacity(READ_BUFFER, stream);
    let cfg = &services.config;
    let buffers = services.storage.buffers();
    let rq = match tokio::time::timeout(
        cfg.artim_timeout,
        pdu_read(&mut stream, cfg.max_pdu_length, buffers),
    )
    .await
    {
        Ok(Ok(Pdu::AssociationRQ(rq))) => rq,
        Ok(Ok(other)) => {
            tracing::warn!(%peer, pdu = %other.short_description(), "expected A-ASSOCIATE-RQ");
            abort(&mut stream, AbortRQServiceProviderReason::UnexpectedPdu).await;
            return;
        }
        Ok(Err(e)) => {
            tracing::info!(%peer, error = %e, "connection ended before association");
            abort(&mut stream, AbortRQServiceProviderReason::InvalidPduParameter).await;
            return;
        }
        Err(_) => {
            tracing::info!(%peer, "ARTIM timeout waiting for A-ASSOCIATE-RQ");
            let _ = stream.shutdown().await;
            return;
        }
    };
    let calling_ae = rq.calling_ae_title.trim().to_string();
    let called_ae = rq.called_ae_title.trim().to_string();
    let policy = Policy {
        ae_title: cfg.ae_title.clone(),
        allowed_calling: cfg.allowed_calling_aes.clone(),
        max_pdu_length: cfg.max_pdu_length,
    };
    let mut negotiation = negotiate(&rq, &policy);
    if matches!(negotiation, Negotiation::Accept(..))
        && cfg.known_nodes_only
        && !cfg.always_admitted.contains(&calling_ae)
    {
        if let Some(rj) = known_node_refusal(services, &calling_ae).await {
            negotiation = Negotiation::Reject(rj);
        }
    }
    let (ac, contexts) = match negotiation {
        Negotiation::Accept(ac, contexts) => (ac, contexts),
        Negotiation::Reject(rj) => {
            tracing::warn!(%peer, calling = %calling_ae, called = %called_ae, reason = %rj.source, "association rejected");
            services.metrics.associations_rejected.inc();
            let _ = pdu_write(&mut stream, &Pdu::AssociationRJ(rj)).await;
            let _ = stream.shutdown().await;
            return;
        }
    };
    if pdu_write(&mut stream, &Pdu::AssociationAC(ac)).await.is_err() {
        return;
    }
    services.metrics.associations_accepted.inc();
    tracing::info!(%peer, calling = %calling_ae, called = %called_ae, contexts = contexts.len(), "association accepted");

    let deadline = Instant::now() + cfg.association_timeout;
    let mut session = Session {
        services,
        contexts,
        calling_ae: calling_ae.clone(),
        called_ae,
        command: Vec::new(),
        pending: None,
        qr: crate::query_retrieve::QrSession::new(&rq),
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            tracing::warn!(%peer, calling = %calling_ae, "association exceeded its maximum duration; aborting");
            abort(&mut stream, AbortRQServiceProviderReason::ReasonNotSpecified).await;
            return;
        }
        let pdu = match tokio::time::timeout(
            cfg.idle_timeout.min(left),
            pdu_read(&mut stream, cfg.max_pdu_length, buffers),
        )
        .await
        {
            Err(_) => {
                tracing::warn!(%peer, calling = %calling_ae, "association idle too long; aborting");
                abort(&mut stream, AbortRQServiceProviderReason::ReasonNotSpecified).await;
                return;
            }
            Ok(Err(AssociationError::Closed)) => {
                tracing::info!(%peer, "peer closed the connection");
                return;
            }
            Ok(Err(e)) => {
                tracing::warn!(%peer, error = %e, "protocol error; aborting");
                abort(&mut stream, AbortRQServiceProviderReason::InvalidPduParameter).await;
                return;
            }
            Ok(Ok(pdu)) => pdu,
        };
        match pdu {
            Pdu::PData { data } => {
                for pdv in data {
                    match session.pdv_handle(pdv).await {
                        Ok(Some(response)) => {
                            if let Err(e) = pdu_write(&mut stream, &response).await {
                                tracing::warn!(%peer, error = %e, "cannot send response");
                                return;
                            }
                        }
                        Ok(None) => {
                            if let Some(request) = session.qr.ready_take() {
                                let served = crate::query_retrieve::operation_serve(
                                    &mut stream,
                                    services,
                                    &session.qr,
                                    &session.contexts,
                                    &calling_ae,
                                    request,
                                )
                                .await;
                                if let Err(e) = served {
                                    tracing::warn!(%peer, error = %e, "query/retrieve operation ended the association");
                                    if !matches!(e, AssociationError::Aborted | AssociationError::Closed) {
                                        abort(
                                            &mut stream,
                                            AbortRQServiceProviderReason::UnexpectedPduParameter,
                                        )
                                        .await;
                                    }
                                    return;
                                }
                            }
                        }
                        Err(e) => {
                            tracing::warn!(%peer, error = %e, "protocol error; aborting");
                            abort(&mut stream, AbortRQServiceProviderReason::UnexpectedPduParameter).await;
                            return;
                        }
                    }
                }
            }
            Pdu::ReleaseRQ => {
                let _ = pdu_write(&mut stream, &Pdu::ReleaseRP).await;
                let _ = stream.shutdown().await;
                tracing::info!(%peer, calling = %calling_ae, "association released");
                return;
            }
            Pdu::AbortRQ { .. } => {
                tracing::info!(%peer, calling = %calling_ae, "association aborted by peer");
                return;
            }
            other => {
                tracing::warn!(%peer, pdu = %other.short_description(), "unexpected PDU; aborting");
                abort(&mut stream, AbortRQServiceProviderReason::UnexpectedPdu).await;
                return;
            }
        }
    }
}

impl Session<'_> {
    fn context(&self, pcid: u8) -> Option<&NegotiatedContext> {
        self.contexts.iter().find(|c| c.id == pcid)
    }

    /// Handle one PDV; returns the response P-DATA when an operation completes.
    async fn pdv_handle(&mut self, pdv: PDataValue) -> Result<Option<Pdu>, AssociationError> {
        let Some(ctx) = self.context(pdv.presentation_context_id).cloned() else {
            return Err(AssociationError::Protocol(format!(
                "PDV on presentation context {} which was not accepted",
                pdv.presentation_context_id
            )));
        };
        match pdv.value_type {
            PDataValueType::Command => {
                if self.pending.is_some() || self.qr.collecting() {
                    return Err(AssociationError::Protocol(
                        "command fragment while a data set was expected".into(),
                    ));
                }
                self.command.extend_from_slice(&pdv.data);
                self.services.storage.buffers().give(pdv.data);
                if !pdv.is_last {
                    return Ok(None);
                }
                let command = Command::parse(&std::mem::take(&mut self.command))?;
                self.command_handle(&ctx, command).await
            }
            PDataValueType::Data => {
                if self.qr.collecting() {
                    self.qr.data(ctx.id, &pdv.data, pdv.is_last)?;
                    return Ok(None);
                }
                let Some(pending) = self.pending.as_mut() else {
                    return Err(AssociationError::Protocol(
                        "data set fragment without a command".into(),
                    ));
                };
                if pending.pcid != ctx.id {
                    return Err(AssociationError::Protocol(
                        "data set on a different presentation context".into(),
                    ));
                }
                if let Ok(incoming) = pending.sink.as_mut() {
                    if let Err(e) = incoming.write(pdv.data).await {
                        tracing::error!(error = %e, "cannot write incoming data set");
                        pending.sink = Err(Failure {
                            status: status::for_store_error(&e),
                            comment: e.to_string(),
                        });
                    }
                }
                if !pdv.is_last {
                    return Ok(None);
                }
                let mut pending = self.pending.take().expect("pending checked above");
                pending.received = Some(Instant::now());
                Ok(Some(self.pending_finish(pending).await))
            }
        }
    }

    async fn command_handle(
        &mut self,
        ctx: &NegotiatedContext,
        command: Command,
    ) -> Result<Option<Pdu>, AssociationError> {
        let message_id = command.message_id();
        let field = command
            .command_field()
            .ok_or_else(|| AssociationError::Protocol("command without CommandField".into()))?;
        match field {
            dimse::C_ECHO_RQ => {
                self.services.metrics.echoes.inc();
                let rsp = dimse::response(
                    field,
                    message_id,
                    Some(VERIFICATION_SOP_CLASS),
                    None,
                    status::SUCCESS,
                    None,
                );
                Ok(Some(response_pdu(ctx.id, rsp)))
            }
            dimse::C_STORE_RQ => {
                let sop_class = command.string(dimse::AFFECTED_SOP_CLASS_UID).unwrap_or_default();
                let sop_instance = command
                    .string(dimse::AFFECTED_SOP_INSTANCE_UID)
                    .unwrap_or_default();
                // The context must be a storage one too: a Q/R model is an accepted context now, and a C-STORE
                // on it must not archive a "FIND" object.
                let sink = if sop_class != ctx.abstract_syntax || !storage_sop_class(&sop_class) {
                    let e = StoreError::SopClassNotSupported(sop_class.clone());
                    Err(Failure {
                        status: status::for_store_error(&e),
                        comment: e.to_string(),
                    })
                } else if let Err(problem) = crate::store::uid_check(&sop_instance) {
                    let e = StoreError::BadUid {
                        keyword: "AffectedSOPInstanceUID",
                        value: sop_instance.clone(),
                        problem,
                    };
                    Err(Failure {
                        status: status::for_store_error(&e),
                        comment: e.to_string(),
                    })
                } else if let Some(refused) = self.store_refused().await {
                    Err(refused)
                } else {
                    let request = StoreRequest {
                        sop_class_uid: sop_class.clone(),
                        sop_instance_uid: sop_instance.clone(),
                        transfer_syntax_uid: ctx.transfer_syntax.clone(),
                        calling_ae: self.calling_ae.clone(),
                        called_ae: self.called_ae.clone(),
                    };
                    self.services.storage.store_begin(request).await.map_err(|e| {
                        tracing::error!(error = %e, "cannot open temp file");
                        Failure {
                            status: status::for_store_error(&e),
                            comment: e.to_string(),
                        }
                    })
                };
                let pending = Pending {
                    pcid: ctx.id,
                    command_field: field,
                    message_id,
                    sop_class,
                    sop_instance,
                    sink,
                    started: Instant::now(),
                    received: None,
                };
                if command.has_data_set() {
                    self.pending = Some(pending);
                    Ok(None)
                } else {
                    let mut p = pending;
                    p.sink = Err(Failure {
                        status: status::CANNOT_UNDERSTAND,
                        comment: "C-STORE-RQ without data set".into(),
                    });
                    Ok(Some(self.pending_finish(p).await))
                }
            }
            dimse::C_FIND_RQ | dimse::C_MOVE_RQ | dimse::C_GET_RQ => Ok(self.qr.request_begin(ctx, &command)),
            // A C-CANCEL for an operation already answered needs no answer (PS3.7 9.1.5).
            dimse::C_CANCEL_RQ => Ok(None),
            other => {
                tracing::warn!(command = format!("{other:#06x}"), "unsupported DIMSE command");
                let pending = Pending {
                    pcid: ctx.id,
                    command_field: other,
                    message_id,
                    sop_class: command.string(dimse::AFFECTED_SOP_CLASS_UID).unwrap_or_default(),
                    sop_instance: String::new(),
                    sink: Err(Failure {
                        status: status::UNRECOGNIZED_OPERATION,
                        comment: "operation not supported".into(),
                    }),
                    started: Instant::now(),
                    received: None,
                };
                if command.has_data_set() {
                    self.pending = Some(pending);
                    Ok(None)
                } else {
                    Ok(Some(self.pending_finish(pending).await))
                }
            }
        }
    }

    /// The refusal of every C-STORE from a calling AE registered as a node with may_store off (0x0124), or
    /// of this one when pacs_node cannot be read (0xA700: the sender may retry).
    async fn store_refused(&self) -> Option<Failure> {
        match self.qr.store_refusal(&self.services.qr, &self.calling_ae).await {
            Ok(None) => None,
            Ok(Some(why)) => Some(Failure {
                status: status::NOT_AUTHORIZED,
                comment: why,
            }),
            Err(e) => {
                tracing::error!(error = %e, "cannot read pacs_node");
                Some(Failure {
                    status: status::OUT_OF_RESOURCES,
                    comment: e.to_string(),
                })
            }
        }
    }

    async fn pending_finish(&self, pending: Pending) -> Pdu {
        let metrics = &self.services.metrics;
        let (status, comment) = match pending.sink {
            Err(f) => {
                tracing::warn!(
                    sop = %pending.sop_instance, status = format!("{:#06x}", f.status), reason = %f.comment,
                    calling = %self.calling_ae, "DIMSE request refused"
                );
                (f.status, Some(f.comment))
            }
            Ok(incoming) => {
                let size = incoming.size();
                match self.services.storage.store_commit(incoming).await {
                    Ok((outcome, receipt, phases)) => {
                        metrics.bytes_received.add(size);
                        if let StoreOutcome::Stored { receipt_id }
                        | StoreOutcome::Overwritten { receipt_id } = outcome
                        {
                            self.services.notifier.receipt_queue(receipt_id);
                        }
                        tracing::info!(
                            sop = %receipt.sop_instance_uid, path = %receipt.path, size,
                            outcome = ?outcome, ms = pending.started.elapsed().as_millis() as u64,
                            recv_us = pending.received.map(|r| r.duration_since(pending.started).as_micros() as u64).unwrap_or(0),
                            %phases,
                            calling = %self.calling_ae, "C-STORE stored"
                        );
                        (status::SUCCESS, None)
                    }
                    Err(e) => {
                        let status = status::for_store_error(&e);
                        tracing::error!(sop = %pending.sop_instance, status = format!("{status:#06x}"), error = %e, calling = %self.calling_ae, "C-STORE failed");
                        (status, Some(e.to_string()))
                    }
                }
            }
        };
        if pending.command_field == dimse::C_STORE_RQ {
            if status == status::SUCCESS {
                metrics.stores_ok.inc();
            } else {
                metrics.stores_failed.inc();
            }
        }
        let rsp = dimse::response(
            pending.command_field,
            pending.message_id,
            Some(&pending.sop_class)
                .filter(|s| !s.is_empty())
                .map(|s| s.as_str()),
            Some(&pending.sop_instance)
                .filter(|s| !s.is_empty())
                .map(|s| s.as_str()),
            status,
            comment.as_deref(),
        );
        response_pdu(pending.pcid, rsp)
    }
}

fn response_pdu(pcid: u8, command: Vec<u8>) -> Pdu {
    Pdu::PData {
        data: vec![PDataValue {
            presentation_context_id: pcid,
            value_type: PDataValueType::Command,
            is_last: true,
            data: command,
        }],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dicom_ul::pdu::PresentationContextProposed;

    fn rq(called: &str, contexts: Vec<(u8, &str, Vec<&str>)>) -> AssociationRQ {
        AssociationRQ {
            protocol_version: 1,
            calling_ae_title: "MODALITY".into(),
            called_ae_title: called.into(),
            application_context_name: APPLICATION_CONTEXT_NAME.into(),
            presentation_contexts: contexts
                .into_iter()
                .map(|(id, a, ts)| PresentationContextProposed {
                    id,
                    abstract_syntax: a.into(),
                    transfer_syntaxes: ts.into_iter().map(String::from).collect(),
                })
                .collect(),
            user_variables: vec![],
        }
    }

    fn policy(allowed: &[&str]) -> Policy {
        Policy {
            ae_title: "NOCTIS".into(),
            allowed_calling: allowed.iter().map(|s| s.to_string()).collect(),
            max_pdu_length: 65536,
        }
    }

    /// A P-DATA-TF PDU with these `(pcid, header, data)` items.
    fn pdata(items: &[(u8, u8, &[u8])]) -> Vec<u8> {
        let mut body = vec![];
        for (pcid, header, data) in items {
            body.extend_from_slice(&((data.len() + 2) as u32).to_be_bytes());
            body.extend_from_slice(&[*pcid, *header]);
            body.extend_from_slice(data);
        }
        let mut pdu = vec![0x04, 0];
        pdu.extend_from_slice(&(body.len() as u32).to_be_bytes());
        pdu.extend_from_slice(&body);
        pdu
    }

    fn read(bytes: &[u8]) -> Result<Pdu, AssociationError> {
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        rt.block_on(pdu_read(&mut &bytes[..], 1 << 20, &BufferPool::default()))
    }

    #[test]
    fn pdata_items_are_read_like_dicom_ul_reads_them() {
        let big = vec![7u8; 100_000];
        let bytes = pdata(&[(1, 0x03, b"cmd"), (1, 0x00, &big), (3, 0x02, b"")]);
        let ours = read(&bytes).unwrap();
        let theirs = dicom_ul::read_pdu(&bytes[..], dicom_ul::pdu::MAXIMUM_PDU_SIZE, false)
            .unwrap()
            .unwrap();
        assert_eq!(ours, theirs);
    }

    #[test]
    fn pdata_with_bad_item_lengths_is_a_protocol_error() {
        // Item length 1 (below pcid + header).
        let mut short = pdata(&[(1, 0x00, b"ab")]);
        short[6..10].copy_from_slice(&1u32.to_be_bytes());
        assert!(matches!(read(&short), Err(AssociationError::Protocol(_))));
        // Item longer than the PDU.
        let mut long = pdata(&[(1, 0x00, b"ab")]);
        long[6..10].copy_from_slice(&100u32.to_be_bytes());
        assert!(matches!(read(&long), Err(AssociationError::Protocol(_))));
        // Trailing bytes too few for an item header.
        let mut trailing = pdata(&[(1, 0x00, b"ab")]);
        trailing.extend_from_slice(&[0, 0]);
        let len = (trailing.len() - 6) as u32;
        trailing[2..6].copy_from_slice(&len.to_be_bytes());
        assert!(matches!(read(&trailing), Err(AssociationError::Protocol(_))));
    }

    #[test]
    fn calling_ae_is_checked_only_when_a_list_is_configured() {
        let r = rq("NOCTIS", vec![]); // calling AE "MODALITY"
        assert!(matches!(negotiate(&r, &policy(&[])), Negotiation::Accept(..)));
        assert!(matches!(
            negotiate(&r, &policy(&["CT1", "MODALITY"])),
            Negotiation::Accept(..)
        ));
        match negotiate(&r, &policy(&["CT1"])) {
            Negotiation::Reject(rj) => assert_eq!(
                rj.source,
                AssociationRJSource::ServiceUser(AssociationRJServiceUserReason::CallingAETitleNotRecognized)
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn storage_classes_come_from_the_dictionary() {
        assert!(storage_sop_class("1.2.840.10008.5.1.4.1.1.2")); // CT Image Storage
        assert!(storage_sop_class("1.2.840.10008.5.1.4.1.1.1.1")); // DX - For Presentation
        assert!(storage_sop_class("1.2.840.10008.5.1.4.1.1.104.1")); // Encapsulated PDF
        assert!(!storage_sop_class("1.2.840.10008.1.20.1")); // Storage Commitment
        assert!(!storage_sop_class("1.2.840.10008.1.3.10")); // DICOMDIR
        assert!(!storage_sop_class("1.2.840.10008.5.1.4.1.2.2.1")); // Study Root FIND
        assert!(!storage_sop_class("1.2.3.4"));
    }

    #[test]
    fn wrong_called_ae_is_rejected_permanently_by_service_user() {
        match negotiate(&rq("WRONG", vec![]), &policy(&[])) {
            Negotiation::Reject(rj) => {
                assert_eq!(rj.result, AssociationRJResult::Permanent);
                assert_eq!(
                    rj.source,
                    AssociationRJSource::ServiceUser(
                        AssociationRJServiceUserReason::CalledAETitleNotRecognized
                    )
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn called_ae_is_compared_trimmed_and_first_supported_ts_wins() {
        let r = rq(
            "NOCTIS    ",
            vec![
                (
                    1,
                    "1.2.840.10008.5.1.4.1.1.2",
                    vec!["1.2.3.999", "1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2"],
                ),
                (3, "1.2.840.10008.1.1", vec!["1.2.840.10008.1.2"]),
                (5, "1.2.840.10008.5.1.4.31", vec!["1.2.840.10008.1.2"]), // Modality Worklist FIND
                (7, "1.2.840.10008.5.1.4.1.1.2", vec!["1.2.3.999"]),
            ],
        );
        let Negotiation::Accept(ac, accepted) = negotiate(&r, &policy(&[])) else {
            panic!()
        };
        assert_eq!(
            accepted,
            vec![
                NegotiatedContext {
                    id: 1,
                    abstract_syntax: "1.2.840.10008.5.1.4.1.1.2".into(),
                    transfer_syntax: "1.2.840.10008.1.2.4.90".into()
                },
                NegotiatedContext {
                    id: 3,
                    abstract_syntax: VERIFICATION_SOP_CLASS.into(),
                    transfer_syntax: "1.2.840.10008.1.2".into()
                },
            ]
        );
        let reasons: Vec<_> = ac
            .presentation_contexts
            .iter()
            .map(|p| p.reason.clone())
            .collect();
        assert_eq!(
            reasons,
            vec![
                PresentationContextResultReason::Acceptance,
                PresentationContextResultReason::Acceptance,
                PresentationContextResultReason::AbstractSyntaxNotSupported,
                PresentationContextResultReason::TransferSyntaxesNotSupported,
            ]
        );
        assert!(ac.user_variables.contains(&UserVariableItem::MaxLength(65536)));
    }
}
