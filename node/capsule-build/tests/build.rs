//! Builds the `tiny-capsule` fixture with each toolchain path and checks the module, plus the
//! errors for crates that cannot be built.
//!
//! All builds share one target dir under cargo's test scratch dir, so the standard library
//! built by the Debian path is reused across tests and runs; the builder's lock serializes
//! them. A cold run takes ~20-40 s per toolchain.

use std::path::{Path, PathBuf};

use ants_capsule_build::{
    BuildError, BuildOptions, BuiltCapsule, Toolchain, ToolchainChoice, build, default_target_dir,
    resolve_toolchain, running_as_root, sha256_file,
};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn shared_target_dir() -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).join("capsule-build")
}

fn options(toolchain: ToolchainChoice) -> BuildOptions {
    BuildOptions {
        toolchain,
        target_dir: Some(shared_target_dir()),
        ..BuildOptions::default()
    }
}

/// Checks what every build of `tiny-capsule` must satisfy.
fn check_tiny(built: &BuiltCapsule) -> Vec<u8> {
    assert!(built.path.is_absolute(), "{}", built.path.display());
    let bytes = std::fs::read(&built.path).unwrap();
    assert_eq!(&bytes[..4], b"\0asm", "not a wasm module");
    assert_eq!(built.size, bytes.len() as u64);
    assert_eq!(built.sha256, sha256_file(&built.path).unwrap());
    let module = wasm::parse(&bytes).expect("readable wasm module");
    assert_eq!(module.imports, [("ants".to_owned(), "log".to_owned())]);
    for export in ["ants_on_capsule", "ants_abi_version", "memory"] {
        assert!(
            module.exports.iter().any(|e| e == export),
            "missing export {export}: {:?}",
            module.exports
        );
    }
    bytes
}

#[test]
fn auto_builds_the_tiny_capsule_and_copies_it_out() {
    let out_dir = tempfile::tempdir().unwrap();
    let out = out_dir.path().join("nested/dir/tiny.wasm");
    let opts = BuildOptions {
        out: Some(out.clone()),
        ..options(ToolchainChoice::Auto)
    };
    let copied = build(&fixture("tiny-capsule"), &opts).unwrap_or_else(|e| panic!("{e}"));
    println!("auto chose: {}", copied.toolchain);
    assert_eq!(copied.path, out);
    let copied_bytes = check_tiny(&copied);

    // Without `out`, the artifact in the target dir is reported, identical to the copy.
    let opts = options(ToolchainChoice::Auto);
    let in_place = build(&fixture("tiny-capsule"), &opts).unwrap_or_else(|e| panic!("{e}"));
    assert!(in_place.path.starts_with(shared_target_dir()));
    assert_eq!(in_place.path.extension().unwrap(), "wasm");
    assert_eq!(check_tiny(&in_place), copied_bytes);
    assert_eq!(in_place.toolchain, copied.toolchain);
}

#[test]
fn debian_fallback_builds_the_tiny_capsule() {
    // Installing the packages needs root; without them and without root there is nothing to
    // test here, unless the environment demands it.
    let present = resolve_toolchain(ToolchainChoice::Debian, false);
    if let Err(why) = &present
        && !running_as_root()
    {
        let msg = format!(
            "SKIP debian_fallback_builds_the_tiny_capsule: the Debian packages are missing and \
             we are not root, so they cannot be installed:\n{why}"
        );
        if std::env::var_os("ANTS_REQUIRE_ROOT_TESTS").is_some_and(|v| v == "1") {
            panic!("{msg}\n(ANTS_REQUIRE_ROOT_TESTS=1 makes this a failure)");
        }
        eprintln!("{msg}");
        return;
    }
    let built = build(&fixture("tiny-capsule"), &options(ToolchainChoice::Debian))
        .unwrap_or_else(|e| panic!("{e}"));
    println!("debian path: {}", built.toolchain);
    let Toolchain::Debian { rustc, linker } = &built.toolchain else {
        panic!("asked for debian, got {}", built.toolchain);
    };
    assert!(rustc.is_file() && linker.is_file());
    check_tiny(&built);
}

