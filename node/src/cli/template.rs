//! `ants capsule new`: a capsule crate anywhere, from the files in `template/`.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};

const CARGO_TOML: &str = include_str!("template/Cargo.toml.tmpl");
const LIB_RS: &str = include_str!("template/lib.rs.tmpl");
const README: &str = include_str!("template/README.md.tmpl");

/// What [`create`] made.
#[derive(Debug)]
pub(crate) struct Created {
    /// The crate's name.
    pub(crate) name: String,
}

/// The SDK in the sources this binary was built from.
fn built_sdk() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../capsule-sdk")
}

/// A crate name from a directory name: letters, digits, `-` and `_`, starting with a letter.
fn crate_name(dir_name: &str) -> Option<String> {
    let name: String = dir_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect::<String>()
        .trim_matches('-')
        .to_ascii_lowercase();
    let first = name.chars().next()?;
    Some(if first.is_ascii_alphabetic() {
        name
    } else {
        format!("capsule-{name}")
    })
}

/// Write the crate into `path` (created; it must not exist or be empty).
pub(crate) fn create(
    path: &Path,
    name: Option<&str>,
    sdk: Option<&Path>,
) -> anyhow::Result<Created> {
    let name = match name {
        Some(n) => {
            if crate_name(n).as_deref() != Some(n) {
                bail!(
                    "--name {n:?}: a crate name has lowercase letters, digits, '-' and '_', \
                     and starts with a letter"
                );
            }
            n.to_owned()
        }
        None => path
            .file_name()
            .and_then(|s| s.to_str())
            .and_then(crate_name)
            .with_context(|| {
                format!(
                    "cannot make a crate name from {}; pass --name",
                    path.display()
                )
            })?,
    };
    let sdk = sdk.map_or_else(built_sdk, Path::to_path_buf);
    let sdk = sdk.canonicalize().map_err(|e| {
        anyhow::anyhow!(
            "the capsule SDK is not at {} ({e}); pass --sdk with the capsule-sdk directory of \
             the ants-rs sources",
            sdk.display()
        )
    })?;
    if !sdk.join("Cargo.toml").is_file() {
        bail!("{} has no Cargo.toml: not the capsule SDK", sdk.display());
    }
    if path.exists() {
        let empty = path.is_dir()
            && std::fs::read_dir(path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .next()
                .is_none();
        if !empty {
            bail!("{} exists and is not an empty directory", path.display());
        }
    }
    let sdk_text = sdk
        .to_str()
        .with_context(|| format!("the SDK path {} is not UTF-8", sdk.display()))?;
    // A TOML basic string's contents: escape what would end or break it.
    let sdk_toml = sdk_text.replace('\\', "\\\\").replace('"', "\\\"");
    let fill = |t: &str| {
        t.replace("{{name}}", &name)
            .replace("{{crate}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk_toml)
    };
    std::fs::create_dir_all(path.join("src"))
        .with_context(|| format!("cannot create {}", path.display()))?;
    for (file, text) in [
        ("Cargo.toml", fill(CARGO_TOML)),
        ("src/lib.rs", fill(LIB_RS)),
        ("README.md", fill(README)),
        (".gitignore", "/target\n".to_owned()),
    ] {
        let p = path.join(file);
        std::fs::write(&p, text).with_context(|| format!("cannot write {}", p.display()))?;
    }
    Ok(Created { name })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_come_from_directories() {
        assert_eq!(crate_name("hops").as_deref(), Some("hops"));
        assert_eq!(crate_name("My Capsule").as_deref(), Some("my-capsule"));
        assert_eq!(crate_name("2fast").as_deref(), Some("capsule-2fast"));
        assert_eq!(crate_name("--").as_deref(), None);
    }

    #[test]
    fn a_non_empty_directory_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("keep"), "x").unwrap();
        let e = create(dir.path(), Some("x"), None).unwrap_err().to_string();
        assert!(e.contains("not an empty directory"), "{e}");
        assert!(!dir.path().join("Cargo.toml").exists());
        let e = create(&dir.path().join("a"), Some("Bad Name"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("--name"), "{e}");
        let e = create(&dir.path().join("b"), None, Some(dir.path()))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not the capsule SDK"), "{e}");
    }
}
