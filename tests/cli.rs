//! The operator CLI `flow-omnium` on a database with pending, delivered, blocked and dead
//! jobs while a client (the POS) holds it: every read works alongside, and its writes (retry,
//! forget) take effect without racing the client's worker.

mod common;

use common::*;
use flow_omnium::sim::{CatalogSpec, Fault, FaultKind, Simulator};
use flow_omnium::Client;
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn cli(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_flow-omnium"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .expect("the CLI runs")
}

fn cli_json(args: &[&str]) -> Value {
    let out = cli(args);
    assert!(
        out.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}",
            String::from_utf8_lossy(&out.stdout)
        )
    })
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A terminal with one delivered sale, one dead sale, a return blocked behind it, and one
/// sale pending while Omnium is down; the client stays open (it holds the database).
struct Terminal {
    _dir: tempfile::TempDir,
    db: PathBuf,
    config_file: PathBuf,
    sim: Simulator,
    client: Client,
}

fn terminal() -> Terminal {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("pos.db");
    let sim = sim();
    sim.load_catalog(&CatalogSpec {
        products: 20,
        ..CatalogSpec::default()
    });
    // A short pull interval: a job revived by the CLI is taken at the worker's next wake.
    let overrides = json!({"warehouse_ids": ["oslo-1"], "sync": {"pull_interval_ms": 300}});
    let config_text = config(&db, &sim.base_url(), overrides.clone());
    let config_file = dir.path().join("config.json");
    std::fs::write(&config_file, &config_text).unwrap();
    let client = open(&db, &sim, overrides);
    // A permanent rejection of the first sale sent: it dies.
    sim.inject(Fault::new(FaultKind::Status(400), 1).on_path("PosOrders"));
    client.record_sale(&sale("S-DEAD", 1)).unwrap();
    assert!(wait_until(Duration::from_secs(20), || status(&client)
        ["outbox"]["dead"]
        == 1));
    client.record_sale(&sale("S-OK", 2)).unwrap();
    client.flush(Duration::from_secs(20)).unwrap();
    assert!(sim.order("S-OK").is_some());
    // The catalog is pulled before Omnium goes away.
    assert!(wait_until(Duration::from_secs(30), || client
        .store()
        .sku_count()
        .unwrap()
        > 0));
    // Omnium goes away: the next sale waits, and a return of the dead sale waits behind it.
    sim.set_down(true);
    client.record_sale(&sale("S-WAIT", 1)).unwrap();
    client
        .record_return(&return_of("R-1", "S-DEAD", "1"))
        .unwrap();
    Terminal {
        _dir: dir,
        db,
        config_file,
        sim,
        client,
    }
}

fn db_arg(t: &Terminal) -> String {
    t.db.to_str().unwrap().to_string()
}

