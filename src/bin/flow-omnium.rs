//! `flow-omnium`: the operator CLI for store support. Reads a terminal's database beside the
//! running POS, retries dead jobs, forgets customers, checks the set-up (`doctor`) and packs a
//! diagnostics archive. Built only with the `cli` feature (clap, comfy-table, indicatif, tar
//! and flate2 stay out of the library's dependency tree). See docs/operator-cli.md.

use clap::{Args, Parser, Subcommand};
use comfy_table::{presets::UTF8_BORDERS_ONLY, ContentArrangement, Table};
use flow_omnium::admin::{self, Admin, JobRow};
use flow_omnium::{Config, Error};
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::{json, Value};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

#[derive(Parser)]
#[command(
    name = "flow-omnium",
    version,
    about = "Look into and repair a flow-omnium terminal database, also while the POS runs"
)]
struct Cli {
    /// The terminal's database file.
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "config")]
    database: Option<PathBuf>,
    /// The POS's config JSON (database_path and Omnium credentials are read from it).
    #[arg(long, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Machine-readable JSON instead of tables.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Outbox counts, oldest pending job, last push and pull, whether a POS holds the database.
    Status,
    /// The outbox: list, show, retry.
    #[command(subcommand)]
    Outbox(OutboxCmd),
    /// The catalog the till reads offline.
    #[command(subcommand)]
    Catalog(CatalogCmd),
    /// Stock of a SKU: Omnium's last level and what it has not counted yet.
    Stock {
        sku: String,
        /// Only these warehouses (default: every warehouse known for the SKU).
        #[arg(long = "warehouse")]
        warehouses: Vec<String>,
    },
    /// What happens in the database: jobs recorded, delivered, dead, retried; pulls; orders.
    Events(EventsArgs),
    /// Checks the set-up: config, database, disk, Omnium, token, roles, clock, pending age.
    Doctor {
        /// Full integrity check (reads every page) instead of the quick one.
        #[arg(long)]
        full: bool,
    },
    /// Writes a .tar.gz for support: status, dead jobs, recent outbox, doctor, config without
    /// secrets, log tails. No payloads, no personal data.
    ExportDiagnostics {
        file: PathBuf,
        /// A log file of the POS to include (its last 5,000 lines, secrets masked).
        #[arg(long = "log", value_name = "FILE")]
        logs: Vec<PathBuf>,
    },
    /// Erases what this terminal holds about a customer (as fo_forget_customer).
    ForgetCustomer { customer_id: String },
}

