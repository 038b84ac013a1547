//! The digest of a stored file as its receipt records it: "<algorithm>:<lowercase hex>"
//! (noctis_pro/contracts/receipt.py). Every file the SCP stores gets "blake3:" (`b3sum` checks it on disk);
//! receipts written before the switch hold "sha256:" (`sha256sum`), and are still checked as such.
//!
//! BLAKE3 rather than SHA-256: on this machine's CPU (with SHA extensions) SHA-256 took 0.27 ms per 0.5 MB
//! CT slice and BLAKE3 0.06 ms; the hash was the SCP's largest CPU cost per instance, and over four
//! associations the stack went from 835-867 to 900-955 instances/s with BLAKE3 (`make profile-ingest`,
//! alternating runs).

use std::io::Read;
use std::path::Path;

use sha2::Digest as _;

const BLAKE3: &str = "blake3:";
const SHA256: &str = "sha256:";

/// Hashes a file as it is written, in order.
pub struct FileHasher(blake3::Hasher);

impl Default for FileHasher {
    fn default() -> FileHasher {
        FileHasher(blake3::Hasher::new())
    }
}

impl FileHasher {
    pub fn update(&mut self, data: &[u8]) {
        self.0.update(data);
    }

    /// The digest, "blake3:<hex>".
    pub fn finish(self) -> String {
        format!("{BLAKE3}{}", self.0.finalize().to_hex())
    }
}

/// The digest ("blake3:<hex>") of everything `r` yields.
pub fn digest_of(r: &mut impl Read) -> std::io::Result<String> {
    let mut hasher = FileHasher::default();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            return Ok(hasher.finish());
        }
        hasher.update(&buf[..n]);
    }
}

/// Whether the file at `path` exists with this digest, in the algorithm the digest names (false for an
/// algorithm not known here).
pub fn file_has_digest(path: &Path, digest: &str) -> bool {
    let Ok(mut file) = std::fs::File::open(path) else {
        return false;
    };
    if digest.starts_with(BLAKE3) {
        return digest_of(&mut file).is_ok_and(|d| d == digest);
    }
    let Some(hex) = digest.strip_prefix(SHA256) else {
        return false;
    };
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).is_ok_and(|_| crate::store::hex(&hasher.finalize()) == hex)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_name_their_algorithm_and_match_the_reference_vectors() {
        let mut h = FileHasher::default();
        h.update(b"a");
        h.update(b"bc");
        // BLAKE3 of "abc" (the b3sum reference value).
        let abc = "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
        assert_eq!(h.finish(), abc);
        assert_eq!(digest_of(&mut &b"abc"[..]).unwrap(), abc);
    }

    #[test]
    fn a_file_is_checked_in_the_algorithm_its_digest_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f.dcm");
        std::fs::write(&path, b"abc").unwrap();
        let blake3 = "blake3:6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85";
        // SHA-256 of "abc" (FIPS 180-2 test vector): receipts from before the switch.
        let sha256 = "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";
        assert!(file_has_digest(&path, blake3));
        assert!(file_has_digest(&path, sha256));
        assert!(!file_has_digest(&path, &blake3.replace("6437", "6438")));
        assert!(!file_has_digest(&path, "md5:900150983cd24fb0d6963f7d28e17f72"));
        assert!(!file_has_digest(&dir.path().join("absent.dcm"), blake3));
    }
}