fn job_id(t: &Terminal, event_id: &str) -> String {
    let list = cli_json(&["--database", &db_arg(t), "--json", "outbox", "list"]);
    list["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["event_id"] == event_id)
        .unwrap_or_else(|| panic!("{event_id} not listed: {list}"))["id"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn reads_alongside_a_running_client() {
    let t = terminal();
    let db = db_arg(&t);

    let s = cli_json(&["--database", &db, "--json", "status"]);
    assert_eq!(s["held_by_client"], true, "{s}");
    assert_eq!(s["outbox"]["dead"], 1, "{s}");
    assert_eq!(
        s["outbox"]["blocked"], 1,
        "the return waits behind its dead sale: {s}"
    );
    assert_eq!(s["outbox"]["pending"], 1, "{s}");
    assert_eq!(s["outbox"]["by_state"]["delivered"], 1, "{s}");
    assert!(s["outbox"]["oldest_pending_at"].is_string(), "{s}");
    assert!(s["last_push_at"].is_string(), "{s}");
    // The human table says the same.
    let human = stdout(&cli(&["--database", &db, "status"]));
    assert!(
        human.contains("held by a client") && human.contains("yes"),
        "{human}"
    );

    let dead = cli_json(&[
        "--database",
        &db,
        "--json",
        "outbox",
        "list",
        "--state",
        "dead",
    ]);
    let items = dead["items"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{dead}");
    assert_eq!(items[0]["event_id"], "S-DEAD");
    assert!(
        items[0]["last_error"].as_str().unwrap().contains("400"),
        "{dead}"
    );
    let returns = cli_json(&[
        "--database",
        &db,
        "--json",
        "outbox",
        "list",
        "--kind",
        "return",
    ]);
    assert_eq!(returns["items"][0]["blocked"], true, "{returns}");
    let table = stdout(&cli(&["--database", &db, "outbox", "list"]));
    for want in [
        "S-OK",
        "delivered",
        "S-DEAD",
        "dead",
        "S-WAIT",
        "pending",
        "R-1",
        "(blocked)",
    ] {
        assert!(table.contains(want), "{want} missing from:\n{table}");
    }

    let id = job_id(&t, "S-DEAD");
    let show = cli_json(&["--database", &db, "--json", "outbox", "show", &id]);
    assert_eq!(show["state"], "dead");
    assert_eq!(show["payload"]["id"], "S-DEAD", "{show}");
    assert_eq!(show["payload"]["payments"][0]["method"], "Card");
    let timeline: Vec<&str> = show["timeline"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"].as_str().unwrap())
        .collect();
    assert_eq!(timeline.first(), Some(&"recorded"), "{show}");
    assert!(timeline.iter().any(|w| w.starts_with("dead")), "{show}");
    let ret = cli_json(&[
        "--database",
        &db,
        "--json",
        "outbox",
        "show",
        &job_id(&t, "R-1"),
    ]);
    assert_eq!(ret["waiting_for"]["id"], id.as_str(), "{ret}");
    let human = stdout(&cli(&["--database", &db, "outbox", "show", &id]));
    assert!(
        human.contains("payload (secrets masked)") && human.contains("S-DEAD"),
        "{human}"
    );
    let missing = cli(&["--database", &db, "outbox", "show", "999999"]);
    assert!(!missing.status.success());
    assert!(String::from_utf8_lossy(&missing.stderr).contains("no outbox job"));

    // The catalog the client pulled, counted by the CLI as by the library.
    let cat = cli_json(&["--database", &db, "--json", "catalog", "stats"]);
    assert_eq!(
        cat["skus"].as_u64(),
        Some(t.client.store().sku_count().unwrap()),
        "{cat}"
    );
    assert!(
        cat["datasets"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["dataset"].is_string()),
        "{cat}"
    );
    // Stock as fo_stock_get shows it: the pending sale S-WAIT sold one of SKU-0 here.
    let stock = cli_json(&["--database", &db, "--json", "stock", "SKU-0"]);
    let via_client: Value = serde_json::from_str(&t.client.stock_json("SKU-0").unwrap()).unwrap();
    assert_eq!(stock, via_client);
    assert!(!cli(&["--database", &db, "stock", "NO-SUCH-SKU"])
        .status
        .success());

    // A database another account owns is refused (as root, the CLI would leave -wal/-shm
    // files the POS's account cannot open).
    if unsafe { libc::geteuid() } == 0 {
        let c = std::ffi::CString::new(db.as_str()).unwrap();
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 4242, 4242) }, 0);
        let out = cli(&["--database", &db, "status"]);
        assert_eq!(unsafe { libc::chown(c.as_ptr(), 0, 0) }, 0);
        assert!(!out.status.success());
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("belongs to uid 4242"),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // A database path that is not a flow-omnium database is refused and left alone.
    let other = t.db.with_file_name("other.db");
    std::fs::write(&other, b"not a database").unwrap();
    let out = cli(&["--database", other.to_str().unwrap(), "status"]);
    assert!(!out.status.success());
    assert_eq!(std::fs::read(&other).unwrap(), b"not a database");
}

#[test]
fn retry_revives_a_dead_job_that_the_running_worker_then_delivers() {
    let t = terminal();
    let db = db_arg(&t);
    t.sim.set_down(false);
    let id = job_id(&t, "S-DEAD");
    // Only dead jobs are retried.
    let pending = cli(&["--database", &db, "outbox", "retry", &job_id(&t, "S-WAIT")]);
    assert!(!pending.status.success());
    assert!(String::from_utf8_lossy(&pending.stderr).contains("not dead"));

    let out = cli_json(&["--database", &db, "--json", "outbox", "retry", &id]);
    assert_eq!(out["retried"], 1);
    // The client's worker (another connection, not told by anyone) takes it up.
    assert!(
        wait_until(Duration::from_secs(30), || t.sim.order("S-DEAD").is_some()),
        "the revived sale reached Omnium"
    );
    t.client.flush(Duration::from_secs(30)).unwrap();
    let s = cli_json(&["--database", &db, "--json", "status"]);
    assert_eq!(s["outbox"]["dead"], 0, "{s}");
    assert_eq!(s["outbox"]["pending"], 0, "{s}");
    assert_eq!(s["outbox"]["by_state"]["delivered"], 4, "{s}");
    let again = cli(&["--database", &db, "outbox", "retry", &id]);
    assert!(!again.status.success(), "a delivered job is not retried");
}

/// The CLI's writes interleave with the worker's claims and finishes without losing or
/// repeating anything: sales die in waves while the CLI keeps retrying every dead job.
#[test]
fn retry_all_dead_while_the_worker_sends_loses_and_repeats_nothing() {
    let t = terminal();
    let db = db_arg(&t);
    t.sim.set_down(false);
    // The next 30 PosOrder requests are refused permanently: their sales die.
    for _ in 0..30 {
        t.sim
            .inject(Fault::new(FaultKind::Status(400), 1).on_path("PosOrders"));
    }
    let recorder = {
        let sales: Vec<String> = (0..60).map(|i| sale(&format!("W-{i}"), 1)).collect();
        let client = &t.client;
        std::thread::scope(|s| {
            let h = s.spawn(move || {
                for s in &sales {
                    client.record_sale(s).unwrap();
                    std::thread::sleep(Duration::from_millis(5));
                }
            });
            let mut retried = 0;
            while !h.is_finished() {
                let out = cli_json(&["--database", &db, "--json", "outbox", "retry", "--all-dead"]);
                retried += out["retried"].as_u64().unwrap();
            }
            retried
        })
    };
    // Drain what is left, retrying until nothing is dead (the faults run out).
    assert!(
        wait_until(Duration::from_secs(90), || {
            cli_json(&["--database", &db, "--json", "outbox", "retry", "--all-dead"]);
            let s = cli_json(&["--database", &db, "--json", "status"]);
            s["outbox"]["dead"] == 0 && s["outbox"]["pending"] == 0 && s["outbox"]["blocked"] == 0
        }),
        "everything delivered in the end"
    );
    let orders = t.sim.orders();
    for i in 0..60 {
        let id = format!("W-{i}");
        assert_eq!(
            orders.iter().filter(|o| o["id"] == id.as_str()).count(),
            1,
            "{id} reached Omnium exactly once"
        );
    }
    let s = cli_json(&["--database", &db, "--json", "status"]);
    assert_eq!(s["outbox"]["by_state"]["delivered"], 64, "{s}");
    let _ = recorder;
}

#[test]
fn forget_customer_erases_beside_the_running_client() {
    let t = terminal();
    let db = db_arg(&t);
    t.client
        .record_customer(
            &json!({"id": "C-1", "type": "person", "first_name": "Kari", "last_name": "Nordmann",
                    "email": "kari@example.no"})
            .to_string(),
        )
        .unwrap();
    assert!(t.client.customer_json("C-1").is_ok());
    let out = cli_json(&["--database", &db, "--json", "forget-customer", "C-1"]);
    assert_eq!(out["forgotten"], true);
    assert!(
        t.client.customer_json("C-1").is_err(),
        "the client no longer finds the customer"
    );
    // The pending customer job is kept (and erased once delivered).
    let listed = cli_json(&[
        "--database",
        &db,
        "--json",
        "outbox",
        "list",
        "--kind",
        "customer",
    ]);
    assert_eq!(listed["items"].as_array().unwrap().len(), 1, "{listed}");
    let nobody = cli(&["--database", &db, "forget-customer", "NOBODY"]);
    assert!(!nobody.status.success());
}

#[test]
fn events_follow_shows_what_the_worker_does() {
    let t = terminal();
    let db = db_arg(&t);
    let mut child = KillOnDrop(
        Command::new(env!("CARGO_BIN_EXE_flow-omnium"))
            .args([
                "--database",
                &db,
                "--json",
                "events",
                "--follow",
                "--interval-ms",
                "100",
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // Past events are not replayed: only what happens after the CLI started.
    std::thread::sleep(Duration::from_millis(800));
    t.client.record_sale(&sale("S-NEW", 1)).unwrap();
    std::thread::sleep(Duration::from_millis(400));
    t.sim.set_down(false);
    t.client.sync_now().unwrap();
    let mut seen = Vec::new();
    let mut reader = BufReader::new(child.0.stdout.take().unwrap());
    let delivered = |e: &Value| e["type"] == "job.delivered" && e["job"]["event_id"] == "S-NEW";
    while !seen.iter().any(delivered) {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap() == 0 {
            break;
        }
        seen.push(serde_json::from_str::<Value>(&line).unwrap_or_else(|_| panic!("{line:?}")));
    }
    drop(child);
    let at = |f: &dyn Fn(&Value) -> bool| seen.iter().position(f);
    let recorded = at(&|e| e["type"] == "job.recorded" && e["job"]["event_id"] == "S-NEW");
    let delivered_at = at(&delivered);
    assert!(
        recorded.is_some() && delivered_at.is_some() && recorded < delivered_at,
        "{seen:?}"
    );
    assert!(
        !seen
            .iter()
            .any(|e| e["type"] == "job.recorded" && e["job"]["event_id"] == "S-OK"),
        "old jobs are not replayed: {seen:?}"
    );
    // --count stops by itself (the worker pulls every 300 ms, so something happens).
    let out = cli(&[
        "--database",
        &db,
        "--json",
        "events",
        "--follow",
        "--count",
        "1",
        "--interval-ms",
        "50",
    ]);
    assert!(out.status.success());
    assert_eq!(stdout(&out).lines().count(), 1, "{}", stdout(&out));
    // Without --follow: the latest changes, the dead sale among them.
    let human = stdout(&cli(&["--database", &db, "events"]));
    assert!(
        human.contains("job.dead") && human.contains("S-DEAD"),
        "{human}"
    );
}

/// A follower that is killed however the test ends (a failed assertion must not leave it
/// polling forever).
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn write_config(t: &Terminal, base_url: &str) -> PathBuf {
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&t.config_file).unwrap()).unwrap();
    cfg["omnium"]["base_url"] = json!(base_url);
    let path = t
        .config_file
        .with_file_name(format!("config-{}.json", base_url.len()));
    std::fs::write(&path, cfg.to_string()).unwrap();
    path
}

#[test]
fn doctor_checks_omnium_roles_clock_and_pending_age() {
    let t = terminal();
    t.sim.set_down(false);
    t.client.flush(Duration::from_secs(20)).unwrap();
    let cfg = t.config_file.to_str().unwrap();
    let report = |args: &[&str]| -> (bool, Value) {
        let out = cli(args);
        let text = stdout(&out);
        assert!(
            !text.contains(CLIENT_SECRET),
            "the secret is never printed: {text}"
        );
        (
            out.status.success(),
            serde_json::from_str(&text).unwrap_or_else(|_| panic!("{text}")),
        )
    };
    let find = |r: &Value, name: &str| -> Value {
        r["checks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["check"] == name)
            .unwrap_or_else(|| panic!("no {name} in {r}"))
            .clone()
    };
    let (ok, r) = report(&["--config", cfg, "--json", "doctor"]);
    for name in [
        "config",
        "integrity",
        "schema",
        "pending age",
        "Omnium reachable",
        "token accepted",
        "roles",
    ] {
        assert_eq!(find(&r, name)["result"], "ok", "{name}: {r}");
    }
    assert!(
        find(&r, "disk space")["detail"]
            .as_str()
            .unwrap()
            .contains("MB free"),
        "{r}"
    );
    assert_eq!(find(&r, "clock skew")["result"], "ok", "{r}");
    assert!(
        find(&r, "clock skew")["detail"]
            .as_str()
            .unwrap()
            .contains(" s "),
        "{r}"
    );
    // The dead job is a warning, not a failure.
    assert_eq!(find(&r, "dead jobs")["result"], "warn", "{r}");
    assert!(ok, "{r}");

    // The API user lacks the order role: 403 is named as a missing role.
    t.sim.inject(
        Fault::new(FaultKind::Status(403), 1).on_path("/api/Orders/flow-omnium-doctor-probe"),
    );
    let (ok, r) = report(&["--config", cfg, "--json", "doctor"]);
    assert!(!ok);
    let roles = find(&r, "roles");
    assert_eq!(roles["result"], "FAIL", "{r}");
    assert!(
        roles["detail"].as_str().unwrap().contains("OrderAdmin"),
        "{r}"
    );

    // Wrong credentials: the token is refused.
    let mut cfg_v: Value =
        serde_json::from_str(&std::fs::read_to_string(&t.config_file).unwrap()).unwrap();
    cfg_v["omnium"]["client_secret"] = json!("wrong-secret-value");
    let bad = t.config_file.with_file_name("bad.json");
    std::fs::write(&bad, cfg_v.to_string()).unwrap();
    let out = cli(&["--config", bad.to_str().unwrap(), "--json", "doctor"]);
    assert!(!out.status.success());
    assert!(!stdout(&out).contains("wrong-secret-value"));
    let r: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(find(&r, "token accepted")["result"], "FAIL", "{r}");

    // Nothing listening: unreachable.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://127.0.0.1:{}", l.local_addr().unwrap().port())
    };
    let (ok, r) = report(&[
        "--config",
        write_config(&t, &closed).to_str().unwrap(),
        "--json",
        "doctor",
    ]);
    assert!(!ok);
    assert_eq!(find(&r, "Omnium reachable")["result"], "FAIL", "{r}");

    // An invalid config is an error naming the key.
    let invalid = t.config_file.with_file_name("invalid.json");
    std::fs::write(&invalid, r#"{"store_id": "x"}"#).unwrap();
    let out = cli(&["--config", invalid.to_str().unwrap(), "doctor"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("config"));
}

#[test]
fn export_diagnostics_packs_status_dead_jobs_and_logs_without_secrets() {
    let t = terminal();
    let log = t.db.with_file_name("pos.log");
    std::fs::write(
        &log,
        format!("line 1\nPOST /api/token?clientSecret={CLIENT_SECRET} failed\nlast line\n"),
    )
    .unwrap();
    let archive = t.db.with_file_name("diag.tar.gz");
    let out = cli(&[
        "--config",
        t.config_file.to_str().unwrap(),
        "export-diagnostics",
        archive.to_str().unwrap(),
        "--log",
        log.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let files = read_archive(&archive);
    let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
    for want in [
        "status.json",
        "dead-jobs.json",
        "outbox-recent.json",
        "catalog.json",
        "doctor.json",
        "config.json",
        "logs/0-pos.log",
        "manifest.json",
    ] {
        assert!(
            names.iter().any(|n| n.ends_with(want)),
            "{want} missing: {names:?}"
        );
    }
    for (name, body) in &files {
        assert!(
            !body.contains(CLIENT_SECRET),
            "{name} holds the client secret"
        );
    }
    let get = |suffix: &str| &files.iter().find(|(n, _)| n.ends_with(suffix)).unwrap().1;
    let dead: Value = serde_json::from_str(get("dead-jobs.json")).unwrap();
    assert_eq!(dead["items"][0]["event_id"], "S-DEAD");
    assert!(get("logs/0-pos.log").contains("last line"));
    let config: Value = serde_json::from_str(get("config.json")).unwrap();
    assert_eq!(config["omnium"]["client_secret"], "***");
    assert_eq!(config["store_id"], "oslo-1");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&archive).unwrap().permissions().mode() & 0o777,
        0o600
    );
}

fn read_archive(path: &Path) -> Vec<(String, String)> {
    let f = std::fs::File::open(path).unwrap();
    let mut ar = tar::Archive::new(flate2::read::GzDecoder::new(f));
    ar.entries()
        .unwrap()
        .map(|e| {
            let mut e = e.unwrap();
            let name = e.path().unwrap().to_string_lossy().into_owned();
            let mut body = String::new();
            e.read_to_string(&mut body).unwrap();
            (name, body)
        })
        .collect()
}

#[test]
fn usage_errors_name_what_is_missing() {
    let out = cli(&["status"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--database"));
    let out = cli(&["--database", "/nonexistent/dir/pos.db", "outbox", "retry"]);
    assert!(!out.status.success(), "retry needs an id or --all-dead");
}