#[derive(Subcommand)]
enum OutboxCmd {
    /// Jobs, newest first.
    List {
        #[arg(long, value_parser = ["pending", "in_flight", "delivered", "dead"])]
        state: Option<String>,
        /// sale, return, cancellation, receipt, customer, goods_reception, stock_count, pickup
        #[arg(long)]
        kind: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// One job: payload (secrets masked), attempts, last error, timeline.
    Show { id: i64 },
    /// Gives a dead job (or every dead job) a new set of attempts.
    Retry {
        #[arg(required_unless_present = "all_dead", conflicts_with = "all_dead")]
        id: Option<i64>,
        #[arg(long)]
        all_dead: bool,
    },
}

#[derive(Subcommand)]
enum CatalogCmd {
    /// Counts and pull times per data set.
    Stats,
}

#[derive(Args)]
struct EventsArgs {
    /// Keep watching (poll the database) until interrupted.
    #[arg(long)]
    follow: bool,
    /// With --follow: stop after this many events.
    #[arg(long)]
    count: Option<usize>,
    /// With --follow: how often to look, in milliseconds.
    #[arg(long, default_value_t = 500)]
    interval_ms: u64,
    /// Without --follow: how many of the latest outbox changes to show.
    #[arg(long, default_value_t = 50)]
    limit: usize,
}

/// What the command needs to run: the database path and, with --config, the config.
struct Target {
    database: PathBuf,
    config: Option<(Config, String)>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(&cli) {
        Ok(code) => code,
        Err(e) => {
            let msg = mask(&e.to_string());
            if cli.json {
                println!("{}", json!({"error": msg, "code": e.code().name()}));
            } else {
                eprintln!("flow-omnium: {msg}");
            }
            ExitCode::FAILURE
        }
    }
}

/// The client secret and the token this process saw: masked in everything it prints,
/// whatever their length.
static SECRETS: std::sync::Mutex<Vec<flow_omnium::redact::Secret>> =
    std::sync::Mutex::new(Vec::new());
static SCOPE: std::sync::OnceLock<flow_omnium::redact::Scope> = std::sync::OnceLock::new();

fn keep_secret(secret: &flow_omnium::redact::Secret) {
    // Registered in a scope too, so the library's own messages mask it.
    SCOPE
        .get_or_init(flow_omnium::redact::Scope::new)
        .add(secret, None, 0);
    SECRETS
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(secret.clone());
}

fn mask(message: &str) -> String {
    let secrets = SECRETS.lock().unwrap_or_else(|p| p.into_inner());
    let refs: Vec<&flow_omnium::redact::Secret> = secrets.iter().collect();
    flow_omnium::redact::redact_with(message, &refs)
}

fn target(cli: &Cli) -> Result<Target, Error> {
    if let Some(file) = &cli.config {
        let text = std::fs::read_to_string(file)
            .map_err(|e| Error::Config(format!("cannot read {}: {e}", file.display())))?;
        let config = Config::from_json(&text)?;
        keep_secret(&config.omnium.client_secret);
        return Ok(Target {
            database: config.database_path.clone(),
            config: Some((config, text)),
        });
    }
    match &cli.database {
        Some(db) => Ok(Target {
            database: db.clone(),
            config: None,
        }),
        None => Err(Error::Config(
            "name the database with --database PATH or --config FILE".into(),
        )),
    }
}

fn run(cli: &Cli) -> Result<ExitCode, Error> {
    let t = target(cli)?;
    let writes = matches!(
        cli.command,
        Command::Outbox(OutboxCmd::Retry { .. }) | Command::ForgetCustomer { .. }
    );
    // Doctor reports a missing or broken database as a finding, not an error.
    if let Command::Doctor { full } = cli.command {
        let report = doctor(&t, full);
        return Ok(print_doctor(cli.json, &report));
    }
    let admin = Admin::open(&t.database, writes)?;
    match &cli.command {
        Command::Status => {
            let s = admin.status()?;
            if cli.json {
                print_json(&s);
            } else {
                print_status(&s);
            }
        }
        Command::Outbox(OutboxCmd::List { state, kind, limit }) => {
            let jobs = admin.jobs(state.as_deref(), kind.as_deref(), *limit)?;
            if cli.json {
                print_json(&json!({"items": jobs.iter().map(JobRow::to_json).collect::<Vec<_>>()}));
            } else {
                print_jobs(&jobs);
            }
        }
        Command::Outbox(OutboxCmd::Show { id }) => {
            let job = admin.job_detail(*id)?;
            if cli.json {
                print_json(&job);
            } else {
                print_job(&job);
            }
        }
        Command::Outbox(OutboxCmd::Retry { id, all_dead }) => {
            let n = admin.retry(if *all_dead { None } else { *id })?;
            if cli.json {
                print_json(&json!({"retried": n}));
            } else {
                println!(
                    "{n} dead job(s) queued again; the POS's worker sends them at its next wake \
                     (at most sync.pull_interval_ms away)"
                );
            }
        }
        Command::Catalog(CatalogCmd::Stats) => {
            let s = admin.catalog_stats()?;
            if cli.json {
                print_json(&s);
            } else {
                print_catalog(&s);
            }
        }
        Command::Stock { sku, warehouses } => {
            let s = admin.stock(sku, warehouses)?;
            if cli.json {
                print_json(&s);
            } else {
                print_stock(&s);
            }
        }
        Command::Events(args) => events(&admin, cli.json, args)?,
        Command::ExportDiagnostics { file, logs } => {
            export_diagnostics(&admin, &t, file, logs)?;
            if cli.json {
                print_json(&json!({"written": file.display().to_string()}));
            } else {
                println!("diagnostics written to {}", file.display());
            }
        }
        Command::ForgetCustomer { customer_id } => {
            if !admin.forget_customer(customer_id)? {
                return Err(Error::NotFound(
                    "nothing is held about this customer".into(),
                ));
            }
            if cli.json {
                print_json(&json!({"forgotten": true}));
            } else {
                println!("the customer was erased from this terminal's database");
            }
        }
        Command::Doctor { .. } => unreachable!("handled above"),
    }
    Ok(ExitCode::SUCCESS)
}

fn print_json(v: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(v).unwrap_or_else(|_| v.to_string())
    );
}

