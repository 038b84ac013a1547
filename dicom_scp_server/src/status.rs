//! DICOM status codes the SCP answers (PS3.7 Annex C), in one table, and the one place where errors
//! become statuses.

use crate::error::StoreError;

/// Success.
pub const SUCCESS: u16 = 0x0000;
/// Refused: SOP class not supported (the command names a class the presentation context does not carry).
pub const SOP_CLASS_NOT_SUPPORTED: u16 = 0x0122;
/// Refused: the command is not one this SCP performs.
pub const UNRECOGNIZED_OPERATION: u16 = 0x0211;
/// Out of resources: disk full, IO error, database down. The sender may retry later.
pub const OUT_OF_RESOURCES: u16 = 0xA700;
/// Error: data set does not match SOP class (here: the data set's SOP Instance/Class UID differs
/// from the command's Affected SOP Instance/Class UID).
pub const DATASET_DOES_NOT_MATCH: u16 = 0xA900;
/// Error: cannot understand (undecodable data set, missing or invalid UIDs).
pub const CANNOT_UNDERSTAND: u16 = 0xC000;

/// Human name of a status, for logs.
pub fn name(status: u16) -> &'static str {
    match status {
        SUCCESS => "Success",
        SOP_CLASS_NOT_SUPPORTED => "Refused: SOP class not supported",
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
