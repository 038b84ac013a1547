//! DIMSE messages on the wire in both directions of query/retrieve, and the one association this SCP
//! opens itself: the C-STORE SCU association to a C-MOVE destination.
//!
//! `message_write` frames a command (and its data set) into P-DATA-TF PDUs no larger than the peer
//! accepts; `message_read` reassembles the next message a peer sends. Both serve C-FIND / C-MOVE / C-GET
//! responses on the modality's association (query_retrieve.rs, retrieve.rs) and the sub-operations on
//! the outgoing one (`ScuAssociation`).

use std::time::Duration;

use dicom_ul::pdu::{
    AbortRQSource, AssociationRQ, PresentationContextProposed, PresentationContextResultReason,
    UserVariableItem,
};
use dicom_ul::Pdu;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::association::APPLICATION_CONTEXT_NAME;
use crate::dimse::{self, Command, CommandSet};
use crate::error::{AssociationError, ScuError};
use crate::store::{IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME};

/// PDUs we send when the peer sets no limit (maximum length 0): 1 MiB.
const UNLIMITED_PDU: usize = 1 << 20;
/// Largest non-P-DATA PDU accepted from a peer (an A-ASSOCIATE-AC stays far below).
const MAX_CONTROL_PDU: u32 = 1 << 20;
/// Up to this size a fragment is copied behind its headers and sent in one write.
const COPY_LIMIT: usize = 64 * 1024;

/// One DIMSE message received: its presentation context, command set and data set, if any.
#[derive(Debug)]
pub struct Message {
    pub pcid: u8,
    pub command: Command,
    pub data: Option<Vec<u8>>,
}

/// What a peer sent next.
#[derive(Debug)]
pub enum Received {
    Message(Message),
    ReleaseRequest,
    Abort,
}

/// Read one PDU of at most `max` bytes (P-DATA) or MAX_CONTROL_PDU (others).
pub async fn pdu_read<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<Pdu, AssociationError> {
    let mut head = [0u8; 6];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Err(AssociationError::Closed),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes([head[2], head[3], head[4], head[5]]);
    let limit = if head[0] == 0x04 {
        max.max(4096)
    } else {
        MAX_CONTROL_PDU
    };
    if len > limit {
        return Err(AssociationError::Protocol(format!(
            "PDU type {:#04x} of {len} bytes exceeds the limit of {limit}",
            head[0]
        )));
    }
    let mut buf = vec![0u8; 6 + len as usize];
    buf[..6].copy_from_slice(&head);
    r.read_exact(&mut buf[6..]).await?;
    match dicom_ul::read_pdu(&buf[..], dicom_ul::pdu::MAXIMUM_PDU_SIZE, false) {
        Ok(Some(pdu)) => Ok(pdu),
        Ok(None) => Err(AssociationError::Protocol("incomplete PDU".into())),
        Err(e) => Err(AssociationError::Protocol(e.to_string())),
    }
}

pub async fn pdu_write<W: AsyncWrite + Unpin>(w: &mut W, pdu: &Pdu) -> Result<(), AssociationError> {
    let mut buf = Vec::with_capacity(512);
    dicom_ul::write_pdu(&mut buf, pdu).map_err(|e| AssociationError::Protocol(e.to_string()))?;
    w.write_all(&buf).await?;
    w.flush().await?;
    Ok(())
}

/// Reassemble the next DIMSE message (command, then data set when the command announces one).
/// Messages are expected one at a time: PDVs after a completed message in the same PDU are an error.
pub async fn message_read<R: AsyncRead + Unpin>(r: &mut R, max: u32) -> Result<Received, AssociationError> {
    let mut command_bytes = Vec::new();
    let mut command: Option<(u8, Command)> = None;
    let mut data = Vec::new();
    loop {
        let pdvs = match pdu_read(r, max).await? {
            Pdu::PData { data } => data,
            Pdu::ReleaseRQ => return Ok(Received::ReleaseRequest),
            Pdu::AbortRQ { .. } => return Ok(Received::Abort),
            other => {
                return Err(AssociationError::Protocol(format!(
                    "unexpected {} during an operation",
                    other.short_description()
                )))
            }
        };
        let count = pdvs.len();
        for (i, pdv) in pdvs.into_iter().enumerate() {
            let done = match (&command, pdv.value_type) {
                (None, dicom_ul::pdu::PDataValueType::Command) => {
                    command_bytes.extend_from_slice(&pdv.data);
                    if pdv.is_last {
                        let c = Command::parse(&command_bytes)?;
                        let has_data = c.has_data_set();
                        command = Some((pdv.presentation_context_id, c));
                        !has_data
                    } else {
                        false
                    }
                }
                (Some((pcid, _)), dicom_ul::pdu::PDataValueType::Data)
                    if *pcid == pdv.presentation_context_id =>
                {
                    data.extend_from_slice(&pdv.data);
                    pdv.is_last
                }
                _ => {
                    return Err(AssociationError::Protocol(
                        "command and data set fragments out of order".into(),
                    ))
                }
            };
            if done {
                if i + 1 != count {
                    return Err(AssociationError::Protocol(
                        "a second message in the same PDU during an operation".into(),
                    ));
                }
                let (pcid, command) = command.take().expect("set above");
                let data = command.has_data_set().then_some(std::mem::take(&mut data));
                return Ok(Received::Message(Message { pcid, command, data }));
            }
        }
    }
}