fn table(header: &[&str]) -> Table {
    let mut t = Table::new();
    t.load_preset(UTF8_BORDERS_ONLY)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.iter().copied());
    t
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn print_status(s: &Value) {
    let o = &s["outbox"];
    let mut t = table(&["", ""]);
    let held = match s["held_by_client"].as_bool() {
        Some(true) => "yes (a POS has it open)",
        Some(false) => "no",
        None => "unknown",
    };
    t.add_row(vec!["database".into(), text(&s["database"])]);
    t.add_row(vec!["held by a client".into(), held.to_string()]);
    t.add_row(vec!["schema version".into(), text(&s["schema_version"])]);
    t.add_row(vec!["pending".into(), text(&o["pending"])]);
    t.add_row(vec!["blocked behind dead".into(), text(&o["blocked"])]);
    t.add_row(vec!["dead".into(), text(&o["dead"])]);
    t.add_row(vec![
        "delivered (kept)".into(),
        text(&o["by_state"]["delivered"]),
    ]);
    t.add_row(vec!["oldest pending".into(), text(&o["oldest_pending_at"])]);
    t.add_row(vec!["next due".into(), text(&o["next_due_at"])]);
    t.add_row(vec!["last push".into(), text(&s["last_push_at"])]);
    t.add_row(vec!["last pull".into(), text(&s["last_pull_at"])]);
    println!("{t}");
    if let Some(kinds) = s["outbox"]["by_kind"].as_object() {
        if !kinds.is_empty() {
            let mut k = table(&["kind", "pending", "in_flight", "delivered", "dead"]);
            for (kind, c) in kinds {
                let n = |s: &str| c[s].as_i64().unwrap_or(0).to_string();
                k.add_row(vec![
                    kind.clone(),
                    n("pending"),
                    n("in_flight"),
                    n("delivered"),
                    n("dead"),
                ]);
            }
            println!("{k}");
        }
    }
}

fn print_jobs(jobs: &[JobRow]) {
    let mut t = table(&[
        "id",
        "kind",
        "event",
        "state",
        "tries",
        "counted",
        "created",
        "last error",
    ]);
    for j in jobs {
        let state = if j.blocked {
            format!("{} (blocked)", j.state)
        } else {
            j.state.clone()
        };
        let err = j.last_error.as_deref().map(mask).unwrap_or_default();
        let err: String = if err.chars().count() > 60 {
            err.chars().take(59).chain(['…']).collect()
        } else {
            err
        };
        t.add_row(vec![
            j.id.to_string(),
            j.kind.clone(),
            j.event_id.clone(),
            state,
            j.tries.to_string(),
            j.attempts.to_string(),
            text(&admin::time(Some(j.created_at))),
            err,
        ]);
    }
    println!("{t}");
    println!("{} job(s)", jobs.len());
}

