//! Builds `bpf/strata.bpf.c` into the object the crate embeds.
//!
//! With clang present (`STRATA_CLANG`, else `clang-14`, else `clang`; `STRATA_CLANG=` set empty
//! forces the prebuilt path, as on a machine without LLVM), the object is compiled with
//! CO-RE (`-target bpf -O2 -g`) and stripped of DWARF only (`llvm-strip -g`), which keeps `.BTF`
//! and `.BTF.ext`: the loader needs both to relocate field offsets against the running kernel.
//! Without clang, the committed `prebuilt/strata.bpf.o` is embedded instead, so `cargo build`
//! works on machines without an LLVM toolchain.
//!
//! The prebuilt object sits beside a hash of the sources and flags it was built from. The crate's
//! tests compare it with the hash of the sources in the tree and fail when they differ.
//! `STRATA_UPDATE_PREBUILT=1 cargo build -p strata-ebpf` refreshes the committed object.

use sha2::{Digest, Sha256};
use std::env;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const OBJECT: &str = "strata.bpf.o";
const ENTRY: &str = "strata.bpf.c";
/// Part of the source hash: a flag change makes the committed object stale, as a source change does.
const CFLAGS: &[&str] = &["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"];

fn main() {
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets it"));
    let bpf_dir = manifest.join("bpf");
    let prebuilt = manifest.join("prebuilt").join(OBJECT);
    let prebuilt_hash_file = manifest.join("prebuilt").join(format!("{OBJECT}.sha256"));
    let embedded = out_dir.join(OBJECT);

    println!("cargo:rerun-if-changed={}", bpf_dir.display());
    println!("cargo:rerun-if-changed={}", prebuilt.display());
    println!("cargo:rerun-if-changed={}", prebuilt_hash_file.display());
    for var in [
        "STRATA_CLANG",
        "STRATA_LLVM_STRIP",
        "STRATA_UPDATE_PREBUILT",
    ] {
        println!("cargo:rerun-if-env-changed={var}");
    }

    let source_hash = hash_sources(&bpf_dir);
    let prebuilt_hash = fs::read_to_string(&prebuilt_hash_file)
        .map(|text| text.trim().to_owned())
        .unwrap_or_default();

    let origin = match find_tool("STRATA_CLANG", &["clang-14", "clang"]) {
        Some(clang) => {
            compile(&clang, &bpf_dir, &embedded);
            strip_debug_info(&embedded);
            if env::var("STRATA_UPDATE_PREBUILT").as_deref() == Ok("1") {
                update_prebuilt(&embedded, &prebuilt, &prebuilt_hash_file, &source_hash);
            } else if prebuilt_hash != source_hash {
                println!(
                    "cargo:warning=prebuilt/{OBJECT} is stale; refresh it with \
                     STRATA_UPDATE_PREBUILT=1 cargo build -p strata-ebpf"
                );
            }
            "clang"
        }
        None => {
            fs::copy(&prebuilt, &embedded)
                .unwrap_or_else(|err| panic!("no clang and no {}: {err}", prebuilt.display()));
            if prebuilt_hash != source_hash {
                println!(
                    "cargo:warning=no clang: embedding prebuilt/{OBJECT}, which does not match \
                     the sources in bpf/"
                );
            }
            "prebuilt"
        }
    };

    println!("cargo:rustc-env=STRATA_BPF_SOURCE_HASH={source_hash}");
    println!("cargo:rustc-env=STRATA_BPF_PREBUILT_HASH={prebuilt_hash}");
    println!("cargo:rustc-env=STRATA_BPF_OBJECT_ORIGIN={origin}");
}

/// SHA-256 over the flags and every `.c`/`.h` file under `bpf/`, in name order, each framed by its
/// name and length so that moving text between files changes the hash.
fn hash_sources(bpf_dir: &Path) -> String {
    let mut files: Vec<PathBuf> = fs::read_dir(bpf_dir)
        .unwrap_or_else(|err| panic!("{}: {err}", bpf_dir.display()))
        .map(|entry| entry.expect("readable bpf/ entry").path())
        .filter(|path| matches!(path.extension().and_then(|e| e.to_str()), Some("c" | "h")))
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    hasher.update(CFLAGS.join(" ").as_bytes());
    for path in files {
        let name = path
            .file_name()
            .expect("a file")
            .to_string_lossy()
            .into_owned();
        let text = fs::read(&path).unwrap_or_else(|err| panic!("{}: {err}", path.display()));
        hasher.update((name.len() as u64).to_le_bytes());
        hasher.update(name.as_bytes());
        hasher.update((text.len() as u64).to_le_bytes());
        hasher.update(&text);
    }
    hasher
        .finalize()
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect()
}

fn find_tool(override_var: &str, candidates: &[&str]) -> Option<PathBuf> {
    if let Some(path) = env::var_os(override_var) {
        return (!path.is_empty()).then(|| PathBuf::from(path));
    }
    candidates
        .iter()
        .find(|name| {
            Command::new(name)
                .arg("--version")
                .output()
                .is_ok_and(|out| out.status.success())
        })
        .map(PathBuf::from)
}

/// UAPI headers (`linux/bpf.h`) include `asm/types.h`, which Debian keeps under the multiarch dir.
fn multiarch_include() -> String {
    let arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_else(|_| "x86_64".to_owned());
    format!("/usr/include/{arch}-linux-gnu")
}

fn compile(clang: &Path, bpf_dir: &Path, output: &Path) {
    let status = Command::new(clang)
        .args(CFLAGS)
        .arg(format!("-I{}", multiarch_include()))
        .arg(format!("-I{}", bpf_dir.display()))
        .arg("-c")
        .arg(bpf_dir.join(ENTRY))
        .arg("-o")
        .arg(output)
        .status()
        .unwrap_or_else(|err| panic!("running {}: {err}", clang.display()));
    assert!(
        status.success(),
        "{} failed on bpf/{ENTRY}",
        clang.display()
    );
}

fn strip_debug_info(object: &Path) {
    match find_tool("STRATA_LLVM_STRIP", &["llvm-strip-14", "llvm-strip"]) {
        Some(strip) => {
            let status = Command::new(&strip)
                .arg("-g")
                .arg(object)
                .status()
                .unwrap_or_else(|err| panic!("running {}: {err}", strip.display()));
            assert!(status.success(), "{} -g failed", strip.display());
        }
        None => println!("cargo:warning=no llvm-strip: embedding {OBJECT} with its DWARF"),
    }
}

fn update_prebuilt(built: &Path, prebuilt: &Path, hash_file: &Path, source_hash: &str) {
    let fresh = fs::read(built).expect("object just built");
    // Rewrite only on change: the files are rerun-if-changed inputs of this script.
    if fs::read(prebuilt).ok().as_deref() != Some(fresh.as_slice()) {
        fs::write(prebuilt, &fresh).expect("writable prebuilt/");
    }
    let line = format!("{source_hash}\n");
    if fs::read_to_string(hash_file).ok().as_deref() != Some(line.as_str()) {
        fs::write(hash_file, line).expect("writable prebuilt/");
    }
}