/// Send a command set and its data set as P-DATA-TF PDUs of at most `peer_max_pdu` bytes (the maximum
/// length the peer announced; 0 = no limit).
pub async fn message_write<W: AsyncWrite + Unpin>(
    w: &mut W,
    pcid: u8,
    peer_max_pdu: u32,
    command: &[u8],
    data: Option<&[u8]>,
) -> std::io::Result<()> {
    let max = if peer_max_pdu == 0 {
        UNLIMITED_PDU
    } else {
        (peer_max_pdu as usize).min(UNLIMITED_PDU)
    };
    // One PDV per PDU: the item header (4 bytes length, context id, control header) counts in the PDU.
    let chunk = max.saturating_sub(6).max(2);
    let mut out = Vec::with_capacity(COPY_LIMIT.min(command.len() + data.map_or(0, <[u8]>::len)) + 24);
    let parts: [(u8, &[u8]); 2] = [(0x01, command), (0x00, data.unwrap_or_default())];
    for (kind, bytes) in parts {
        if kind == 0x00 && data.is_none() {
            break;
        }
        // An empty data set is still one (last) fragment.
        let fragments: Vec<&[u8]> = if bytes.is_empty() {
            vec![&[]]
        } else {
            bytes.chunks(chunk).collect()
        };
        let count = fragments.len();
        for (i, fragment) in fragments.into_iter().enumerate() {
            let last = i + 1 == count;
            let header = kind | if last { 0x02 } else { 0x00 };
            out.push(0x04);
            out.push(0x00);
            out.extend_from_slice(&((fragment.len() + 6) as u32).to_be_bytes());
            out.extend_from_slice(&((fragment.len() + 2) as u32).to_be_bytes());
            out.push(pcid);
            out.push(header);
            if fragment.len() <= COPY_LIMIT {
                out.extend_from_slice(fragment);
                if out.len() >= COPY_LIMIT {
                    w.write_all(&out).await?;
                    out.clear();
                }
            } else {
                w.write_all(&out).await?;
                out.clear();
                w.write_all(fragment).await?;
            }
        }
    }
    if !out.is_empty() {
        w.write_all(&out).await?;
    }
    w.flush().await
}

/// A presentation context of the outgoing association, as accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AcceptedContext {
    pub id: u8,
    pub abstract_syntax: String,
    pub transfer_syntax: String,
}

/// Where the association goes and what it proposes.
#[derive(Debug, Clone)]
pub struct Destination {
    pub calling_ae: String,
    pub called_ae: String,
    pub host: String,
    pub port: u16,
}

/// The C-STORE SCU association to a C-MOVE destination.
pub struct ScuAssociation {
    stream: BufReader<TcpStream>,
    pub contexts: Vec<AcceptedContext>,
    /// The acceptor's maximum PDU length (0 = no limit).
    peer_max_pdu: u32,
    our_max_pdu: u32,
    timeout: Duration,
    message_id: u16,
}

/// At most 128 presentation contexts fit an association (odd ids 1..=255).
pub const MAX_CONTEXTS: usize = 128;