fn print_job(j: &Value) {
    let mut t = table(&["", ""]);
    for key in [
        "id",
        "kind",
        "event_id",
        "entity_id",
        "state",
        "blocked",
        "tries",
        "attempts",
        "uncertain",
        "step",
        "receipt_pdf_held",
        "last_error",
    ] {
        t.add_row(vec![key.to_string(), text(&j[key])]);
    }
    if !j["waiting_for"].is_null() {
        t.add_row(vec![
            "waiting for".into(),
            format!(
                "job {} ({}, {})",
                text(&j["waiting_for"]["id"]),
                text(&j["waiting_for"]["kind"]),
                text(&j["waiting_for"]["state"])
            ),
        ]);
    }
    println!("{t}");
    let mut tl = table(&["when", "what"]);
    for e in j["timeline"].as_array().into_iter().flatten() {
        let what = match e.get("error").filter(|v| !v.is_null()) {
            Some(err) => format!("{}: {}", text(&e["what"]), text(err)),
            None => text(&e["what"]),
        };
        tl.add_row(vec![text(&e["at"]), what]);
    }
    println!("{tl}");
    println!("payload (secrets masked):");
    println!(
        "{}",
        serde_json::to_string_pretty(&j["payload"]).unwrap_or_default()
    );
}

fn print_catalog(s: &Value) {
    let mut t = table(&["", ""]);
    for key in [
        "skus",
        "active_skus",
        "products",
        "prices",
        "categories",
        "stores",
        "stock_levels",
        "stock_movements_pending",
        "inbound_orders",
        "purchase_orders",
        "customers",
    ] {
        t.add_row(vec![key.replace('_', " "), text(&s[key])]);
    }
    println!("{t}");
    let mut d = table(&["data set", "last pull", "high-water mark", "settled"]);
    for ds in s["datasets"].as_array().into_iter().flatten() {
        d.add_row(vec![
            text(&ds["dataset"]),
            text(&ds["last_pull_at"]),
            text(&ds["high_water"]),
            text(&ds["settled"]),
        ]);
    }
    println!("{d}");
}

fn print_stock(s: &Value) {
    println!("SKU {}", text(&s["sku"]));
    let mut t = table(&["warehouse", "quantity", "reserved", "pending", "available"]);
    for w in s["warehouses"].as_array().into_iter().flatten() {
        t.add_row(vec![
            text(&w["warehouse_id"]),
            text(&w["quantity"]),
            text(&w["reserved"]),
            text(&w["pending"]),
            text(&w["available"]),
        ]);
    }
    println!("{t}");
}

fn print_event(json_out: bool, e: &Value) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    if json_out {
        writeln!(out, "{e}")?;
    } else {
        let job = &e["job"];
        let what = if job.is_null() {
            match e["order_id"].as_str() {
                Some(id) => format!(
                    "order {id} ({}, {})",
                    text(&e["order_type"]),
                    text(&e["status"])
                ),
                None => String::new(),
            }
        } else {
            let mut s = format!(
                "job {} {} {} [{}]",
                text(&job["id"]),
                text(&job["kind"]),
                text(&job["event_id"]),
                text(&job["state"])
            );
            if e["type"] != "job.recorded" && e["type"] != "job.delivered" {
                if let Some(err) = job["last_error"].as_str() {
                    s.push_str(": ");
                    s.push_str(err);
                }
            }
            s
        };
        writeln!(
            out,
            "{:<26} {:<20} {what}",
            text(&e["at"]),
            text(&e["type"])
        )?;
    }
    out.flush()
}

fn events(admin: &Admin, json_out: bool, args: &EventsArgs) -> Result<(), Error> {
    let io = |e: std::io::Error| Error::Internal(format!("cannot write to stdout: {e}"));
    if !args.follow {
        // The latest changes the database shows, oldest first.
        for e in admin.recent_events(args.limit)? {
            print_event(json_out, &e).map_err(io)?;
        }
        return Ok(());
    }
    let mut mark = admin.mark_now()?;
    let mut shown = 0usize;
    loop {
        let (new, next) = admin.changes(&mark)?;
        mark = next;
        for e in &new {
            print_event(json_out, e).map_err(io)?;
            shown += 1;
            if args.count.is_some_and(|c| shown >= c) {
                return Ok(());
            }
        }
        std::thread::sleep(Duration::from_millis(args.interval_ms.max(50)));
    }
}

