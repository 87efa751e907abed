//! Where a model's files are: a local folder (config.json, model.safetensors, tokenizer.json),
//! or, with the `hub` cargo feature, a Hugging Face hub id downloaded into the hub's cache.

use super::MODEL_FILES;
use anyhow::Result;
use std::path::{Path, PathBuf};

/// The local folder of a model given as a folder or, failing that, as a hub id (`hub_id`, or the
/// location itself when it looks like `owner/name`).
pub fn locate(location: &Path, hub_id: Option<&str>) -> Result<PathBuf> {
    if location.join("config.json").is_file() {
        return Ok(location.to_path_buf());
    }
    let as_id = location
        .to_str()
        .filter(|s| s.split('/').count() == 2 && !location.exists());
    match hub_id.or(as_id) {
        Some(id) => download(id),
        None => Ok(location.to_path_buf()),
    }
}

/// Reads `HF_ENDPOINT` (a mirror) and `HF_HOME` (the cache) as the Python hub client does.
#[cfg(feature = "hub")]
fn download(id: &str) -> Result<PathBuf> {
    fetch(&hf_hub::api::sync::ApiBuilder::from_env().build()?, id)
}

/// The model's files through `api`, each from its cache when there.
#[cfg(feature = "hub")]
fn fetch(api: &hf_hub::api::sync::Api, id: &str) -> Result<PathBuf> {
    use anyhow::Context;
    let repo = api.model(id.to_string());
    let mut folder = None;
    for file in MODEL_FILES {
        let path = repo
            .get(file)
            .with_context(|| format!("downloading {file} of {id} from the Hugging Face hub"))?;
        folder = path.parent().map(Path::to_path_buf);
    }
    folder.context("no files downloaded")
}

#[cfg(not(feature = "hub"))]
fn download(id: &str) -> Result<PathBuf> {
    anyhow::bail!(
        "the model is not in a local folder, and this build cannot download hub id `{id}`: fetch it with \
         `naics-trainer fetch-model minilm|mpnet`, or rebuild with `--features hub` where the hub is reachable \
         (files needed: {MODEL_FILES:?})"
    )
}

/// The download through hf-hub from a server on this machine that answers as the hub does (the
/// hub itself is out of reach here): range requests, ETag and commit headers.
#[cfg(all(test, feature = "hub"))]
mod tests {
    use super::*;
    use std::io::{BufRead, BufReader, Write};
    use std::net::TcpListener;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Serves `folder`'s files as model `id`'s, at `/{id}/resolve/main/{file}`, one request per
    /// connection; returns its address and the count of requests it answered.
    fn serve(folder: PathBuf, id: &str) -> (String, Arc<AtomicUsize>) {
        let prefix = format!("/{id}/resolve/main/");
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        let requests = Arc::new(AtomicUsize::new(0));
        let count = requests.clone();
        std::thread::spawn(move || {
            for mut stream in listener.incoming().map_while(Result::ok) {
                count.fetch_add(1, Ordering::SeqCst);
                let mut lines = BufReader::new(stream.try_clone().unwrap())
                    .lines()
                    .map_while(Result::ok);
                let path = lines
                    .next()
                    .unwrap_or_default()
                    .split(' ')
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                // "Range: bytes=a-" or "bytes=a-b".
                let range = lines
                    .take_while(|l| !l.is_empty())
                    .find_map(|l| l.to_ascii_lowercase().strip_prefix("range: bytes=").map(str::to_string))
                    .unwrap_or_else(|| "0-".into());
                let file = path.strip_prefix(&prefix).map(|name| folder.join(name));
                let (head, part) = match file.and_then(|file| std::fs::read(file).ok()) {
                    Some(body) => {
                        let (a, b) = range.split_once('-').unwrap();
                        let start = a.parse::<usize>().unwrap().min(body.len());
                        let end = b.parse::<usize>().map_or(body.len(), |b| (b + 1).min(body.len()));
                        let head = format!(
                            "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\n\
                             Content-Range: bytes {start}-{}/{}\r\nETag: \"{}\"\r\n\
                             X-Repo-Commit: 0123456789abcdef\r\nConnection: close\r\n\r\n",
                            end - start,
                            end.saturating_sub(1),
                            body.len(),
                            body.len(),
                        );
                        (head, body[start..end].to_vec())
                    }
                    None => (
                        "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n".into(),
                        vec![],
                    ),
                };
                let _ = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(&part));
            }
        });
        (format!("http://{address}"), requests)
    }

    #[test]
    fn a_hub_id_downloads_the_model_files() {
        let source = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../data/models/all-MiniLM-L6-v2");
        let cache = tempfile::tempdir().unwrap();
        let id = "sentence-transformers/all-MiniLM-L6-v2";
        let (endpoint, requests) = serve(source.clone(), id);
        let api = hf_hub::api::sync::ApiBuilder::new()
            .with_endpoint(endpoint)
            .with_cache_dir(cache.path().to_path_buf())
            .with_progress(false)
            .build()
            .unwrap();
        let folder = fetch(&api, id).unwrap();
        assert!(folder.starts_with(cache.path()));
        for file in MODEL_FILES {
            let (got, want) = (
                std::fs::read(folder.join(file)).unwrap(),
                std::fs::read(source.join(file)).unwrap(),
            );
            assert!(got == want, "{file} differs from the served file");
        }
        crate::model::Encoder::load(&folder, 128, &candle_core::Device::Cpu, candle_core::DType::F32).unwrap();
        // Again: from the cache, the server not asked.
        let asked = requests.load(Ordering::SeqCst);
        assert_eq!(fetch(&api, id).unwrap(), folder);
        assert_eq!(requests.load(Ordering::SeqCst), asked);
        let missing = fetch(&api, "sentence-transformers/nothing-here").unwrap_err();
        assert!(format!("{missing:#}").contains("downloading config.json of sentence-transformers/nothing-here"));
    }
}
