//! `ants top`: a running node's rates, refreshed in place (ratatui), or as plain text frames
//! when stdout is not a terminal (`--plain`).

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Args;
use ratatui::crossterm::event::{self, Event, KeyCode, KeyEventKind, KeyModifiers};
use ratatui::widgets::{Block, Paragraph};
use serde_json::Value;

use super::status::{NodeSocket, quantiles, u};

/// `ants top`.
#[derive(Debug, Args)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    node: NodeSocket,
    /// Seconds between refreshes.
    #[arg(long, default_value_t = 1.0)]
    interval: f64,
    /// Stop after this many refreshes.
    #[arg(long)]
    iterations: Option<u64>,
    /// Print each refresh as plain text instead of drawing in place (the default when stdout
    /// is not a terminal).
    #[arg(long)]
    plain: bool,
}

/// The rate of `key` (a counter path) between two snapshots.
fn rate(prev: &Value, cur: &Value, path: &[&str], dt: f64) -> f64 {
    fn get<'a>(v: &'a Value, path: &[&str]) -> &'a Value {
        path.iter().fold(v, |v, k| &v[*k])
    }
    u(get(cur, path)).saturating_sub(u(get(prev, path))) as f64 / dt.max(1e-9)
}

/// One frame: the node's rates between `prev` and `cur`, taken `dt` seconds apart.
pub(crate) fn render_top(prev: &Value, cur: &Value, dt: f64) -> Vec<String> {
    let drops = |v: &Value| -> u64 {
        v["node"]["drops"]
            .as_object()
            .map_or(0, |m| m.values().map(u).sum())
    };
    let mut lines = vec![
        format!(
            "node {}, up {:.0} s, {} workers",
            cur["address"].as_str().unwrap_or("?"),
            cur["uptime_s"].as_f64().unwrap_or(0.0),
            cur["workers"].as_array().map_or(1, Vec::len)
        ),
        format!(
            "per second: in {:.0}  runs {:.0}  sent {:.0}  delivered {:.0}  drops {:.0}  code messages {:.0}",
            rate(prev, cur, &["node", "datagrams_in"], dt),
            rate(prev, cur, &["node", "runs"], dt),
            rate(prev, cur, &["node", "sent"], dt),
            rate(prev, cur, &["node", "delivered"], dt),
            drops(cur).saturating_sub(drops(prev)) as f64 / dt.max(1e-9),
            rate(prev, cur, &["node", "code_messages_in"], dt),
        ),
        String::new(),
        format!(
            "{:<18} {:>10} {:>10} {:>10} {:>8} {:>12} {:>13}",
            "PROTOCOL", "RUNS/s", "SENT/s", "DELIV/s", "TRAPS/s", "FUEL/s", "FUEL p50/p99"
        ),
    ];
    let mut rows: Vec<(f64, String)> = cur["protocols"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(ty, c)| {
            let p = &prev["protocols"][ty.as_str()];
            let r = |k: &str| u(&c[k]).saturating_sub(u(&p[k])) as f64 / dt.max(1e-9);
            let short: String = ty.chars().take(16).collect();
            let runs = r("runs");
            let line = format!(
                "{:<18} {:>10.0} {:>10.0} {:>10.0} {:>8.0} {:>12.0} {:>13}",
                format!("{short}…"),
                runs,
                r("sent"),
                r("delivered"),
                r("traps"),
                r("fuel"),
                quantiles(&c["fuel_hist"], |v| v.to_string())
            );
            (runs, line)
        })
        .collect();
    rows.sort_by(|a, b| b.0.total_cmp(&a.0));
    lines.extend(rows.into_iter().map(|(_, l)| l));
    let workers: Vec<String> = cur["workers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|w| {
            let i = u(&w["index"]);
            let before = prev["workers"]
                .as_array()
                .and_then(|a| a.iter().find(|p| u(&p["index"]) == i))
                .map_or(0, |p| u(&p["runs"]));
            format!(
                "#{i} {:.0}",
                u(&w["runs"]).saturating_sub(before) as f64 / dt.max(1e-9)
            )
        })
        .collect();
    if !workers.is_empty() {
        lines.push(String::new());
        lines.push(format!("runs/s by worker: {}", workers.join("  ")));
    }
    for nb in cur["neighbours"].as_array().into_iter().flatten() {
        let address = nb["address"].as_str().unwrap_or("?");
        let heard = nb["last_heard_s"].as_f64().map_or_else(
            || "never heard".to_owned(),
            |t| format!("heard {t:.1} s ago"),
        );
        let before = prev["neighbours"]
            .as_array()
            .and_then(|a| a.iter().find(|p| p["address"].as_str() == Some(address)))
            .map_or(0, |p| u(&p["datagrams"]));
        let per_s = u(&nb["datagrams"]).saturating_sub(before) as f64 / dt.max(1e-9);
        lines.push(format!(
            "neighbour {address} {per_s:.0} datagrams/s, {heard}"
        ));
    }
    lines
}

