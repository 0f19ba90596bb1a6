//! A topology directory: one node config (`ants run --config`) per `.toml` file, e.g.
//! `examples/line5/`. Each file gives a node's address, its app socket (where `ants map`
//! asks for its counters) and its configured neighbours (the links drawn even while a node
//! does not answer).

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError};

/// A node `ants map` draws: where to ask it (its app socket) and what its config says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NodeSource {
    /// Its app socket; `None`: it is drawn from its config alone (never polled).
    pub socket: Option<PathBuf>,
    /// Its active address, when known before it answers (from its config).
    pub address: Option<String>,
    /// The neighbours its config lists, when known before it answers.
    pub neighbours: Option<Vec<String>>,
    /// The config file it came from.
    pub file: Option<PathBuf>,
}

impl NodeSource {
    /// A node known only by its app socket (`ants map -s SOCKET`).
    pub fn socket(path: impl Into<PathBuf>) -> NodeSource {
        NodeSource {
            socket: Some(path.into()),
            ..NodeSource::default()
        }
    }

    /// A node from its validated config, read from `file`.
    pub fn from_config(config: &Config, file: &Path) -> NodeSource {
        NodeSource {
            socket: config.node.app_socket.clone(),
            address: Some(config.node.address.to_string()),
            neighbours: Some(
                config
                    .neighbours
                    .iter()
                    .map(|n| n.address.to_string())
                    .collect(),
            ),
            file: Some(file.to_owned()),
        }
    }

    /// How the node is named before it answers: its address, else its socket's path.
    pub fn label(&self) -> String {
        match (&self.address, &self.socket) {
            (Some(a), _) => a.clone(),
            (None, Some(s)) => s.display().to_string(),
            (None, None) => "?".to_owned(),
        }
    }
}

/// Why a topology directory cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum DirError {
    /// The directory cannot be listed.
    #[error("cannot read the topology directory {}: {error}", dir.display())]
    Read {
        /// The directory.
        dir: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// No `.toml` file in it.
    #[error(
        "the topology directory {} has no .toml node configs (expected one `ants run --config` \
         file per node, like examples/line5/)",
        dir.display()
    )]
    Empty {
        /// The directory.
        dir: PathBuf,
    },
    /// A config that does not parse or validate (the message names the file and line).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Two files give the same node address.
    #[error("{} and {} both configure node {address}", first.display(), second.display())]
    Duplicate {
        /// The address.
        address: String,
        /// The first file with it.
        first: PathBuf,
        /// The second.
        second: PathBuf,
    },
}

/// The nodes configured in `dir`: every `*.toml` file in it (not its subdirectories), in
/// file-name order.
pub fn read_topology_dir(dir: &Path) -> Result<Vec<NodeSource>, DirError> {
    let read = |error| DirError::Read {
        dir: dir.to_owned(),
        error,
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(read)? {
        let path = entry.map_err(read)?.path();
        if path.extension().is_some_and(|e| e == "toml") && path.is_file() {
            files.push(path);
        }
    }
    if files.is_empty() {
        return Err(DirError::Empty {
            dir: dir.to_owned(),
        });
    }
    files.sort();
    let mut nodes: Vec<NodeSource> = Vec::with_capacity(files.len());
    for file in files {
        let config = Config::load(&file)?;
        let node = NodeSource::from_config(&config, &file);
        if let Some(first) = nodes.iter().find(|n| n.address == node.address) {
            return Err(DirError::Duplicate {
                address: node.label(),
                first: first.file.clone().unwrap_or_default(),
                second: file,
            });
        }
        nodes.push(node);
    }
    Ok(nodes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, text: &str) {
        std::fs::write(dir.join(name), text).unwrap();
    }

    const N1: &str = "[node]\naddress = \"198.18.0.1\"\nlisten = \"127.0.0.1:7101\"\n\
                      app_socket = \"n1.sock\"\n[[neighbour]]\naddress = \"198.18.0.2\"\n\
                      endpoint = \"127.0.0.1:7102\"\n";
    const N2: &str = "[node]\naddress = \"198.18.0.2\"\nlisten = \"127.0.0.1:7102\"\n\
                      [[neighbour]]\naddress = \"198.18.0.1\"\nendpoint = \"127.0.0.1:7101\"\n";

    #[test]
    fn every_toml_file_is_a_node_with_its_socket_and_neighbours() {
        let d = tempfile::tempdir().unwrap();
        write(d.path(), "b.toml", N2);
        write(d.path(), "a.toml", N1);
        write(d.path(), "notes.txt", "not a config");
        std::fs::create_dir(d.path().join("sub.toml")).unwrap();
        let nodes = read_topology_dir(d.path()).unwrap();
        assert_eq!(nodes.len(), 2);
        assert_eq!(
            nodes[0].address.as_deref(),
            Some("198.18.0.1"),
            "file order"
        );
        assert_eq!(
            nodes[0].socket.as_deref(),
            Some(d.path().join("n1.sock").as_path()),
            "relative to the file"
        );
        assert_eq!(nodes[0].neighbours, Some(vec!["198.18.0.2".to_owned()]));
        assert_eq!(nodes[1].socket, None, "no app socket: drawn, not polled");
        assert_eq!(
            nodes[1].file.as_deref(),
            Some(d.path().join("b.toml").as_path())
        );
    }

    #[test]
    fn the_shipped_line_is_a_topology_directory() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/line5");
        let nodes = read_topology_dir(&dir).unwrap();
        let addresses: Vec<String> = nodes.iter().map(NodeSource::label).collect();
        assert_eq!(
            addresses,
            [
                "198.18.0.1",
                "198.18.0.2",
                "198.18.0.3",
                "198.18.0.4",
                "198.18.0.5"
            ]
        );
        assert_eq!(nodes[2].neighbours.as_ref().map(Vec::len), Some(2));
        assert_eq!(
            nodes[4].socket.as_deref(),
            Some(Path::new("/tmp/ants-demo/n5.sock"))
        );
    }

    #[test]
    fn errors_name_the_directory_or_the_file() {
        let d = tempfile::tempdir().unwrap();
        let missing = d.path().join("nope");
        let e = read_topology_dir(&missing).unwrap_err().to_string();
        assert!(
            e.contains("cannot read the topology directory") && e.contains("nope"),
            "{e}"
        );

        let e = read_topology_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("has no .toml node configs"), "{e}");

        write(d.path(), "a.toml", N1);
        write(
            d.path(),
            "broken.toml",
            "[node]\naddress = \"not an address\"\n",
        );
        let e = read_topology_dir(d.path()).unwrap_err().to_string();
        assert!(e.contains("broken.toml line 2"), "{e}");

        std::fs::remove_file(d.path().join("broken.toml")).unwrap();
        write(d.path(), "copy.toml", N1);
        let e = read_topology_dir(d.path()).unwrap_err().to_string();
        assert!(
            e.contains("a.toml and") && e.contains("copy.toml both configure node 198.18.0.1"),
            "{e}"
        );
    }
}
