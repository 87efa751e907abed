//! Sample shards: fixed-width (anchor, positive, K negatives, their hardness) records.

use crate::format::{FormatError, HEADER_LEN, Header, SAMPLES_MAGIC, VERSION, sha256};
use memmap2::Mmap;
use std::path::{Path, PathBuf};

/// One training sample as the sampler produces it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sample {
    pub anchor: u32,
    pub positive: u32,
    pub negatives: Vec<u32>,
    pub hardness: Vec<u8>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train = 0,
    Validation = 1,
}

/// Bytes per record for K negatives: 8 + 5K, rounded up to 4.
pub fn record_size(k: usize) -> usize {
    (8 + 5 * k).div_ceil(4) * 4
}

/// What a samples file says about itself besides its records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SamplesMeta {
    pub k: usize,
    pub epoch: u32,
    pub split: Split,
    pub tokenizer_sha256: [u8; 32],
    pub config_hash: [u8; 32],
}

/// The file's bytes: header then records. Panics only on a sample of the wrong K, a bug of the caller.
pub fn encode(meta: &SamplesMeta, samples: &[Sample]) -> Vec<u8> {
    let size = record_size(meta.k);
    let mut body = vec![0u8; size * samples.len()];
    for (s, rec) in samples.iter().zip(body.chunks_exact_mut(size)) {
        assert_eq!(s.negatives.len(), meta.k, "every sample has K negatives");
        rec[0..4].copy_from_slice(&s.anchor.to_le_bytes());
        rec[4..8].copy_from_slice(&s.positive.to_le_bytes());
        for (i, n) in s.negatives.iter().enumerate() {
            rec[8 + 4 * i..12 + 4 * i].copy_from_slice(&n.to_le_bytes());
        }
        rec[8 + 4 * meta.k..8 + 5 * meta.k].copy_from_slice(&s.hardness);
    }
    let header = Header {
        magic: SAMPLES_MAGIC,
        version: VERSION,
        layout: [meta.k as u32, size as u32, meta.epoch, meta.split as u32],
        count: samples.len() as u64,
        body_len: body.len() as u64,
        tokenizer_sha256: meta.tokenizer_sha256,
        content_hash: meta.config_hash,
        body_sha256: sha256(&body),
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&body);
    out
}

/// A memory-mapped samples file, checked on open.
pub struct SamplesFile {
    pub path: PathBuf,
    pub meta: SamplesMeta,
    len: usize,
    mmap: Mmap,
}

impl SamplesFile {
    /// Opens and verifies a shard; `tokenizer` is the sha256 of the model's tokenizer.json,
    /// which must be the one the shard was built with.
    pub fn open(path: &Path, tokenizer: Option<[u8; 32]>) -> Result<SamplesFile, FormatError> {
        let mmap = map(path)?;
        let header = Header::check(path, &mmap, SAMPLES_MAGIC)?;
        let [k, size, epoch, split] = header.layout;
        let invalid = |problem: String| FormatError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        if size as usize != record_size(k as usize) || header.body_len != header.count * size as u64 {
            return Err(invalid(format!(
                "record size {size} does not fit K = {k} and {} records",
                header.count
            )));
        }
        let split = match split {
            0 => Split::Train,
            1 => Split::Validation,
            other => return Err(invalid(format!("unknown split {other}"))),
        };
        if let Some(expected) = tokenizer.filter(|t| *t != header.tokenizer_sha256) {
            return Err(FormatError::WrongTokenizer {
                path: path.to_path_buf(),
                expected,
                found: header.tokenizer_sha256,
            });
        }
        let meta = SamplesMeta {
            k: k as usize,
            epoch,
            split,
            tokenizer_sha256: header.tokenizer_sha256,
            config_hash: header.content_hash,
        };
        Ok(SamplesFile {
            path: path.to_path_buf(),
            meta,
            len: header.count as usize,
            mmap,
        })
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Record `i`, read in place from the mapping.
    pub fn get(&self, i: usize) -> Record<'_> {
        let size = record_size(self.meta.k);
        Record {
            bytes: &self.mmap[HEADER_LEN + i * size..HEADER_LEN + (i + 1) * size],
            k: self.meta.k,
        }
    }
}

/// A view of one record's bytes.
#[derive(Clone, Copy)]
pub struct Record<'a> {
    bytes: &'a [u8],
    k: usize,
}

impl Record<'_> {
    fn u32_at(&self, offset: usize) -> u32 {
        u32::from_le_bytes(self.bytes[offset..offset + 4].try_into().expect("4 bytes"))
    }
    pub fn anchor(&self) -> u32 {
        self.u32_at(0)
    }
    pub fn positive(&self) -> u32 {
        self.u32_at(4)
    }
    pub fn negative(&self, i: usize) -> u32 {
        self.u32_at(8 + 4 * i)
    }
    pub fn hardness(&self) -> &[u8] {
        &self.bytes[8 + 4 * self.k..8 + 5 * self.k]
    }
    /// The record's codes: anchor, positive, then the K negatives.
    pub fn codes(&self) -> impl Iterator<Item = u32> + '_ {
        [self.anchor(), self.positive()]
            .into_iter()
            .chain((0..self.k).map(|i| self.negative(i)))
    }
    pub fn to_sample(&self) -> Sample {
        Sample {
            anchor: self.anchor(),
            positive: self.positive(),
            negatives: (0..self.k).map(|i| self.negative(i)).collect(),
            hardness: self.hardness().to_vec(),
        }
    }
}

pub(crate) fn map(path: &Path) -> Result<Mmap, FormatError> {
    let io = |source| FormatError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // Safety: the file is only read; writers never modify a shard in place (they write a new
    // file and rename it over the old one), so the mapping cannot change under us.
    unsafe { Mmap::map(&file) }.map_err(io)
}
