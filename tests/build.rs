//! Which optional tools the end-to-end tests find, as cfgs: a test whose tool is missing is
//! compiled `#[ignore]`d with the reason, so that cargo's summary counts it as ignored, never as
//! a pass. `.ci/run` installs or fetches them before it builds the tests. A path that exists is
//! watched; a missing one is not (cargo would rerun this and rebuild every test each time), so
//! after installing a tool, `touch tests/build.rs`.

use std::path::PathBuf;

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    for var in ["NAICS_BEACON_DIR", "NAICS_BEACON_VENV", "HOME"] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("set by cargo")).join("..");
    let beacon = std::env::var_os("NAICS_BEACON_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("../shared/anchors/beacon"));
    let venv = std::env::var_os("NAICS_BEACON_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/naics/beacon-venv"));
    tool("chromedriver", &[PathBuf::from("/usr/bin/chromedriver")]);
    tool("beacon", &[beacon.join("beacon.py"), venv.join("bin/python")]);
    // Where the BEACON test finds them, so that it looks where this looked.
    println!("cargo::rustc-env=NAICS_BEACON_DIR={}", beacon.display());
    println!(
        "cargo::rustc-env=NAICS_BEACON_PYTHON={}",
        venv.join("bin/python").display()
    );
    tool(
        "icd10cm_xml",
        &[root.join("data/icd10cm/icd10cm-tabular-April-1-2026.xml")],
    );
}

/// `has_{name}` where every one of `paths` exists.
fn tool(name: &str, paths: &[PathBuf]) {
    println!("cargo::rustc-check-cfg=cfg(has_{name})");
    for p in paths.iter().filter(|p| p.exists()) {
        println!("cargo::rerun-if-changed={}", p.display());
    }
    if paths.iter().all(|p| p.exists()) {
        println!("cargo::rustc-cfg=has_{name}");
    }
}
