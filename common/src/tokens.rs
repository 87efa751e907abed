//! The token cache: every code's four channels tokenized once, ids in one flat array per
//! channel with offsets, so the trainer pads per batch.

use crate::format::{CHANNELS, FormatError, HEADER_LEN, Header, TOKENS_MAGIC, VERSION, sha256};
use memmap2::Mmap;
use std::path::{Path, PathBuf};

/// Token ids of every code for one channel, as the writer holds them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ChannelIds {
    pub offsets: Vec<u64>,
    pub ids: Vec<u32>,
}

impl ChannelIds {
    pub fn push(&mut self, ids: &[u32]) {
        if self.offsets.is_empty() {
            self.offsets.push(0);
        }
        self.ids.extend_from_slice(ids);
        self.offsets.push(self.ids.len() as u64);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokensMeta {
    pub codes: usize,
    pub max_length: u32,
    /// 2 when every id of the vocabulary fits in u16, else 4.
    pub id_width: u32,
    pub tokenizer_sha256: [u8; 32],
    /// sha256 of the texts and max_length: the cache is rebuilt when it changes.
    pub texts_hash: [u8; 32],
}

fn pad8(body: &mut Vec<u8>) {
    body.resize(body.len().div_ceil(8) * 8, 0);
}

pub fn encode(meta: &TokensMeta, channels: &[ChannelIds; 4]) -> Vec<u8> {
    let mut body = Vec::new();
    for c in channels {
        assert_eq!(c.offsets.len(), meta.codes + 1, "one offset per code, plus one");
        for o in &c.offsets {
            body.extend_from_slice(&o.to_le_bytes());
        }
        for id in &c.ids {
            match meta.id_width {
                2 => body.extend_from_slice(&(*id as u16).to_le_bytes()),
                _ => body.extend_from_slice(&id.to_le_bytes()),
            }
        }
        pad8(&mut body);
    }
    let header = Header {
        magic: TOKENS_MAGIC,
        version: VERSION,
        layout: [meta.id_width, CHANNELS.len() as u32, meta.max_length, 0],
        count: meta.codes as u64,
        body_len: body.len() as u64,
        tokenizer_sha256: meta.tokenizer_sha256,
        content_hash: meta.texts_hash,
        body_sha256: sha256(&body),
    };
    let mut out = header.encode().to_vec();
    out.extend_from_slice(&body);
    out
}

/// One channel's section of the mapping, as byte ranges.
#[derive(Debug, Clone, Copy)]
struct Section {
    offsets: usize,
    ids: usize,
}

/// The memory-mapped token cache, checked on open.
pub struct TokenCache {
    pub path: PathBuf,
    pub meta: TokensMeta,
    sections: [Section; 4],
    mmap: Mmap,
}

/// A code's ids in one channel, borrowed from the mapping.
#[derive(Debug, Clone, Copy)]
pub enum Ids<'a> {
    U16(&'a [u16]),
    U32(&'a [u32]),
}

impl Ids<'_> {
    pub fn len(&self) -> usize {
        match self {
            Ids::U16(s) => s.len(),
            Ids::U32(s) => s.len(),
        }
    }
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
    pub fn to_vec(&self) -> Vec<u32> {
        match self {
            Ids::U16(s) => s.iter().map(|&i| i as u32).collect(),
            Ids::U32(s) => s.to_vec(),
        }
    }
}

impl TokenCache {
    pub fn open(path: &Path, tokenizer: Option<[u8; 32]>) -> Result<TokenCache, FormatError> {
        let mmap = crate::samples::map(path)?;
        let header = Header::check(path, &mmap, TOKENS_MAGIC)?;
        let invalid = |problem: String| FormatError::Invalid {
            path: path.to_path_buf(),
            problem,
        };
        let [id_width, channels, max_length, _] = header.layout;
        if !matches!(id_width, 2 | 4) || channels as usize != CHANNELS.len() {
            return Err(invalid(format!(
                "unsupported layout: id width {id_width}, {channels} channels"
            )));
        }
        if cfg!(target_endian = "big") {
            return Err(invalid(
                "token caches are little-endian; this machine is big-endian".into(),
            ));
        }
        if let Some(expected) = tokenizer.filter(|t| *t != header.tokenizer_sha256) {
            return Err(FormatError::WrongTokenizer {
                path: path.to_path_buf(),
                expected,
                found: header.tokenizer_sha256,
            });
        }
        let codes = header.count as usize;
        let mut sections = [Section { offsets: 0, ids: 0 }; 4];
        let mut at = HEADER_LEN;
        for section in sections.iter_mut() {
            let offsets_end = at + 8 * (codes + 1);
            if offsets_end > mmap.len() {
                return Err(invalid("truncated token offsets".into()));
            }
            let offsets: &[u64] = bytemuck::cast_slice(&mmap[at..offsets_end]);
            if offsets[0] != 0 || offsets.windows(2).any(|w| w[0] > w[1]) {
                return Err(invalid("token offsets are not increasing".into()));
            }
            let total = offsets[codes] as usize;
            *section = Section {
                offsets: at,
                ids: offsets_end,
            };
            at = (offsets_end + total * id_width as usize).div_ceil(8) * 8;
            if at > mmap.len() {
                return Err(invalid("truncated token ids".into()));
            }
        }
        let meta = TokensMeta {
            codes,
            max_length,
            id_width,
            tokenizer_sha256: header.tokenizer_sha256,
            texts_hash: header.content_hash,
        };
        Ok(TokenCache {
            path: path.to_path_buf(),
            meta,
            sections,
            mmap,
        })
    }

    /// The ids of `code` (a Census index) in channel `channel` (an index into [`CHANNELS`]).
    pub fn ids(&self, channel: usize, code: usize) -> Ids<'_> {
        let s = self.sections[channel];
        let offsets: &[u64] = bytemuck::cast_slice(&self.mmap[s.offsets..s.ids]);
        let (start, end) = (offsets[code] as usize, offsets[code + 1] as usize);
        let width = self.meta.id_width as usize;
        let bytes = &self.mmap[s.ids + start * width..s.ids + end * width];
        match width {
            2 => Ids::U16(bytemuck::cast_slice(bytes)),
            _ => Ids::U32(bytemuck::cast_slice(bytes)),
        }
    }
}