impl ScuAssociation {
    /// Connect and negotiate one presentation context per (abstract syntax, transfer syntax) pair, each with
    /// that single transfer syntax, so the answer says exactly which stored syntax the destination takes.
    pub async fn establish(
        to: &Destination,
        proposals: &[(String, String)],
        our_max_pdu: u32,
        connect_timeout: Duration,
        timeout: Duration,
    ) -> Result<ScuAssociation, ScuError> {
        let addr = format!("{}:{}", to.host, to.port);
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect((to.host.as_str(), to.port)))
            .await
            .map_err(|_| ScuError::Timeout("connecting"))?
            .map_err(|source| ScuError::Connect {
                addr: addr.clone(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let mut stream = BufReader::with_capacity(16 * 1024, stream);
        let presentation_contexts: Vec<PresentationContextProposed> = proposals
            .iter()
            .take(MAX_CONTEXTS)
            .enumerate()
            .map(|(i, (abstract_syntax, ts))| PresentationContextProposed {
                id: (2 * i + 1) as u8,
                abstract_syntax: abstract_syntax.clone(),
                transfer_syntaxes: vec![ts.clone()],
            })
            .collect();
        let rq = AssociationRQ {
            protocol_version: 1,
            calling_ae_title: to.calling_ae.clone(),
            called_ae_title: to.called_ae.clone(),
            application_context_name: APPLICATION_CONTEXT_NAME.to_string(),
            presentation_contexts: presentation_contexts.clone(),
            user_variables: vec![
                UserVariableItem::MaxLength(our_max_pdu),
                UserVariableItem::ImplementationClassUID(IMPLEMENTATION_CLASS_UID.to_string()),
                UserVariableItem::ImplementationVersionName(IMPLEMENTATION_VERSION_NAME.to_string()),
            ],
        };
        pdu_write(&mut stream, &Pdu::AssociationRQ(rq)).await?;
        let answer = tokio::time::timeout(connect_timeout, pdu_read(&mut stream, our_max_pdu))
            .await
            .map_err(|_| ScuError::Timeout("waiting for A-ASSOCIATE-AC"))??;
        let ac = match answer {
            Pdu::AssociationAC(ac) => ac,
            Pdu::AssociationRJ(rj) => {
                return Err(ScuError::Rejected(format!("{:?}, {}", rj.result, rj.source)));
            }
            other => {
                return Err(ScuError::Association(AssociationError::Protocol(format!(
                    "expected A-ASSOCIATE-AC, got {}",
                    other.short_description()
                ))))
            }
        };
        let contexts = ac
            .presentation_contexts
            .iter()
            .filter(|r| r.reason == PresentationContextResultReason::Acceptance)
            .filter_map(|r| {
                let proposed = presentation_contexts.iter().find(|p| p.id == r.id)?;
                Some(AcceptedContext {
                    id: r.id,
                    abstract_syntax: proposed.abstract_syntax.clone(),
                    transfer_syntax: r.transfer_syntax.trim_end_matches('\0').trim().to_string(),
                })
            })
            .collect();
        let peer_max_pdu = ac
            .user_variables
            .iter()
            .find_map(|u| match u {
                UserVariableItem::MaxLength(n) => Some(*n),
                _ => None,
            })
            .unwrap_or(0);
        Ok(ScuAssociation {
            stream,
            contexts,
            peer_max_pdu,
            our_max_pdu,
            timeout,
            message_id: 0,
        })
    }

    /// C-STORE one data set (already in the context's transfer syntax) as a C-MOVE sub-operation;
    /// the destination's status.
    pub async fn store(
        &mut self,
        pcid: u8,
        sop_class: &str,
        sop_instance: &str,
        data: &[u8],
        originator: (&str, u16),
    ) -> Result<u16, ScuError> {
        self.message_id = self.message_id.wrapping_add(1).max(1);
        let id = self.message_id;
        let command = CommandSet::new(dimse::C_STORE_RQ)
            .uid(dimse::AFFECTED_SOP_CLASS_UID, sop_class)
            .us(dimse::MESSAGE_ID, id)
            .us(dimse::PRIORITY, 0)
            .us(dimse::COMMAND_DATA_SET_TYPE, dimse::DATA_SET_PRESENT)
            .uid(dimse::AFFECTED_SOP_INSTANCE_UID, sop_instance)
            .text(dimse::MOVE_ORIGINATOR_AE_TITLE, originator.0)
            .us(dimse::MOVE_ORIGINATOR_MESSAGE_ID, originator.1)
            .encode();
        tokio::time::timeout(
            self.timeout,
            message_write(&mut self.stream, pcid, self.peer_max_pdu, &command, Some(data)),
        )
        .await
        .map_err(|_| ScuError::Timeout("sending C-STORE-RQ"))?
        .map_err(AssociationError::from)?;
        let received = tokio::time::timeout(self.timeout, message_read(&mut self.stream, self.our_max_pdu))
            .await
            .map_err(|_| ScuError::Timeout("waiting for C-STORE-RSP"))??;
        match received {
            Received::Message(m)
                if m.command.command_field() == Some(dimse::C_STORE_RSP)
                    && m.command.u16(dimse::MESSAGE_ID_BEING_RESPONDED_TO) == Some(id) =>
            {
                Ok(m.command.u16(dimse::STATUS).unwrap_or(0xC000))
            }
            Received::Message(m) => Err(ScuError::Association(AssociationError::Protocol(format!(
                "expected C-STORE-RSP, got command {:#06x}",
                m.command.command_field().unwrap_or(0)
            )))),
            Received::Abort => Err(ScuError::Association(AssociationError::Aborted)),
            Received::ReleaseRequest => Err(ScuError::Association(AssociationError::Protocol(
                "destination asked to release during a C-STORE".into(),
            ))),
        }
    }

    /// A-RELEASE; the connection closes either way.
    pub async fn release(mut self) {
        let released = async {
            pdu_write(&mut self.stream, &Pdu::ReleaseRQ).await?;
            loop {
                match pdu_read(&mut self.stream, self.our_max_pdu).await? {
                    Pdu::ReleaseRP => return Ok::<(), AssociationError>(()),
                    Pdu::PData { .. } => continue,
                    _ => return Err(AssociationError::Protocol("no A-RELEASE-RP".into())),
                }
            }
        };
        if let Ok(Err(e)) = tokio::time::timeout(self.timeout, released).await {
            tracing::debug!(error = %e, "release of the C-STORE association failed");
        }
        let _ = self.stream.shutdown().await;
    }

    /// A-ABORT (after a failure that leaves the association unusable).
    pub async fn abort(mut self) {
        let _ = pdu_write(
            &mut self.stream,
            &Pdu::AbortRQ {
                source: AbortRQSource::ServiceUser,
            },
        )
        .await;
        let _ = self.stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    #[test]
    fn messages_are_fragmented_within_the_peer_limit_and_read_back_whole() {
        let command = CommandSet::new(dimse::C_STORE_RQ)
            .us(dimse::MESSAGE_ID, 9)
            .us(dimse::COMMAND_DATA_SET_TYPE, dimse::DATA_SET_PRESENT)
            .encode();
        let data: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
        let mut wire = Vec::new();
        rt().block_on(message_write(&mut wire, 3, 16384, &command, Some(&data)))
            .unwrap();
        // Every PDU within the limit, as dicom-ul reads it.
        let mut rest = &wire[..];
        let mut pdus = 0;
        while !rest.is_empty() {
            let len = u32::from_be_bytes(rest[2..6].try_into().unwrap()) as usize;
            assert!(len <= 16384);
            let pdu = dicom_ul::read_pdu(&rest[..6 + len], 16384, true)
                .unwrap()
                .unwrap();
            assert!(matches!(pdu, Pdu::PData { .. }));
            rest = &rest[6 + len..];
            pdus += 1;
        }
        assert_eq!(pdus, 1 + 200_000usize.div_ceil(16384 - 6));
        let received = rt().block_on(message_read(&mut &wire[..], 16384)).unwrap();
        let Received::Message(m) = received else { panic!() };
        assert_eq!(m.pcid, 3);
        assert_eq!(m.command.u16(dimse::MESSAGE_ID), Some(9));
        assert_eq!(m.data.unwrap(), data);
    }

    #[test]
    fn a_command_without_data_set_is_a_whole_message() {
        let command = CommandSet::new(dimse::C_CANCEL_RQ)
            .us(dimse::MESSAGE_ID_BEING_RESPONDED_TO, 4)
            .us(dimse::COMMAND_DATA_SET_TYPE, dimse::NO_DATA_SET)
            .encode();
        let mut wire = Vec::new();
        rt().block_on(message_write(&mut wire, 1, 0, &command, None))
            .unwrap();
        let Received::Message(m) = rt().block_on(message_read(&mut &wire[..], 4096)).unwrap() else {
            panic!()
        };
        assert_eq!(m.command.command_field(), Some(dimse::C_CANCEL_RQ));
        assert!(m.data.is_none());
    }
}
