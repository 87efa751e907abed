//! Outputs appear whole or not at all: everything is written under a temporary name in the
//! destination's folder and renamed into place once complete, so a failed run leaves no
//! half-written file that a later stage could mistake for a good one.

use anyhow::{Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// The temporary sibling of `path` used while it is being written.
pub fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp-{}", std::process::id()))
}

/// Runs `write` against a temporary path, then renames the result (file or folder) to `path`,
/// replacing what was there. On error the temporary is removed and `path` is left untouched.
pub fn write_atomically<T>(path: &Path, write: impl FnOnce(&Path) -> Result<T>) -> Result<T> {
    let tmp = prepare(path)?;
    let result = write(&tmp);
    finish(&tmp, path, result)
}

/// `value` as pretty-printed JSON at `path`, written atomically; an error names the file.
pub fn write_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let json = serde_json::to_vec_pretty(value)?;
    write_atomically(path, |tmp| Ok(fs::write(tmp, &json)?)).with_context(|| format!("writing {}", path.display()))
}

/// Makes the destination's folder and clears a stale temporary; returns the temporary path.
/// With [`finish`], the two halves of [`write_atomically`] for writers that must `.await`.
pub fn prepare(path: &Path) -> Result<PathBuf> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).with_context(|| format!("creating folder {}", parent.display()))?;
    }
    let tmp = temp_path(path);
    remove_any(&tmp)?;
    clear_dead_leftovers(path)?;
    Ok(tmp)
}

/// Removes the temporaries that processes killed mid-write (SIGKILL gives no chance to clean
/// up) left in `path`'s folder, whatever they were writing, saying so. A live process's
/// temporary is its own: kept.
fn clear_dead_leftovers(path: &Path) -> Result<()> {
    let dir = path
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(entries) = fs::read_dir(dir) else { return Ok(()) };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let Some(pid) = file.to_str().and_then(temporary_of) else {
            continue;
        };
        if pid != std::process::id() && !alive(pid) {
            remove_any(&entry.path())?;
            eprintln!(
                "removed {}: a partial output of process {pid}, which is no longer running",
                entry.path().display()
            );
        }
    }
    Ok(())
}

/// The process that writes a file named as [`temp_path`] names temporaries (`.NAME.tmp-PID`).
fn temporary_of(file: &str) -> Option<u32> {
    let (name, pid) = file.strip_prefix('.')?.rsplit_once(".tmp-")?;
    if name.is_empty() {
        return None;
    }
    pid.parse().ok()
}

/// Whether process `pid` runs, by its /proc entry. Where there is no /proc (not Linux), every
/// process counts as alive, so no other process's temporary is ever removed.
fn alive(pid: u32) -> bool {
    !cfg!(target_os = "linux") || Path::new(&format!("/proc/{pid}")).exists()
}

/// Renames `tmp` to `path` when `result` is a success, removes it otherwise.
pub fn finish<T>(tmp: &Path, path: &Path, result: Result<T>) -> Result<T> {
    match result {
        Ok(value) => {
            remove_any(path)?;
            fs::rename(tmp, path).with_context(|| format!("renaming {} to {}", tmp.display(), path.display()))?;
            Ok(value)
        }
        Err(err) => {
            let _ = remove_any(tmp);
            Err(err)
        }
    }
}

fn remove_any(path: &Path) -> Result<()> {
    let result = match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => return Ok(()),
    };
    result.with_context(|| format!("removing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failed_write_leaves_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out.parquet");
        fs::write(&out, b"old").unwrap();
        let result: Result<()> = write_atomically(&out, |tmp| {
            fs::write(tmp, b"half")?;
            anyhow::bail!("disk on fire")
        });
        assert!(result.is_err());
        assert_eq!(fs::read(&out).unwrap(), b"old");
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn leftovers_of_dead_processes_are_removed_and_a_live_ones_kept() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("o8.parquet");
        let mut finished = std::process::Command::new("true").spawn().unwrap();
        let dead = finished.id();
        finished.wait().unwrap();
        let mut running = std::process::Command::new("sleep").arg("30").spawn().unwrap();
        let leftover = |pid: u32| dir.path().join(format!(".o8.parquet.tmp-{pid}"));
        fs::write(leftover(dead), b"half").unwrap();
        fs::create_dir(leftover(u32::MAX - 1)).unwrap();
        fs::write(leftover(running.id()), b"being written").unwrap();
        // Another output's, of a dead process, in the same folder; a file merely named alike.
        fs::write(dir.path().join(format!(".other.parquet.tmp-{dead}")), b"x").unwrap();
        fs::write(dir.path().join("notes.tmp-12"), b"mine").unwrap();
        write_atomically(&out, |tmp| Ok(fs::write(tmp, b"new")?)).unwrap();
        assert!(!leftover(dead).exists() && !leftover(u32::MAX - 1).exists());
        assert!(!dir.path().join(format!(".other.parquet.tmp-{dead}")).exists());
        assert!(leftover(running.id()).exists());
        assert!(dir.path().join("notes.tmp-12").exists());
        assert_eq!(fs::read(&out).unwrap(), b"new");
        running.kill().unwrap();
        running.wait().unwrap();
    }

    #[test]
    fn successful_write_replaces_the_target() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("sub").join("out.bin");
        write_atomically(&out, |tmp| Ok(fs::write(tmp, b"new")?)).unwrap();
        assert_eq!(fs::read(&out).unwrap(), b"new");
    }
}