// ---------------------------------------------------------------- doctor

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Level {
    Ok,
    Skipped,
    Warn,
    Fail,
}

impl Level {
    fn name(self) -> &'static str {
        match self {
            Level::Ok => "ok",
            Level::Skipped => "skipped",
            Level::Warn => "warn",
            Level::Fail => "FAIL",
        }
    }
}

struct Check {
    name: &'static str,
    level: Level,
    detail: String,
}

fn check(name: &'static str, level: Level, detail: impl Into<String>) -> Check {
    Check {
        name,
        level,
        detail: mask(&detail.into()),
    }
}

/// Free space below this fails: a sale is a few kB, but SQLite needs room for the WAL.
const DISK_FAIL_BYTES: u64 = 50 * 1024 * 1024;
const DISK_WARN_BYTES: u64 = 500 * 1024 * 1024;
/// Clock skew against Omnium's Date header.
const SKEW_WARN_S: i64 = 30;
const SKEW_FAIL_S: i64 = 300;
/// Age of the oldest pending job.
const PENDING_WARN_S: i64 = 3600;
const PENDING_FAIL_S: i64 = 24 * 3600;

fn spinner(msg: &str) -> ProgressBar {
    let pb = ProgressBar::new_spinner();
    pb.set_style(ProgressStyle::with_template("{spinner} {msg}").expect("template"));
    pb.enable_steady_tick(Duration::from_millis(120));
    pb.set_message(msg.to_string());
    pb
}

fn doctor(t: &Target, full: bool) -> Vec<Check> {
    let mut out = Vec::new();
    match &t.config {
        Some(_) => out.push(check("config", Level::Ok, "valid")),
        None => out.push(check(
            "config",
            Level::Skipped,
            "no --config given: Omnium checks skipped",
        )),
    }
    // Database.
    let pb = spinner("checking the database");
    let admin = Admin::open(&t.database, false);
    match &admin {
        Err(e) => out.push(check("database", Level::Fail, e.to_string())),
        Ok(a) => {
            out.push(check("database", Level::Ok, a.path().display().to_string()));
            match a.integrity(full) {
                Ok(rows) if rows == ["ok"] => out.push(check(
                    "integrity",
                    Level::Ok,
                    if full {
                        "integrity_check ok"
                    } else {
                        "quick_check ok"
                    },
                )),
                Ok(rows) => out.push(check(
                    "integrity",
                    Level::Fail,
                    format!(
                        "{}; the POS moves a damaged database aside at its next start",
                        rows.join("; ")
                    ),
                )),
                Err(e) => out.push(check("integrity", Level::Fail, e.to_string())),
            }
            match a.schema_version() {
                Ok(v) if v == flow_omnium::store::SCHEMA_VERSION => {
                    out.push(check("schema", Level::Ok, format!("version {v}")))
                }
                Ok(v) => out.push(check(
                    "schema",
                    Level::Warn,
                    format!(
                        "version {v}; this tool is built for {}",
                        flow_omnium::store::SCHEMA_VERSION
                    ),
                )),
                Err(e) => out.push(check("schema", Level::Fail, e.to_string())),
            }
        }
    }
    pb.finish_and_clear();
    out.push(disk_space(&t.database));
    if let Ok(a) = &admin {
        match a.status() {
            Ok(s) => {
                let age = s["outbox"]["pending_age_s"].as_i64();
                let level = match age {
                    Some(a) if a >= PENDING_FAIL_S => Level::Fail,
                    Some(a) if a >= PENDING_WARN_S => Level::Warn,
                    _ => Level::Ok,
                };
                let detail = match age {
                    None => "nothing pending".to_string(),
                    Some(a) => format!(
                        "{} pending, the oldest recorded {} ago",
                        s["outbox"]["pending"],
                        human_secs(a)
                    ),
                };
                out.push(check("pending age", level, detail));
                let dead = s["outbox"]["dead"].as_u64().unwrap_or(0);
                out.push(if dead == 0 {
                    check("dead jobs", Level::Ok, "none")
                } else {
                    check(
                        "dead jobs",
                        Level::Warn,
                        format!(
                            "{dead} (`outbox list --state dead`; fix the cause, then `outbox retry --all-dead`)"
                        ),
                    )
                });
            }
            Err(e) => out.push(check("pending age", Level::Fail, e.to_string())),
        }
    }
    match &t.config {
        Some((config, _)) => {
            let pb = spinner("asking Omnium");
            out.extend(omnium_checks(config));
            pb.finish_and_clear();
        }
        None => {
            for name in ["Omnium reachable", "token accepted", "roles", "clock skew"] {
                out.push(check(name, Level::Skipped, "needs --config"));
            }
        }
    }
    out
}

