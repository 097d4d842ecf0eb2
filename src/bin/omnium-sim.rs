//! Runs the Omnium simulator until killed: `omnium-sim [--port N] [--client-id X] [--client-secret Y] [--latency-ms N]
//! [--no-dedup] [--plain-duplicate-refusal] [--stale-reads-ms N] [--write-outage] [--date-skew-ms N]` (the last five: the adversarial
//! modes of issue 8, see `SimModes`).

use std::io::Write;
use std::process::ExitCode;

use flow_omnium::sim::{SimConfig, Simulator};

const USAGE: &str =
    "usage: omnium-sim [--port N] [--client-id X] [--client-secret Y] [--latency-ms N] \
     [--no-dedup] [--plain-duplicate-refusal] [--stale-reads-ms N] [--write-outage] [--date-skew-ms N]";

/// Parsed command line: port plus simulator config.
fn parse_args(args: &[String]) -> Result<(u16, SimConfig), String> {
    let mut port = 0u16;
    let mut cfg = SimConfig::default();
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .cloned()
                .ok_or_else(|| format!("{flag} needs a value"))
        };
        match flag.as_str() {
            "--port" => {
                let v = value()?;
                port = v.parse().map_err(|_| format!("bad port '{v}'"))?;
            }
            "--client-id" => cfg.client_id = value()?,
            "--client-secret" => cfg.client_secret = value()?,
            "--latency-ms" => {
                let v = value()?;
                cfg.latency_ms = v.parse().map_err(|_| format!("bad latency '{v}'"))?;
            }
            "--no-dedup" => {
                cfg.modes.dedup_orders = false;
                cfg.modes.dedup_returns = false;
            }
            "--stale-reads-ms" => {
                let v = value()?;
                cfg.modes.stale_reads_ms =
                    v.parse().map_err(|_| format!("bad stale reads '{v}'"))?;
            }
            "--write-outage" => cfg.modes.write_outage = true,
            "--plain-duplicate-refusal" => cfg.modes.plain_duplicate_refusal = true,
            "--date-skew-ms" => {
                let v = value()?;
                cfg.modes.date_skew_ms = Some(v.parse().map_err(|_| format!("bad skew '{v}'"))?);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    Ok((port, cfg))
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let (port, cfg) = match parse_args(&args) {
        Ok(p) => p,
        Err(msg) => {
            eprintln!("omnium-sim: {msg}\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    let sim = match Simulator::start_on(port, cfg) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("omnium-sim: cannot listen on port {port}: {e}");
            return ExitCode::FAILURE;
        }
    };
    let mut out = std::io::stdout();
    let _ = writeln!(out, "omnium-sim listening on {}", sim.base_url());
    // Parents wait for this line through a pipe, so it must not sit in a buffer.
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
