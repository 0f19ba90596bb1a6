//! Write `seeds/loader/<name>` for every scenario of `ants_core_fuzz::seeds`:
//! `cargo run --example write_seeds` from `node/core/fuzz` (stable Rust is fine).

use std::path::Path;

fn main() -> std::io::Result<()> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("seeds/loader");
    std::fs::create_dir_all(&dir)?;
    for (name, preset, ops) in ants_core_fuzz::seeds::scenarios() {
        let bytes = ants_core_fuzz::encode(&preset, &ops);
        std::fs::write(dir.join(name), &bytes)?;
        println!("{name}: {} ops, {} bytes", ops.len(), bytes.len());
    }
    Ok(())
}
