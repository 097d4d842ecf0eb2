//! Runs the Omnium simulator until killed: `omnium-sim [--port N] [--client-id X] [--client-secret Y] [--latency-ms N]
//! [--no-dedup] [--plain-duplicate-refusal] [--stale-reads-ms N] [--write-outage] [--date-skew-ms N]
//! [--catalog N] [--seed S]` (`--no-dedup` to `--date-skew-ms`: the adversarial modes of issue 8, see
//! `SimModes`; `--catalog N` serves N generated products, with variants, prices, categories and
//! stock, from seed S, default 1, loaded before it says it listens).

use std::io::Write;
use std::process::ExitCode;

use flow_omnium::sim::{CatalogSpec, SimConfig, Simulator};

/// What the command line asks for.
struct Args {
    port: u16,
    cfg: SimConfig,
    /// Products to generate and serve (none: stores only).
    catalog: Option<CatalogSpec>,
}

const USAGE: &str =
    "usage: omnium-sim [--port N] [--client-id X] [--client-secret Y] [--latency-ms N] \
     [--no-dedup] [--plain-duplicate-refusal] [--stale-reads-ms N] [--write-outage] [--date-skew-ms N] \
     [--catalog N] [--seed S]";

/// Parsed command line: port, simulator config and catalog.
fn parse_args(args: &[String]) -> Result<Args, String> {
    let mut port = 0u16;
    let mut cfg = SimConfig::default();
    let mut products: Option<usize> = None;
    let mut seed = 1u64;
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
            "--catalog" => {
                let v = value()?;
                products = Some(v.parse().map_err(|_| format!("bad product count '{v}'"))?);
            }
            "--seed" => {
                let v = value()?;
                seed = v.parse().map_err(|_| format!("bad seed '{v}'"))?;
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
    }
    let catalog = products.map(|products| CatalogSpec {
        products,
        seed,
        ..CatalogSpec::default()
    });
    Ok(Args { port, cfg, catalog })
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let Args { port, cfg, catalog } = match parse_args(&args) {
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
    if let Some(spec) = catalog {
        // Loaded before the line parents wait for, so a client sees the whole catalog.
        // The first line on stdout stays the one parents parse; this goes to stderr.
        let s = sim.load_catalog(&spec);
        eprintln!(
            "omnium-sim catalog: {} products, {} SKUs, {} categories, {} stock items",
            s.products, s.skus, s.categories, s.stock_items
        );
    }
    let _ = writeln!(out, "omnium-sim listening on {}", sim.base_url());
    // Parents wait for this line through a pipe, so it must not sit in a buffer.
    let _ = out.flush();
    loop {
        std::thread::park();
    }
}