#[test]
fn a_missing_dir_is_a_clear_error() {
    let dir = fixture("no-such-capsule");
    let err = build(&dir, &options(ToolchainChoice::Auto)).unwrap_err();
    assert!(matches!(err, BuildError::NoManifest { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("no-such-capsule") && msg.contains("no Cargo.toml"),
        "{msg}"
    );
}

#[test]
fn a_crate_that_is_not_a_cdylib_is_refused() {
    let err = build(&fixture("not-a-cdylib"), &options(ToolchainChoice::Auto)).unwrap_err();
    assert!(matches!(err, BuildError::NotACdylib { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains("`not-a-cdylib`) is not a cdylib"), "{msg}");
    assert!(msg.contains(r#"crate-type = ["cdylib"]"#), "{msg}");
}

#[test]
fn a_compile_error_quotes_cargo() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("src")).unwrap();
    std::fs::write(
        dir.path().join("Cargo.toml"),
        "[package]\nname = \"broken-capsule\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\
         [lib]\ncrate-type = [\"cdylib\"]\n[workspace]\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("src/lib.rs"),
        "#![no_std]\n#[unsafe(no_mangle)]\npub extern \"C\" fn ants_on_capsule() -> i32 { \"zero\" }\n\
         #[panic_handler]\nfn panic(_: &core::panic::PanicInfo<'_>) -> ! { loop {} }\n",
    )
    .unwrap();
    let err = build(dir.path(), &options(ToolchainChoice::Auto)).unwrap_err();
    eprintln!("{err}");
    let BuildError::Compile { stderr_tail, .. } = &err else {
        panic!("expected a compile error, got {err}");
    };
    assert!(stderr_tail.contains("mismatched types"), "{stderr_tail}");
    let msg = err.to_string();
    assert!(
        msg.contains("cargo") && msg.contains("wasm32-unknown-unknown"),
        "{msg}"
    );
}

#[test]
fn default_target_dir_is_beside_the_native_build() {
    // This crate is a workspace member: its capsules go to `<workspace target>/capsules`;
    // cargo's test scratch dir is `<workspace target>/tmp`.
    let workspace_target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap();
    assert_eq!(
        default_target_dir(Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap(),
        workspace_target.join("capsules")
    );
    // A standalone crate uses its own `target/` (unless CARGO_TARGET_DIR says otherwise).
    if std::env::var_os("CARGO_TARGET_DIR").is_none() {
        let tiny = fixture("tiny-capsule");
        assert_eq!(
            default_target_dir(&tiny).unwrap(),
            tiny.join("target").join("capsules")
        );
    }
}

/// Just enough of the wasm binary format to list imports and exports.
mod wasm {
    pub(crate) struct Module {
        pub(crate) imports: Vec<(String, String)>,
        pub(crate) exports: Vec<String>,
    }

    pub(crate) fn parse(bytes: &[u8]) -> Option<Module> {
        let mut r = Reader { bytes, pos: 8 };
        let mut module = Module {
            imports: Vec::new(),
            exports: Vec::new(),
        };
        while r.pos < bytes.len() {
            let id = r.byte()?;
            let len = r.leb()? as usize;
            let end = r.pos.checked_add(len)?;
            let mut s = Reader {
                bytes: bytes.get(..end)?,
                pos: r.pos,
            };
            match id {
                2 => {
                    for _ in 0..s.leb()? {
                        let module_name = s.name()?;
                        let field = s.name()?;
                        match s.byte()? {
                            0 => drop(s.leb()?),
                            1 => {
                                s.byte()?;
                                s.limits()?;
                            }
                            2 => s.limits()?,
                            3 => {
                                s.byte()?;
                                s.byte()?;
                            }
                            _ => return None,
                        }
                        module.imports.push((module_name, field));
                    }
                }
                7 => {
                    for _ in 0..s.leb()? {
                        module.exports.push(s.name()?);
                        s.byte()?;
                        s.leb()?;
                    }
                }
                _ => {}
            }
            r.pos = end;
        }
        Some(module)
    }

    struct Reader<'a> {
        bytes: &'a [u8],
        pos: usize,
    }

    impl Reader<'_> {
        fn byte(&mut self) -> Option<u8> {
            let b = *self.bytes.get(self.pos)?;
            self.pos += 1;
            Some(b)
        }

        fn leb(&mut self) -> Option<u64> {
            let mut value = 0u64;
            for shift in (0..64).step_by(7) {
                let b = self.byte()?;
                value |= u64::from(b & 0x7f) << shift;
                if b & 0x80 == 0 {
                    return Some(value);
                }
            }
            None
        }

        fn name(&mut self) -> Option<String> {
            let len = self.leb()? as usize;
            let end = self.pos.checked_add(len)?;
            let s = std::str::from_utf8(self.bytes.get(self.pos..end)?).ok()?;
            self.pos = end;
            Some(s.to_owned())
        }

        fn limits(&mut self) -> Option<()> {
            let flags = self.byte()?;
            self.leb()?;
            if flags & 1 != 0 {
                self.leb()?;
            }
            Some(())
        }
    }
}
