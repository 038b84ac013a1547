//! DIMSE command sets (PS3.7 9.3, E.1): reading C-ECHO-RQ / C-STORE-RQ and writing their responses.
//! Command sets are always Implicit VR Little Endian, so they are read and written here directly.

use std::collections::HashMap;

use crate::error::AssociationError;

pub const COMMAND_GROUP_LENGTH: u16 = 0x0000;
pub const AFFECTED_SOP_CLASS_UID: u16 = 0x0002;
pub const COMMAND_FIELD: u16 = 0x0100;
pub const MESSAGE_ID: u16 = 0x0110;
pub const MESSAGE_ID_BEING_RESPONDED_TO: u16 = 0x0120;
pub const COMMAND_DATA_SET_TYPE: u16 = 0x0800;
pub const STATUS: u16 = 0x0900;
pub const ERROR_COMMENT: u16 = 0x0902;
pub const AFFECTED_SOP_INSTANCE_UID: u16 = 0x1000;

pub const C_STORE_RQ: u16 = 0x0001;
pub const C_GET_RQ: u16 = 0x0010;
pub const C_FIND_RQ: u16 = 0x0020;
pub const C_MOVE_RQ: u16 = 0x0021;
pub const C_ECHO_RQ: u16 = 0x0030;
pub const C_CANCEL_RQ: u16 = 0x0FFF;
pub const C_STORE_RSP: u16 = 0x8001;

// Query/retrieve command elements (PS3.7 E.1-1).
pub const MOVE_DESTINATION: u16 = 0x0600;
pub const PRIORITY: u16 = 0x0700;
pub const NUMBER_OF_REMAINING_SUBOPERATIONS: u16 = 0x1020;
pub const NUMBER_OF_COMPLETED_SUBOPERATIONS: u16 = 0x1021;
pub const NUMBER_OF_FAILED_SUBOPERATIONS: u16 = 0x1022;
pub const NUMBER_OF_WARNING_SUBOPERATIONS: u16 = 0x1023;
pub const MOVE_ORIGINATOR_AE_TITLE: u16 = 0x1030;
pub const MOVE_ORIGINATOR_MESSAGE_ID: u16 = 0x1031;
/// CommandDataSetType value we send when a data set follows (any value but 0x0101 means one does).
pub const DATA_SET_PRESENT: u16 = 0x0001;
pub const RESPONSE_BIT: u16 = 0x8000;
/// CommandDataSetType value meaning "no data set follows".
pub const NO_DATA_SET: u16 = 0x0101;

/// A received command set: group 0000 elements by element number.
#[derive(Debug, Clone, Default)]
pub struct Command {
    elements: HashMap<u16, Vec<u8>>,
}

impl Command {
    pub fn parse(bytes: &[u8]) -> Result<Command, AssociationError> {
        let mut elements = HashMap::new();
        let mut i = 0;
        while i < bytes.len() {
            if bytes.len() - i < 8 {
                return Err(AssociationError::Protocol("truncated command element".into()));
            }
            let group = u16::from_le_bytes([bytes[i], bytes[i + 1]]);
            let element = u16::from_le_bytes([bytes[i + 2], bytes[i + 3]]);
            let len = u32::from_le_bytes([bytes[i + 4], bytes[i + 5], bytes[i + 6], bytes[i + 7]]) as usize;
            i += 8;
            if group != 0x0000 || len > bytes.len() - i {
                return Err(AssociationError::Protocol(format!(
                    "bad command element ({group:04X},{element:04X}) length {len}"
                )));
            }
            elements.insert(element, bytes[i..i + len].to_vec());
            i += len;
        }
        Ok(Command { elements })
    }

    pub fn u16(&self, element: u16) -> Option<u16> {
        self.elements
            .get(&element)
            .filter(|v| v.len() >= 2)
            .map(|v| u16::from_le_bytes([v[0], v[1]]))
    }

    pub fn string(&self, element: u16) -> Option<String> {
        self.elements.get(&element).map(|v| {
            String::from_utf8_lossy(v)
                .trim_end_matches(['\0', ' '])
                .trim_start()
                .to_string()
        })
    }

    pub fn command_field(&self) -> Option<u16> {
        self.u16(COMMAND_FIELD)
    }

    pub fn message_id(&self) -> u16 {
        self.u16(MESSAGE_ID).unwrap_or(0)
    }

    pub fn has_data_set(&self) -> bool {
        self.u16(COMMAND_DATA_SET_TYPE).is_some_and(|t| t != NO_DATA_SET)
    }
}

