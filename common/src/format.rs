//! The binary layouts shared by writer (naics-pipeline) and reader (naics-trainer).
//!
//! Every file: a 192-byte little-endian header, then the body.
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic: `NAICSSMP` (samples) or `NAICSTOK` (token cache) |
//! | 8 | 4 | format version (u32), currently 1 |
//! | 12 | 4 | layout word 0 (u32): samples: K, negatives per record; tokens: id width in bytes (2 or 4) |
//! | 16 | 4 | layout word 1 (u32): samples: record size in bytes; tokens: number of channels |
//! | 20 | 4 | layout word 2 (u32): samples: epoch; tokens: max_length |
//! | 24 | 4 | layout word 3 (u32): samples: split (0 train, 1 validation); tokens: 0 |
//! | 28 | 4 | reserved, 0 |
//! | 32 | 8 | count (u64): samples: records; tokens: codes |
//! | 40 | 8 | body length in bytes (u64) |
//! | 48 | 32 | sha256 of the tokenizer.json the token ids came from |
//! | 80 | 32 | content hash: samples: of the resolved configuration; tokens: of the texts and max_length |
//! | 112 | 32 | sha256 of the body |
//! | 144 | 48 | reserved, 0 |
//!
//! Samples body: `count` fixed-width records of `anchor u32, positive u32, negatives [u32; K],
//! hardness [u8; K]`, zero-padded to a multiple of 4 bytes; codes are Census indices.
//!
//! Token body: for each channel c (title, description, excluded, examples): `offsets [u64;
//! count + 1]` then the ids `[u16 or u32; offsets[count]]`, padded to 8 bytes. Codes' ids are
//! `ids[offsets[i]..offsets[i + 1]]`, special tokens included, unpadded.

use sha2::{Digest, Sha256};
use std::path::PathBuf;

pub const HEADER_LEN: usize = 192;
pub const VERSION: u32 = 1;
pub const SAMPLES_MAGIC: [u8; 8] = *b"NAICSSMP";
pub const TOKENS_MAGIC: [u8; 8] = *b"NAICSTOK";
pub const CHANNELS: [&str; 4] = ["title", "description", "excluded", "examples"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub magic: [u8; 8],
    pub version: u32,
    pub layout: [u32; 4],
    pub count: u64,
    pub body_len: u64,
    pub tokenizer_sha256: [u8; 32],
    pub content_hash: [u8; 32],
    pub body_sha256: [u8; 32],
}

impl Header {
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[0..8].copy_from_slice(&self.magic);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        for (i, w) in self.layout.iter().enumerate() {
            out[12 + 4 * i..16 + 4 * i].copy_from_slice(&w.to_le_bytes());
        }
        out[32..40].copy_from_slice(&self.count.to_le_bytes());
        out[40..48].copy_from_slice(&self.body_len.to_le_bytes());
        out[48..80].copy_from_slice(&self.tokenizer_sha256);
        out[80..112].copy_from_slice(&self.content_hash);
        out[112..144].copy_from_slice(&self.body_sha256);
        out
    }

    /// Decodes and checks a file's header: magic, version, and that the body is all there and
    /// intact. `bytes` is the whole file.
    pub fn check(path: &std::path::Path, bytes: &[u8], magic: [u8; 8]) -> Result<Header, FormatError> {
        let err = |problem: String| FormatError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        if bytes.len() < HEADER_LEN {
            return Err(err(format!(
                "truncated: {} bytes, shorter than the {HEADER_LEN}-byte header",
                bytes.len()
            )));
        }
        let u32_at = |o: usize| u32::from_le_bytes(bytes[o..o + 4].try_into().expect("4 bytes"));
        let u64_at = |o: usize| u64::from_le_bytes(bytes[o..o + 8].try_into().expect("8 bytes"));
        let h32 = |o: usize| -> [u8; 32] { bytes[o..o + 32].try_into().expect("32 bytes") };
        let header = Header {
            magic: bytes[0..8].try_into().expect("8 bytes"),
            version: u32_at(8),
            layout: [u32_at(12), u32_at(16), u32_at(20), u32_at(24)],
            count: u64_at(32),
            body_len: u64_at(40),
            tokenizer_sha256: h32(48),
            content_hash: h32(80),
            body_sha256: h32(112),
        };
        if header.magic != magic {
            return Err(err(format!(
                "not a {} file (magic {:?})",
                String::from_utf8_lossy(&magic),
                String::from_utf8_lossy(&header.magic)
            )));
        }
        if header.version != VERSION {
            return Err(err(format!(
                "format version {} but this program reads version {VERSION}",
                header.version
            )));
        }
        let body = &bytes[HEADER_LEN..];
        if body.len() as u64 != header.body_len {
            return Err(err(format!(
                "truncated or padded: body is {} bytes, the header says {}",
                body.len(),
                header.body_len
            )));
        }
        if sha256(body) != header.body_sha256 {
            return Err(err(
                "corrupted: the body's checksum does not match the header".to_string()
            ));
        }
        Ok(header)
    }
}

pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, thiserror::Error)]
pub enum FormatError {
    #[error("{}: {problem}; rebuild it with `naics-pipeline build-shards -c EXPERIMENT`", path.display())]
    Invalid { path: PathBuf, problem: String },
    #[error(
        "{}: built with tokenizer {} but the model's tokenizer is {}; rebuild it with \
         `naics-pipeline build-shards -c EXPERIMENT` for this model", path.display(), hex(found), hex(expected)
    )]
    WrongTokenizer {
        path: PathBuf,
        expected: [u8; 32],
        found: [u8; 32],
    },
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
}