fn human_secs(s: i64) -> String {
    match s {
        s if s < 120 => format!("{s} s"),
        s if s < 7200 => format!("{} min", s / 60),
        s if s < 172_800 => format!("{} h", s / 3600),
        s => format!("{} days", s / 86_400),
    }
}

fn disk_space(db: &Path) -> Check {
    let dir = db
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let Ok(c) = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()) else {
        return check("disk space", Level::Fail, "the path holds a NUL byte");
    };
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut st) };
    if rc != 0 {
        return check(
            "disk space",
            Level::Fail,
            format!(
                "cannot stat {}: {}",
                dir.display(),
                std::io::Error::last_os_error()
            ),
        );
    }
    let free = st.f_bavail as u64 * st.f_frsize as u64;
    let total = st.f_blocks as u64 * st.f_frsize as u64;
    let mb = |b: u64| b / (1024 * 1024);
    let detail = format!(
        "{} MB free of {} MB in {}",
        mb(free),
        mb(total),
        dir.display()
    );
    let level = if free < DISK_FAIL_BYTES {
        Level::Fail
    } else if free < DISK_WARN_BYTES || (total > 0 && free * 10 < total) {
        Level::Warn
    } else {
        Level::Ok
    };
    check("disk space", level, detail)
}

/// Resources the library uses, each probed with a read that needs its role; a 404 for a
/// probe id means the role is there.
const ROLE_PROBES: &[(&str, &str, &str)] = &[
    (
        "Orders",
        "OrderAdmin",
        "/api/Orders/flow-omnium-doctor-probe",
    ),
    ("Products", "ProductRead", "/api/ProductCategories?take=1"),
    ("Markets", "MarketRead", "/api/Markets"),
    (
        "Customers",
        "CustomerAdmin",
        "/api/PrivateCustomers/flow-omnium-doctor-probe",
    ),
    (
        "Purchase orders",
        "PurchaseOrderAdmin",
        "/api/PurchaseOrders/flow-omnium-doctor-probe",
    ),
    (
        "Invoices",
        "invoice write access",
        "/api/Invoices/flow-omnium-doctor-probe",
    ),
];

