//! DICOM status codes the SCP answers (PS3.7 Annex C), in one table, and the one place where errors
//! become statuses.

use crate::error::StoreError;

/// Success.
pub const SUCCESS: u16 = 0x0000;
/// Refused: SOP class not supported (the command names a class the presentation context does not carry).
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
/// Refused: not authorized (a registered node whose may_store / may_query / may_retrieve is off).
pub const NOT_AUTHORIZED: u16 = 0x0124;
/// Refused: the command is not one this SCP performs.
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
/// Out of resources: disk full, IO error, database down. The sender may retry later.
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: data set does not match SOP class (here: the data set's SOP Instance/Class UID differs
/// from the command's Affected SOP Instance/Class UID).
pub const DATASET_DOES_NOT_MATCH: u16 = 0xA900;
/// Error: cannot understand (undecodable data set, missing or invalid UIDs).
pub const CANNOT_UNDERSTAND: u16 = 0xC000;

// Query/retrieve (PS3.4 C.4.1.1.4, C.4.2.1.5, C.4.3.1.4).
/// Pending: a match (C-FIND) or a sub-operation done (C-MOVE / C-GET), more to come.
pub const PENDING: u16 = 0xFF00;
/// Pending, and some optional keys asked for are not supported (returned empty).
pub const PENDING_KEYS_UNSUPPORTED: u16 = 0xFF01;
/// Cancel: the operation stopped at the SCU's C-CANCEL.
pub const CANCEL: u16 = 0xFE00;
/// Refused: out of resources - unable to calculate the number of matches (database down).
pub const OUT_OF_RESOURCES_MATCHES: u16 = 0xA701;
/// Refused: out of resources - unable to perform sub-operations (the destination cannot be reached).
pub const OUT_OF_RESOURCES_SUBOPERATIONS: u16 = 0xA702;
/// Refused: move destination unknown.
pub const MOVE_DESTINATION_UNKNOWN: u16 = 0xA801;
/// Error: identifier does not match SOP class (no or unknown QueryRetrieveLevel, missing unique key).
pub const IDENTIFIER_DOES_NOT_MATCH: u16 = 0xA900;
/// Failed: unable to process (undecodable identifier).
pub const UNABLE_TO_PROCESS: u16 = 0xC000;
/// Failed: unable to process (a matching value the key's matching cannot use, e.g. a malformed date).
pub const UNABLE_TO_PROCESS_VALUE: u16 = 0xC001;
/// Warning: sub-operations complete, one or more failures or warnings.
pub const SUBOPERATIONS_WARNING: u16 = 0xB000;

/// Human name of a status, for logs.
pub fn name(status: u16) -> &'static str {
    match status {
        SUCCESS => "Success",
        SOP_CLASS_NOT_SUPPORTED => "Refused: SOP class not supported",
        PENDING | PENDING_KEYS_UNSUPPORTED => "Pending",
        CANCEL => "Cancel",
        MOVE_DESTINATION_UNKNOWN => "Refused: move destination unknown",
        SUBOPERATIONS_WARNING => "Warning: sub-operations complete with failures or warnings",
        UNRECOGNIZED_OPERATION => "Refused: unrecognized operation",
        0xA700..=0xA7FF => "Refused: out of resources",
        0xA900..=0xA9FF => "Error: data set does not match SOP class",
        0xC000..=0xCFFF => "Error: cannot understand",
        _ => "Unknown",
    }
}

/// The one mapping from a failed C-STORE to the status answered.
pub fn for_store_error(e: &StoreError) -> u16 {
    match e {
        StoreError::Io { .. } | StoreError::Receipt(_) => OUT_OF_RESOURCES,
        StoreError::Decode(_) | StoreError::MissingAttribute(_) | StoreError::BadUid { .. } => {
            CANNOT_UNDERSTAND
        }
        StoreError::InstanceMismatch { .. } | StoreError::ClassMismatch { .. } => DATASET_DOES_NOT_MATCH,
        StoreError::SopClassNotSupported(_) => SOP_CLASS_NOT_SUPPORTED,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::{ReceiptError, UidError};
    use std::io;

    #[test]
    fn store_errors_map_to_their_status_family() {
        let io = StoreError::Io {
            context: "write",
            source: io::Error::other("disk full"),
        };
        assert_eq!(for_store_error(&io), 0xA700);
        let db = StoreError::Receipt(ReceiptError::Unavailable("closed".into()));
        assert_eq!(for_store_error(&db), 0xA700);
        let bad = StoreError::BadUid {
            keyword: "StudyInstanceUID",
            value: "../x".into(),
            problem: UidError::NotDigitsAndDots,
        };
        assert_eq!(for_store_error(&bad) & 0xF000, 0xC000);
        assert_eq!(
            for_store_error(&StoreError::MissingAttribute("SOPInstanceUID")) & 0xF000,
            0xC000
        );
        assert_eq!(
            for_store_error(&StoreError::Decode("eof".into())) & 0xF000,
            0xC000
        );
        let mismatch = StoreError::InstanceMismatch {
            command: "1.2".into(),
            dataset: "1.3".into(),
        };
        assert_eq!(for_store_error(&mismatch) & 0xFF00, 0xA900);
    }

    #[test]
    fn statuses_have_names() {
        assert_eq!(name(SUCCESS), "Success");
        assert_eq!(name(0xA701), "Refused: out of resources");
        assert_eq!(name(0xC123), "Error: cannot understand");
    }
}
