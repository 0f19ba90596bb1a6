//! `ants replay`: see [`ants_node::replay`].

use std::path::PathBuf;
use std::process::ExitCode;

use ants_node::replay::{Link, Outcome, WorkerReplay, links, replay_all};
use ants_sim::Watch;
use clap::Args;

pub(crate) const LONG_HELP: &str = "\
Replay what `ants run --record DIR` (or `[record] dir`) recorded, through a fresh node core
with the recorded configuration and modules, and check that it makes the same outputs.

A recording holds every input of a node's core, one file per worker
(DIR/<address>/worker-<i>.rec): the datagrams it received and from whom, timer firings,
compile completions and how long they took, app registrations and injected capsules, and
when the driver took the node's outputs. The node core is deterministic given these, so the
replay must send the same datagrams and make the same deliveries; the recording carries
hashes of both (every 256 inputs and at the end) and the node's final counters, and the
replay compares them.

PATH is one worker's file, a node's directory, or a directory holding several nodes'
directories (as when several nodes record into one DIR): every recording found is replayed,
and then the recordings are joined into one network: for every pair of recorded nodes, the
datagrams one sent to the other's endpoint are matched (by content) against those the other
received from it — sent, received, lost, and any received that were never sent.

--watch checks a property after every input, as a scenario's [[watch]] does in `ants sim`
(no-duplicate-delivery, max-held=N, max-store-bytes=N): a replay is the place to ask it of
a live run.

Exit status: 0 when every replay is identical, or matched as far as its recording goes (a
node that died leaves a file cut short; the replay says where it ends); 1 when one diverged
or violated a watch (the input, its node time and what was seen are printed); 2 when a
recording cannot be read (the file and byte offset are named), was made by another version
of ants, or needs a module that is missing.";

/// `ants replay`.
#[derive(Debug, Args)]
pub(crate) struct ReplayArgs {
    /// A recording: a worker-*.rec file, a node's directory, or a directory of nodes'.
    path: PathBuf,
    /// Print the result as JSON: `workers` (one object per worker) and `links`.
    #[arg(long)]
    json: bool,
    /// Check a property after every input, as a scenario's `[[watch]]` does:
    /// `no-duplicate-delivery` (no app receives the same payload twice), `max-held=N` (no
    /// more than N capsules held waiting for their code) or `max-store-bytes=N` (no more than
    /// N bytes in the soft-store). The first violation stops that worker's replay and is
    /// printed; exit status 1. Repeatable.
    #[arg(long, value_name = "PROPERTY", value_parser = parse_watch)]
    watch: Vec<Watch>,
}

/// A `--watch` property.
fn parse_watch(s: &str) -> Result<Watch, String> {
    s.parse()
}

impl ReplayArgs {
    pub(crate) fn run(self) -> anyhow::Result<ExitCode> {
        let replays = match replay_all(&self.path, &self.watch) {
            Ok(r) => r,
            Err(e) => {
                eprintln!("error: {e}");
                return Ok(ExitCode::from(2));
            }
        };
        let diverged = replays.iter().any(|r| {
            matches!(
                r.outcome,
                Outcome::Diverged { .. } | Outcome::Violated { .. }
            )
        });
        let links = links(&replays);
        if self.json {
            let workers: Vec<serde_json::Value> = replays.iter().map(json).collect();
            let links: Vec<serde_json::Value> = links
                .iter()
                .map(|l| {
                    serde_json::json!({
                        "from": l.from,
                        "to": l.to,
                        "sent": l.sent,
                        "received": l.received,
                        "unexpected": l.unexpected,
                    })
                })
                .collect();
            println!(
                "{}",
                serde_json::json!({"workers": workers, "links": links})
            );
        } else {
            for r in &replays {
                println!("{}", line(r));
            }
            if !links.is_empty() {
                println!("between the recorded nodes (datagrams matched by content):");
                for l in &links {
                    println!("  {}", link_line(l));
                }
            }
        }
        Ok(if diverged {
            ExitCode::FAILURE
        } else {
            ExitCode::SUCCESS
        })
    }
}

fn line(r: &WorkerReplay) -> String {
    let head = format!(
        "{} worker {}/{}: {} inputs over {:.3} s, {} sent, {} delivered, {} checkpoints",
        r.address,
        r.worker,
        r.workers,
        r.inputs,
        r.until.saturating_sub(r.from).as_secs_f64(),
        r.sent,
        r.delivered,
        r.checkpoints
    );
    match &r.outcome {
        Outcome::Identical => format!("{head}: identical (outputs and counters)"),
        Outcome::Partial(why) => format!("{head}: identical as far as recorded — {why}"),
        Outcome::Diverged { input, at, what } => format!(
            "{head}: DIVERGED at input {input} ({:.6} s into the recording): {what}\n  file: {}",
            at.saturating_sub(r.from).as_secs_f64(),
            r.file.display()
        ),
        Outcome::Violated {
            input,
            at,
            watch,
            what,
        } => format!(
            "{head}: watch violated: {watch} at input {input} ({:.6} s into the recording): \
             {what}\n  file: {}",
            at.saturating_sub(r.from).as_secs_f64(),
            r.file.display()
        ),
    }
}

fn link_line(l: &Link) -> String {
    let mut s = format!(
        "{} -> {}: {} sent, {} received, {} lost",
        l.from,
        l.to,
        l.sent,
        l.received,
        l.sent - l.received
    );
    if l.unexpected > 0 {
        s += &format!(", {} received that it never sent", l.unexpected);
    }
    s
}

fn json(r: &WorkerReplay) -> serde_json::Value {
    let (outcome, detail) = match &r.outcome {
        Outcome::Identical => ("identical", serde_json::Value::Null),
        Outcome::Partial(why) => ("partial", serde_json::json!({ "why": why })),
        Outcome::Violated {
            input,
            at,
            watch,
            what,
        } => (
            "violated",
            serde_json::json!({
                "input": input,
                "at_s": at.saturating_sub(r.from).as_secs_f64(),
                "watch": watch,
                "what": what,
            }),
        ),
        Outcome::Diverged { input, at, what } => (
            "diverged",
            serde_json::json!({
                "input": input,
                "at_s": at.saturating_sub(r.from).as_secs_f64(),
                "what": what,
            }),
        ),
    };
    serde_json::json!({
        "file": r.file.display().to_string(),
        "address": r.address,
        "worker": r.worker,
        "workers": r.workers,
        "inputs": r.inputs,
        "sent": r.sent,
        "delivered": r.delivered,
        "checkpoints": r.checkpoints,
        "seconds": r.until.saturating_sub(r.from).as_secs_f64(),
        "outcome": outcome,
        "detail": detail,
    })
}