fn omnium_checks(config: &Config) -> Vec<Check> {
    let mut out = Vec::new();
    let om = &config.omnium;
    let timeout = Duration::from_millis(om.timeout_ms.min(15_000));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(timeout))
        .user_agent(concat!("flow-omnium-cli/", env!("CARGO_PKG_VERSION")))
        .build()
        .into();
    let url = format!(
        "{}/api/token?clientId={}&clientSecret={}&returnAsJson=true",
        om.base_url,
        flow_omnium::omnium::encode_component(&om.client_id),
        flow_omnium::omnium::encode_component(om.client_secret.expose())
    );
    let sent_at = chrono::Utc::now().timestamp_millis();
    let started = Instant::now();
    let resp = agent.post(&url).send_empty();
    let rtt = started.elapsed();
    let mut resp = match resp {
        Ok(r) => r,
        Err(e) => {
            out.push(check(
                "Omnium reachable",
                Level::Fail,
                format!("{}: {e}", om.base_url),
            ));
            for name in ["token accepted", "roles", "clock skew"] {
                out.push(check(name, Level::Skipped, "Omnium not reachable"));
            }
            return out;
        }
    };
    out.push(check(
        "Omnium reachable",
        Level::Ok,
        format!("{} answered in {} ms", om.base_url, rtt.as_millis()),
    ));
    // Clock skew: Omnium's Date header against this machine's clock at the request's middle.
    let date = resp
        .headers()
        .get("date")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    out.push(
        match date
            .as_deref()
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
        {
            None => check(
                "clock skew",
                Level::Skipped,
                "Omnium's answer has no Date header",
            ),
            Some(d) => {
                let mid = sent_at + rtt.as_millis() as i64 / 2;
                // Date has whole seconds: up to 1 s of the difference is its rounding.
                let skew_s = (mid - d.timestamp_millis()) / 1000;
                let level = match skew_s.abs() {
                    s if s >= SKEW_FAIL_S => Level::Fail,
                    s if s >= SKEW_WARN_S => Level::Warn,
                    _ => Level::Ok,
                };
                check(
                    "clock skew",
                    level,
                    format!(
                        "this machine is {} s {} Omnium (±1 s); sales carry the till's time",
                        skew_s.abs(),
                        if skew_s >= 0 { "ahead of" } else { "behind" }
                    ),
                )
            }
        },
    );
    let status = resp.status().as_u16();
    let body = resp.body_mut().read_to_string().unwrap_or_default();
    let token = match status {
        200..=299 => serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["accessToken"].as_str().map(str::to_string))
            .filter(|t| !t.is_empty()),
        _ => None,
    };
    let Some(token) = token else {
        let why = match status {
            200..=299 => "the token answer has no accessToken".to_string(),
            400 | 401 | 403 => format!(
                "HTTP {status}: Omnium refused the API user {:?}; check client_id and client_secret, and that the user is active",
                om.client_id
            ),
            _ => format!("HTTP {status} from /api/token"),
        };
        out.push(check("token accepted", Level::Fail, why));
        out.push(check("roles", Level::Skipped, "no token"));
        return out;
    };
    keep_secret(&flow_omnium::redact::Secret::new(token.clone()));
    out.push(check(
        "token accepted",
        Level::Ok,
        format!("API user {:?}", om.client_id),
    ));
    let mut missing = Vec::new();
    let mut other = Vec::new();
    for (what, role, path) in ROLE_PROBES {
        let r = agent
            .get(format!("{}{path}", om.base_url))
            .header("Authorization", &format!("Bearer {token}"))
            .header("Accept", "application/json")
            .call();
        match r.map(|r| r.status().as_u16()) {
            Ok(200..=299 | 404) => {}
            Ok(403) => missing.push(format!("{what} ({role})")),
            Ok(401) => missing.push(format!("{what} (401: token refused)")),
            Ok(s) => other.push(format!("{what}: HTTP {s}")),
            Err(e) => other.push(format!("{what}: {e}")),
        }
    }
    out.push(if !missing.is_empty() {
        check(
            "roles",
            Level::Fail,
            format!(
                "role missing (403) for: {}; give the API user these roles in Omnium (and the store's or market's scope)",
                missing.join(", ")
            ),
        )
    } else if !other.is_empty() {
        check("roles", Level::Warn, other.join("; "))
    } else {
        check("roles", Level::Ok, "every resource the library uses answered")
    });
    out
}

fn doctor_json(report: &[Check]) -> Value {
    let worst = report.iter().map(|c| c.level).max().unwrap_or(Level::Ok);
    json!({
        "ok": worst < Level::Fail,
        "worst": worst.name(),
        "checks": report.iter().map(|c| json!({"check": c.name, "result": c.level.name(), "detail": c.detail})).collect::<Vec<_>>(),
    })
}