/// Encode a response command set (C-ECHO-RSP, C-STORE-RSP, or the generic refusal of other commands).
pub fn response(
    command_field: u16,
    message_id: u16,
    sop_class: Option<&str>,
    sop_instance: Option<&str>,
    status: u16,
    error_comment: Option<&str>,
) -> Vec<u8> {
    fn element(out: &mut Vec<u8>, element: u16, value: &[u8], pad: u8) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        out.extend_from_slice(&0u16.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        out.extend_from_slice(&v);
    }
    let mut body = Vec::with_capacity(160);
    if let Some(c) = sop_class {
        element(&mut body, AFFECTED_SOP_CLASS_UID, c.as_bytes(), 0);
    }
    element(
        &mut body,
        COMMAND_FIELD,
        &(command_field | RESPONSE_BIT).to_le_bytes(),
        0,
    );
    element(
        &mut body,
        MESSAGE_ID_BEING_RESPONDED_TO,
        &message_id.to_le_bytes(),
        0,
    );
    element(&mut body, COMMAND_DATA_SET_TYPE, &NO_DATA_SET.to_le_bytes(), 0);
    element(&mut body, STATUS, &status.to_le_bytes(), 0);
    if let Some(comment) = error_comment {
        // LO: at most 64 characters, no backslash or control characters.
        let clean: String = comment
            .chars()
            .filter(|c| c.is_ascii_graphic() || *c == ' ')
            .map(|c| if c == '\\' { '/' } else { c })
            .take(64)
            .collect();
        element(&mut body, ERROR_COMMENT, clean.as_bytes(), b' ');
    }
    if let Some(i) = sop_instance {
        element(&mut body, AFFECTED_SOP_INSTANCE_UID, i.as_bytes(), 0);
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    element(
        &mut out,
        COMMAND_GROUP_LENGTH,
        &(body.len() as u32).to_le_bytes(),
        0,
    );
    out.extend_from_slice(&body);
    out
}

/// A command set being built (requests we send and Q/R responses): elements are kept by element number
/// and encoded in ascending order with the group length first, Implicit VR Little Endian.
#[derive(Debug, Clone, Default)]
pub struct CommandSet {
    elements: std::collections::BTreeMap<u16, Vec<u8>>,
}

impl CommandSet {
    pub fn new(command_field: u16) -> CommandSet {
        CommandSet::default().us(COMMAND_FIELD, command_field)
    }

    /// A UI value (padded with NUL to even length).
    pub fn uid(mut self, element: u16, value: &str) -> CommandSet {
        let mut v = value.as_bytes().to_vec();
        if v.len() % 2 == 1 {
            v.push(0);
        }
        self.elements.insert(element, v);
        self
    }

    /// An AE / LO value (padded with a space; backslash and control characters dropped, at most 64).
    pub fn text(mut self, element: u16, value: &str) -> CommandSet {
        let mut v: Vec<u8> = value
            .chars()
            .filter(|c| (c.is_ascii_graphic() || *c == ' ') && *c != '\\')
            .take(64)
            .map(|c| c as u8)
            .collect();
        if v.len() % 2 == 1 {
            v.push(b' ');
        }
        self.elements.insert(element, v);
        self
    }

    pub fn us(mut self, element: u16, value: u16) -> CommandSet {
        self.elements.insert(element, value.to_le_bytes().to_vec());
        self
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut body = Vec::with_capacity(192);
        for (element, value) in &self.elements {
            body.extend_from_slice(&0u16.to_le_bytes());
            body.extend_from_slice(&element.to_le_bytes());
            body.extend_from_slice(&(value.len() as u32).to_le_bytes());
            body.extend_from_slice(value);
        }
        let mut out = Vec::with_capacity(body.len() + 12);
        out.extend_from_slice(&[0, 0, 0, 0, 4, 0, 0, 0]);
        out.extend_from_slice(&(body.len() as u32).to_le_bytes());
        out.extend_from_slice(&body);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_round_trips_through_parse() {
        let bytes = response(
            C_STORE_RQ,
            7,
            Some("1.2.840.10008.5.1.4.1.1.2"),
            Some("1.2.3"),
            0xA700,
            Some("disk full\\x"),
        );
        let c = Command::parse(&bytes).unwrap();
        assert_eq!(c.command_field(), Some(0x8001));
        assert_eq!(c.u16(MESSAGE_ID_BEING_RESPONDED_TO), Some(7));
        assert_eq!(c.u16(STATUS), Some(0xA700));
        assert!(!c.has_data_set());
        assert_eq!(c.string(AFFECTED_SOP_INSTANCE_UID).as_deref(), Some("1.2.3"));
        assert_eq!(c.string(ERROR_COMMENT).as_deref(), Some("disk full/x"));
        let group_length = c.elements[&COMMAND_GROUP_LENGTH].clone();
        assert_eq!(
            u32::from_le_bytes(group_length.try_into().unwrap()) as usize,
            bytes.len() - 12
        );
    }

    #[test]
    fn command_set_encodes_in_tag_order_with_group_length() {
        let bytes = CommandSet::new(C_MOVE_RQ | RESPONSE_BIT)
            .us(STATUS, 0xFF00)
            .us(MESSAGE_ID_BEING_RESPONDED_TO, 3)
            .uid(AFFECTED_SOP_CLASS_UID, "1.2.840.10008.5.1.4.1.2.2.2")
            .text(MOVE_ORIGINATOR_AE_TITLE, "AE\\X")
            .us(NUMBER_OF_REMAINING_SUBOPERATIONS, 5)
            .encode();
        let c = Command::parse(&bytes).unwrap();
        assert_eq!(c.command_field(), Some(0x8021));
        assert_eq!(c.u16(STATUS), Some(0xFF00));
        assert_eq!(c.u16(NUMBER_OF_REMAINING_SUBOPERATIONS), Some(5));
        assert_eq!(
            c.string(AFFECTED_SOP_CLASS_UID).as_deref(),
            Some("1.2.840.10008.5.1.4.1.2.2.2")
        );
        assert_eq!(c.string(MOVE_ORIGINATOR_AE_TITLE).as_deref(), Some("AEX"));
        let group_length = u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize;
        assert_eq!(group_length, bytes.len() - 12);
        // Affected SOP Class UID (0002) comes right after the group length.
        assert_eq!(&bytes[12..16], &[0, 0, 2, 0]);
    }

    #[test]
    fn truncated_command_is_a_protocol_error() {
        assert!(Command::parse(&[0, 0, 0, 1, 4, 0]).is_err());
        assert!(Command::parse(&[0, 0, 0, 1, 40, 0, 0, 0, 1, 2]).is_err());
    }
}