impl TopArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let interval = Duration::from_secs_f64(self.interval.clamp(0.05, 3600.0));
        let plain = self.plain || !std::io::stdout().is_terminal();
        let mut prev = self.node.query()?;
        let mut at = Instant::now();
        if plain {
            for i in 0.. {
                if self.iterations.is_some_and(|n| i >= n) {
                    break;
                }
                std::thread::sleep(interval);
                let cur = self.node.query()?;
                let dt = at.elapsed().as_secs_f64();
                at = Instant::now();
                println!("{}\n", render_top(&prev, &cur, dt).join("\n"));
                prev = cur;
            }
            return Ok(ExitCode::SUCCESS);
        }
        let mut terminal = ratatui::init();
        let result = (|| -> anyhow::Result<()> {
            let mut frame: Vec<String> = vec!["waiting for the first interval…".into()];
            let mut done = 0u64;
            loop {
                terminal.draw(|f| {
                    let text = frame.join("\n");
                    let block = Block::bordered().title(" ants top — q quits ");
                    f.render_widget(Paragraph::new(text).block(block), f.area());
                })?;
                if self.iterations.is_some_and(|n| done >= n) {
                    return Ok(());
                }
                let deadline = at + interval;
                while let Some(left) = deadline.checked_duration_since(Instant::now()) {
                    if event::poll(left)?
                        && let Event::Key(k) = event::read()?
                        && k.kind == KeyEventKind::Press
                        && (matches!(k.code, KeyCode::Char('q') | KeyCode::Esc)
                            || (k.code == KeyCode::Char('c')
                                && k.modifiers.contains(KeyModifiers::CONTROL)))
                    {
                        return Ok(());
                    }
                }
                let cur = self.node.query()?;
                let dt = at.elapsed().as_secs_f64();
                at = Instant::now();
                frame = render_top(&prev, &cur, dt);
                prev = cur;
                done += 1;
            }
        })();
        ratatui::restore();
        result.map(|()| ExitCode::SUCCESS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn rates_are_per_second_and_protocols_sorted_by_runs() {
        let a = "aa".repeat(32);
        let b = "bb".repeat(32);
        let prev = json!({
            "node": {"runs": 100, "datagrams_in": 50, "drops": {"no-route": 1}},
            "protocols": {a.clone(): {"runs": 100}, b.clone(): {"runs": 0}},
            "workers": [{"index": 0, "runs": 100}, {"index": 1, "runs": 0}],
        });
        let cur = json!({
            "address": "198.18.0.2", "uptime_s": 61.0,
            "node": {"runs": 400, "datagrams_in": 250, "drops": {"no-route": 5}},
            "protocols": {a.clone(): {"runs": 150, "fuel": 1000}, b.clone(): {"runs": 250, "traps": 2}},
            "workers": [{"index": 0, "runs": 150}, {"index": 1, "runs": 250}],
            "neighbours": [{"address": "198.18.0.1", "last_heard_s": 0.5, "datagrams": 90}],
        });
        let lines = render_top(&prev, &cur, 2.0);
        assert_eq!(lines[0], "node 198.18.0.2, up 61 s, 2 workers");
        assert!(
            lines[1].starts_with("per second: in 100  runs 150  sent 0  delivered 0  drops 2"),
            "{lines:?}"
        );
        assert!(
            lines[4].starts_with("bbbbbbbbbbbbbbbb…"),
            "most runs first: {lines:?}"
        );
        assert!(lines[4].contains("       125 "), "{lines:?}");
        assert!(lines[5].starts_with("aaaaaaaaaaaaaaaa…"), "{lines:?}");
        assert!(
            lines.contains(&"runs/s by worker: #0 25  #1 125".to_string()),
            "{lines:?}"
        );
        assert_eq!(
            lines.last().unwrap(),
            "neighbour 198.18.0.1 45 datagrams/s, heard 0.5 s ago"
        );
    }
}