fn print_doctor(json_out: bool, report: &[Check]) -> ExitCode {
    if json_out {
        print_json(&doctor_json(report));
    } else {
        let mut t = table(&["check", "result", "detail"]);
        for c in report {
            t.add_row(vec![
                c.name.to_string(),
                c.level.name().to_string(),
                c.detail.clone(),
            ]);
        }
        println!("{t}");
    }
    if report.iter().any(|c| c.level == Level::Fail) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------- diagnostics

/// How much of each log file goes into the archive.
const LOG_TAIL_LINES: usize = 5000;

fn export_diagnostics(
    admin: &Admin,
    t: &Target,
    file: &Path,
    logs: &[PathBuf],
) -> Result<(), Error> {
    let io = |what: &str, e: std::io::Error| Error::Internal(format!("{what}: {e}"));
    let mut parts: Vec<(String, Vec<u8>)> = Vec::new();
    let pretty = |v: &Value| serde_json::to_vec_pretty(v).unwrap_or_default();
    let steps = 5 + logs.len() as u64;
    let pb = ProgressBar::new(steps);
    pb.set_style(ProgressStyle::with_template("{bar:30} {pos}/{len} {msg}").expect("template"));
    pb.set_message("status");
    parts.push(("status.json".into(), pretty(&admin.status()?)));
    pb.inc(1);
    pb.set_message("outbox");
    let dead = admin.jobs(Some("dead"), None, 10_000)?;
    parts.push((
        "dead-jobs.json".into(),
        pretty(&json!({"items": dead.iter().map(JobRow::to_json).collect::<Vec<_>>()})),
    ));
    let recent = admin.jobs(None, None, 500)?;
    parts.push((
        "outbox-recent.json".into(),
        pretty(&json!({"items": recent.iter().map(JobRow::to_json).collect::<Vec<_>>()})),
    ));
    pb.inc(1);
    pb.set_message("catalog");
    parts.push(("catalog.json".into(), pretty(&admin.catalog_stats()?)));
    pb.inc(1);
    pb.set_message("doctor");
    parts.push((
        "doctor.json".into(),
        pretty(&doctor_json(&doctor(t, false))),
    ));
    pb.inc(1);
    if let Some((_, text)) = &t.config {
        parts.push((
            "config.json".into(),
            pretty(&admin::config_without_secrets(text)),
        ));
    }
    pb.inc(1);
    for (i, log) in logs.iter().enumerate() {
        pb.set_message(format!("log {}", log.display()));
        let raw =
            std::fs::read(log).map_err(|e| io(&format!("cannot read {}", log.display()), e))?;
        let text = String::from_utf8_lossy(&raw);
        let lines: Vec<&str> = text.lines().collect();
        let tail = lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n");
        let name = log
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "log".into());
        parts.push((format!("logs/{i}-{name}"), mask(&tail).into_bytes()));
        pb.inc(1);
    }
    parts.push((
        "manifest.json".into(),
        pretty(&json!({
            "tool": concat!("flow-omnium ", env!("CARGO_PKG_VERSION")),
            "created_at": admin::time(Some(chrono::Utc::now().timestamp_millis())),
            "database": admin.path().display().to_string(),
            "contents": parts.iter().map(|(n, _)| n.clone()).collect::<Vec<_>>(),
            "left_out": "job payloads, customers, receipt PDFs (personal data); the client secret and tokens",
        })),
    ));
    // Written beside the target and renamed: a reader never sees half an archive.
    let tmp = file.with_extension("partial");
    let result = (|| -> std::io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        // A fresh file, never through a symlink planted at the temporary name.
        match std::fs::remove_file(&tmp) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(e),
            _ => {}
        }
        let f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&tmp)?;
        let gz = flate2::write::GzEncoder::new(f, flate2::Compression::default());
        let mut ar = tar::Builder::new(gz);
        let now = chrono::Utc::now().timestamp().max(0) as u64;
        for (name, data) in &parts {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o600);
            h.set_mtime(now);
            h.set_cksum();
            ar.append_data(
                &mut h,
                format!("flow-omnium-diagnostics/{name}"),
                data.as_slice(),
            )?;
        }
        let gz = ar.into_inner()?;
        let f = gz.finish()?;
        f.sync_all()?;
        std::fs::rename(&tmp, file)
    })();
    pb.finish_and_clear();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(io(&format!("cannot write {}", file.display()), e));
    }
    Ok(())
}
