//! The shard and token-cache readers accept what the writers wrote and reject everything else.

use naics_common::format::{FormatError, HEADER_LEN};
use naics_common::samples::{self, Sample, SamplesFile, SamplesMeta, Split};
use naics_common::tokens::{self, ChannelIds, Ids, TokenCache, TokensMeta};
use std::path::Path;

const TOKENIZER: [u8; 32] = [7; 32];

fn meta() -> SamplesMeta {
    SamplesMeta {
        k: 3,
        epoch: 2,
        split: Split::Train,
        tokenizer_sha256: TOKENIZER,
        config_hash: [9; 32],
    }
}

fn some_samples() -> Vec<Sample> {
    vec![
        Sample {
            anchor: 1,
            positive: 2,
            negatives: vec![3, 4, 2124],
            hardness: vec![8, 1, 1],
        },
        Sample {
            anchor: 70000,
            positive: 5,
            negatives: vec![6, 7, 8],
            hardness: vec![2, 2, 7],
        },
    ]
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn samples_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "a.samples", &samples::encode(&meta(), &some_samples()));
    let file = SamplesFile::open(&path, Some(TOKENIZER)).unwrap();
    assert_eq!(file.meta, meta());
    assert_eq!(file.len(), 2);
    assert_eq!(
        (0..2).map(|i| file.get(i).to_sample()).collect::<Vec<_>>(),
        some_samples()
    );
    assert_eq!(file.get(1).codes().collect::<Vec<_>>(), vec![70000, 5, 6, 7, 8]);
    assert_eq!(samples::record_size(3), 24);
    assert_eq!(samples::record_size(16), 88);
}

fn open_err(bytes: &[u8], tokenizer: Option<[u8; 32]>) -> String {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "bad.samples", bytes);
    SamplesFile::open(&path, tokenizer)
        .err()
        .expect("must be rejected")
        .to_string()
}

#[test]
fn samples_reader_rejects_bad_files() {
    let good = samples::encode(&meta(), &some_samples());
    let e = open_err(&good[..good.len() - 5], None);
    assert!(e.contains("truncated") && e.contains("build-shards"), "{e}");
    assert!(open_err(&good[..100], None).contains("shorter than the 192-byte header"));
    let mut corrupt = good.clone();
    corrupt[HEADER_LEN + 3] ^= 1;
    assert!(open_err(&corrupt, None).contains("checksum"));
    let mut version = good.clone();
    version[8] = 2;
    assert!(open_err(&version, None).contains("format version 2"));
    let mut magic = good.clone();
    magic[0] = b'X';
    assert!(open_err(&magic, None).contains("not a NAICSSMP file"));
    let e = open_err(&good, Some([1; 32]));
    assert!(e.contains("built with tokenizer 0707") && e.contains("rebuild"), "{e}");
    let dir = tempfile::tempdir().unwrap();
    let missing = SamplesFile::open(&dir.path().join("none.samples"), None).err().unwrap();
    assert!(matches!(missing, FormatError::Io { .. }));
}

#[test]
fn token_cache_round_trip_and_checks() {
    let mut channels: [ChannelIds; 4] = Default::default();
    let texts: [Vec<Vec<u32>>; 4] = [
        vec![vec![101, 102], vec![101, 7, 102], vec![]],
        vec![vec![101, 65535, 102], vec![], vec![1]],
        vec![vec![], vec![], vec![]],
        vec![vec![5; 10], vec![6], vec![7, 8]],
    ];
    for (c, codes) in texts.iter().enumerate() {
        for ids in codes {
            channels[c].push(ids);
        }
    }
    let meta = TokensMeta {
        codes: 3,
        max_length: 128,
        id_width: 2,
        tokenizer_sha256: TOKENIZER,
        texts_hash: [3; 32],
    };
    let dir = tempfile::tempdir().unwrap();
    let bytes = tokens::encode(&meta, &channels);
    let path = write(dir.path(), "tokens.bin", &bytes);
    let cache = TokenCache::open(&path, Some(TOKENIZER)).unwrap();
    assert_eq!(cache.meta, meta);
    for (c, codes) in texts.iter().enumerate() {
        for (i, ids) in codes.iter().enumerate() {
            assert_eq!(&cache.ids(c, i).to_vec(), ids);
            assert!(matches!(cache.ids(c, i), Ids::U16(_)));
        }
    }
    let wide = TokensMeta { id_width: 4, ..meta };
    let path = write(dir.path(), "wide.bin", &tokens::encode(&wide, &channels));
    assert_eq!(
        TokenCache::open(&path, None).unwrap().ids(1, 0).to_vec(),
        vec![101, 65535, 102]
    );
    let wrong = TokenCache::open(&write(dir.path(), "t.bin", &bytes), Some([0; 32]))
        .err()
        .unwrap();
    assert!(matches!(wrong, FormatError::WrongTokenizer { .. }));
    let truncated = TokenCache::open(&write(dir.path(), "u.bin", &bytes[..bytes.len() - 8]), None)
        .err()
        .unwrap();
    assert!(truncated.to_string().contains("truncated"));
}
