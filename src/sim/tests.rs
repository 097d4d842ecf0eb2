//! End-to-end tests of the simulator through a real HTTP client (ureq).

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;

fn agent_with_timeout(t: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(t))
        .build()
        .into()
}

pub(super) fn agent() -> ureq::Agent {
    agent_with_timeout(Duration::from_secs(5))
}

fn start() -> Simulator {
    Simulator::start(SimConfig::default()).expect("simulator starts")
}

pub(super) fn token(a: &ureq::Agent, sim: &Simulator) -> String {
    let url = format!(
        "{}/api/token?clientId=sim-client&clientSecret=sim-secret&returnAsJson=true",
        sim.base_url()
    );
    let mut r = a.post(&url).send_empty().expect("token request");
    assert_eq!(r.status().as_u16(), 200);
    let v: Value = r.body_mut().read_json().expect("token json");
    assert_eq!(v["tokenType"], "Bearer");
    assert_eq!(v["expiresIn"], 864_000);
    v["accessToken"].as_str().expect("accessToken").to_string()
}

/// A balanced POS order: 2 × 100 + 1 × 50 − 10 discount = 240.
fn order(id: &str) -> Value {
    json!({
        "id": id,
        "orderNumber": id,
        "marketId": "NOR",
        "storeId": "oslo-1",
        "billingCurrency": "NOK",
        "created": "2024-05-01T10:00:00Z",
        "orderForm": {
            "lineItems": [
                {"lineItemId": "1", "code": "SKU-1", "quantity": 2, "placedPrice": 100.0, "taxRate": 25},
                {"lineItemId": "2", "code": "SKU-2", "quantity": 1, "placedPrice": 50.0, "discounted": 10.0}
            ],
            "payments": [
                {"paymentMethodName": "Card", "transactionId": "t1", "transactionType": "Sale",
                 "status": "Processed", "amount": 240.0}
            ]
        }
    })
}

/// Sends a request and returns (status, body); panics on transport errors.
pub(super) fn call(
    a: &ureq::Agent,
    method: &str,
    url: &str,
    tok: Option<&str>,
    body: Option<&Value>,
) -> (u16, String) {
    try_call(a, method, url, tok, body).expect("transport ok")
}

fn try_call(
    a: &ureq::Agent,
    method: &str,
    url: &str,
    tok: Option<&str>,
    body: Option<&Value>,
) -> Result<(u16, String), ureq::Error> {
    let auth = tok.map(|t| format!("Bearer {t}")).unwrap_or_default();
    let mut resp = match method {
        "GET" => {
            let mut r = a.get(url);
            if tok.is_some() {
                r = r.header("Authorization", &auth);
            }
            r.call()?
        }
        _ => {
            let mut r = if method == "PUT" {
                a.put(url)
            } else {
                a.post(url)
            };
            if tok.is_some() {
                r = r.header("Authorization", &auth);
            }
            match body {
                Some(b) => r.send_json(b)?,
                None => r.send_empty()?,
            }
        }
    };
    let status = resp.status().as_u16();
    Ok((status, resp.body_mut().read_to_string()?))
}

fn put_order(a: &ureq::Agent, sim: &Simulator, tok: &str, o: &Value) -> (u16, String) {
    let url = format!("{}/api/Orders/PosOrders", sim.base_url());
    call(a, "PUT", &url, Some(tok), Some(o))
}

#[test]
fn token_required_and_revocable() {
    let sim = start();
    let a = agent();
    let url = format!("{}/api/Orders/x", sim.base_url());
    assert_eq!(call(&a, "GET", &url, None, None).0, 401);
    assert_eq!(call(&a, "GET", &url, Some("bogus"), None).0, 401);
    let bad = format!(
        "{}/api/token?clientId=sim-client&clientSecret=nope&returnAsJson=true",
        sim.base_url()
    );
    assert_eq!(call(&a, "POST", &bad, None, None).0, 401);

    let tok = token(&a, &sim);
    let (status, body) = call(&a, "GET", &url, Some(&tok), None);
    assert_eq!((status, body.as_str()), (404, "Order not found"));

    sim.revoke_tokens();
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 401);
    let tok2 = token(&a, &sim);
    assert_ne!(tok, tok2);
    assert_eq!(call(&a, "GET", &url, Some(&tok2), None).0, 404);

    let s = sim.stats();
    assert_eq!(s.tokens_issued, 2);
    assert_eq!(s.unauthorized, 4);
    assert_eq!(s.by_route["POST /api/token"], 3);
    assert_eq!(s.by_route["GET /api/Orders/{id}"], 5);
    assert_eq!(s.requests, 8);
}

#[test]
fn expired_token_is_refused() {
    let sim = Simulator::start(SimConfig {
        token_ttl_secs: 0,
        ..SimConfig::default()
    })
    .expect("start");
    let a = agent();
    let url = format!(
        "{}/api/token?clientId=sim-client&clientSecret=sim-secret&returnAsJson=true",
        sim.base_url()
    );
    let (_, body) = call(&a, "POST", &url, None, None);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["expiresIn"], 0);
    let tok = v["accessToken"].as_str().expect("token");
    let get = format!("{}/api/Orders/x", sim.base_url());
    assert_eq!(call(&a, "GET", &get, Some(tok), None).0, 401);
}

#[test]
fn pos_order_stored_and_duplicate_rejected() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    let (status, body) = put_order(&a, &sim, &tok, &order("A-1"));
    assert_eq!(status, 201, "{body}");
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["orderType"], "Pos");
    assert_eq!(v["status"], "Completed");
    assert_eq!(v["created"], "2024-05-01T10:00:00Z");
    assert!(v["modified"].as_str().is_some_and(|m| m.ends_with('Z')));
    assert_eq!(v["returnOrderForms"], json!([]));
    assert_eq!(v["orderForm"]["lineItems"][0]["canceledQuantity"], 0);
    assert_eq!(v["orderForm"]["lineItems"][1]["returnQuantity"], 0);

    let url = format!("{}/api/Orders/A-1", sim.base_url());
    let (status, body) = call(&a, "GET", &url, Some(&tok), None);
    assert_eq!(status, 200);
    assert_eq!(serde_json::from_str::<Value>(&body).expect("json"), v);
    assert_eq!(sim.order("A-1"), Some(v));

    let (status, body) = put_order(&a, &sim, &tok, &order("A-1"));
    assert_eq!(
        (status, body.as_str()),
        (400, "Order with id 'A-1' already exists")
    );
    let s = sim.stats();
    assert_eq!((s.orders_created, s.duplicate_orders_rejected), (1, 1));
    assert_eq!(sim.orders().len(), 1);

    // The control endpoint sees the same order without a token.
    let (status, _) = call(
        &a,
        "GET",
        &format!("{}/__sim/orders/A-1", sim.base_url()),
        None,
        None,
    );
    assert_eq!(status, 200);
    let (status, _) = call(
        &a,
        "GET",
        &format!("{}/__sim/orders/B", sim.base_url()),
        None,
        None,
    );
    assert_eq!(status, 404);
}

/// Breaks a valid order in one way.
type Mutation = Box<dyn Fn(&mut Value)>;

#[test]
fn pos_order_validation() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    let cases: Vec<(Mutation, &str)> = vec![
        (
            Box::new(|o| o["orderForm"]["payments"][0]["amount"] = json!(239.0)),
            "payments do not balance",
        ),
        (
            Box::new(|o| o["orderForm"]["lineItems"][0]["quantity"] = json!("2")),
            "orderForm.lineItems[0].quantity",
        ),
        (
            Box::new(|o| o["orderForm"]["lineItems"][1]["lineItemId"] = json!("1")),
            "lineItemId '1' is not unique",
        ),
        (Box::new(|o| o["storeId"] = json!("tromso-9")), "storeId"),
        (Box::new(|o| o["marketId"] = json!("SWE")), "marketId"),
        (Box::new(|o| o["orderNumber"] = json!("")), "orderNumber"),
        (
            Box::new(|o| o["billingCurrency"] = Value::Null),
            "billingCurrency",
        ),
        (
            Box::new(|o| o["orderForm"]["lineItems"] = json!([])),
            "orderForm.lineItems",
        ),
        (
            Box::new(|o| o["orderForm"]["lineItems"][0]["placedPrice"] = json!(-1)),
            "placedPrice",
        ),
        (
            Box::new(|o| o["orderForm"]["payments"][0]["transactionId"] = Value::Null),
            "orderForm.payments[0].transactionId",
        ),
    ];
    for (i, (mutate, needle)) in cases.iter().enumerate() {
        let mut o = order(&format!("V-{i}"));
        mutate(&mut o);
        let (status, body) = put_order(&a, &sim, &tok, &o);
        assert_eq!(status, 400, "case {i}: {body}");
        assert!(body.contains(needle), "case {i}: {body:?} lacks {needle:?}");
    }
    // Roundoff counts towards the total: 240 − 0.4 = 239.6 balances.
    let mut o = order("V-ok");
    o["orderForm"]["grossRoundoff"] = json!(-0.4);
    o["orderForm"]["payments"][0]["amount"] = json!(239.6);
    assert_eq!(put_order(&a, &sim, &tok, &o).0, 201);
    assert_eq!(sim.stats().orders_created, 1);
}

#[test]
fn poison_order_answers_configured_status() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    sim.reject_order("P-1", 500, "boom");
    for _ in 0..2 {
        assert_eq!(
            put_order(&a, &sim, &tok, &order("P-1")),
            (500, "boom".into())
        );
    }
    assert!(sim.order("P-1").is_none());
}

#[test]
fn returns_and_duplicate_rma() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    assert_eq!(put_order(&a, &sim, &tok, &order("R-1")).0, 201);
    let url = format!("{}/api/Returns/R-1/Return", sim.base_url());
    let ret = |rma: &str, line: &str, qty: f64| {
        json!({"rmaNumber": rma, "storeId": "oslo-1", "creditPayment": true,
               "returns": [{"lineItemId": line, "returnQuantity": qty, "returnReason": "Defect",
                            "isStockUpdated": true, "creditAmount": 100.0}]})
    };
    let (status, body) = call(&a, "POST", &url, Some(&tok), Some(&ret("RMA-1", "1", 1.0)));
    assert_eq!(status, 200, "{body}");
    let form: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(form["status"], "New");
    assert_eq!(form["rmaNumber"], "RMA-1");
    assert!(form["returnId"].as_str().is_some_and(|s| !s.is_empty()));
    assert_eq!(form["lineItems"][0]["code"], "SKU-1");
    assert_eq!(form["lineItems"][0]["returnQuantity"], 1.0);

    let (status, body) = call(&a, "POST", &url, Some(&tok), Some(&ret("RMA-1", "1", 1.0)));
    assert_eq!(status, 400);
    assert!(body.contains("RMA-1"), "{body}");
    // One of two is returned already, so two more exceed the line.
    assert_eq!(
        call(&a, "POST", &url, Some(&tok), Some(&ret("RMA-2", "1", 2.0))).0,
        400
    );
    assert_eq!(
        call(&a, "POST", &url, Some(&tok), Some(&ret("RMA-3", "9", 1.0))).0,
        400
    );
    assert_eq!(
        call(&a, "POST", &url, Some(&tok), Some(&ret("RMA-4", "1", 0.0))).0,
        400
    );
    let missing = format!("{}/api/Returns/NOPE/Return", sim.base_url());
    assert_eq!(
        call(
            &a,
            "POST",
            &missing,
            Some(&tok),
            Some(&ret("RMA-5", "1", 1.0))
        )
        .0,
        404
    );

    let o = sim.order("R-1").expect("order");
    assert_eq!(o["orderForm"]["lineItems"][0]["returnQuantity"], 1.0);
    assert_eq!(o["returnOrderForms"].as_array().map(Vec::len), Some(1));
    let s = sim.stats();
    assert_eq!((s.returns_created, s.duplicate_returns_rejected), (1, 1));
}

#[test]
fn line_cancel_and_status_update() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    assert_eq!(put_order(&a, &sim, &tok, &order("C-1")).0, 201);
    let cancel = format!("{}/api/Orders/C-1/OrderLines/1/Cancel", sim.base_url());
    for _ in 0..2 {
        let (status, body) = call(&a, "POST", &cancel, Some(&tok), None);
        assert_eq!(status, 200);
        let v: Value = serde_json::from_str(&body).expect("json");
        assert_eq!(v["orderForm"]["lineItems"][0]["canceledQuantity"], 2);
    }
    assert_eq!(sim.stats().cancellations, 1);
    let bad_line = format!("{}/api/Orders/C-1/OrderLines/7/Cancel", sim.base_url());
    assert_eq!(call(&a, "POST", &bad_line, Some(&tok), None).0, 404);
    // A canceled line cannot be returned.
    let url = format!("{}/api/Returns/C-1/Return", sim.base_url());
    let r = json!({"rmaNumber": "X", "returns": [{"lineItemId": "1", "returnQuantity": 1}]});
    assert_eq!(call(&a, "POST", &url, Some(&tok), Some(&r)).0, 400);

    let status_url = format!("{}/api/Orders/C-1/UpdateStatus", sim.base_url());
    assert_eq!(
        call(&a, "POST", &status_url, Some(&tok), Some(&json!({}))).0,
        400
    );
    let (status, body) = call(
        &a,
        "POST",
        &status_url,
        Some(&tok),
        Some(&json!({"status": "OrderCanceledByStore"})),
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["isAborted"], false);
    assert_eq!(v["order"]["status"], "OrderCanceledByStore");
    assert_eq!(v["orderActionExecutionResults"], json!([]));
    assert_eq!(sim.stats().cancellations, 2);
    let missing = format!("{}/api/Orders/NOPE/UpdateStatus", sim.base_url());
    let body = json!({"status": "OrderCanceled"});
    assert_eq!(call(&a, "POST", &missing, Some(&tok), Some(&body)).0, 404);
}

#[test]
fn queued_orders_refuse_updates_for_a_while() {
    let sim = Simulator::start(SimConfig {
        queued_ms: 300,
        ..SimConfig::default()
    })
    .expect("start");
    let a = agent();
    let tok = token(&a, &sim);
    let (status, body) = put_order(&a, &sim, &tok, &order("Q-1"));
    assert_eq!(status, 201);
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["status"],
        "Queued"
    );
    let url = format!("{}/api/Orders/Q-1/UpdateStatus", sim.base_url());
    let body = json!({"status": "OrderCanceled"});
    assert_eq!(call(&a, "POST", &url, Some(&tok), Some(&body)).0, 409);
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(sim.order("Q-1").expect("order")["status"], "Completed");
    assert_eq!(call(&a, "POST", &url, Some(&tok), Some(&body)).0, 200);
}

#[test]
fn unknown_route_is_404() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    let (status, body) = call(
        &a,
        "GET",
        &format!("{}/api/Nope/x/y", sim.base_url()),
        Some(&tok),
        None,
    );
    assert_eq!((status, body.as_str()), (404, "No route"));
}

#[test]
fn status_and_429_faults() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    sim.inject(
        Fault::new(FaultKind::Status(503), 1)
            .on_path("/api/Orders")
            .on_method("PUT"),
    );
    assert_eq!(
        put_order(&a, &sim, &tok, &order("F-1")),
        (503, "injected fault".into())
    );
    assert!(sim.order("F-1").is_none());
    assert_eq!(put_order(&a, &sim, &tok, &order("F-1")).0, 201);

    sim.inject(Fault::new(
        FaultKind::TooManyRequests {
            retry_after_secs: 2,
        },
        1,
    ));
    let url = format!("{}/api/Orders/F-1", sim.base_url());
    let resp = a
        .get(&url)
        .header("Authorization", &format!("Bearer {tok}"))
        .call()
        .expect("call");
    assert_eq!(resp.status().as_u16(), 429);
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok());
    assert_eq!(retry, Some("2"));
    assert_eq!(sim.stats().requests_while_paused, 0);
    // A client that ignores Retry-After is caught.
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 200);
    let s = sim.stats();
    assert_eq!((s.requests_while_paused, s.faults_injected), (1, 2));
}

#[test]
fn faults_spare_token_requests_unless_targeted() {
    let sim = start();
    let a = agent();
    sim.inject(Fault::new(FaultKind::Status(500), 1));
    let _ = token(&a, &sim);
    sim.clear_faults();
    sim.inject(Fault::new(FaultKind::Status(500), 1).on_path("/api/token"));
    let url = format!(
        "{}/api/token?clientId=sim-client&clientSecret=sim-secret&returnAsJson=true",
        sim.base_url()
    );
    assert_eq!(call(&a, "POST", &url, None, None).0, 500);
}

#[test]
fn reset_and_timeout_faults() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    sim.inject(Fault::new(FaultKind::Reset, 1));
    let err = try_call(
        &a,
        "PUT",
        &format!("{}/api/Orders/PosOrders", sim.base_url()),
        Some(&tok),
        Some(&order("T-1")),
    )
    .expect_err("reset");
    assert!(matches!(err, ureq::Error::Io(_)), "{err:?}");
    assert!(sim.order("T-1").is_none());

    sim.inject(Fault::new(FaultKind::Timeout { hold_ms: 2000 }, 1));
    let short = agent_with_timeout(Duration::from_millis(300));
    let t0 = Instant::now();
    let err = try_call(
        &short,
        "PUT",
        &format!("{}/api/Orders/PosOrders", sim.base_url()),
        Some(&tok),
        Some(&order("T-1")),
    )
    .expect_err("timeout");
    assert!(matches!(err, ureq::Error::Timeout(_)), "{err:?}");
    assert!(t0.elapsed() < Duration::from_millis(1500));
    assert!(sim.order("T-1").is_none());
}

#[test]
fn commit_then_faults_apply_the_request() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    let url = format!("{}/api/Orders/PosOrders", sim.base_url());
    sim.inject(Fault::new(FaultKind::CommitThenStatus(500), 1));
    assert_eq!(
        call(&a, "PUT", &url, Some(&tok), Some(&order("K-1"))),
        (500, "injected fault".into())
    );
    assert!(sim.order("K-1").is_some());

    sim.inject(Fault::new(FaultKind::CommitThenReset, 1));
    assert!(try_call(&a, "PUT", &url, Some(&tok), Some(&order("K-2"))).is_err());
    assert!(sim.order("K-2").is_some());

    sim.inject(Fault::new(
        FaultKind::CommitThenTimeout { hold_ms: 1000 },
        1,
    ));
    let short = agent_with_timeout(Duration::from_millis(200));
    let err = try_call(&short, "PUT", &url, Some(&tok), Some(&order("K-3"))).expect_err("timeout");
    assert!(matches!(err, ureq::Error::Timeout(_)), "{err:?}");
    assert!(sim.order("K-3").is_some());

    // The retry of a committed order meets the duplicate check.
    let (status, body) = call(&a, "PUT", &url, Some(&tok), Some(&order("K-1")));
    assert_eq!(status, 400);
    assert!(body.contains("already exists"));
    assert_eq!(sim.stats().orders_created, 3);
}

#[test]
fn faults_via_control_endpoint() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    let faults = format!("{}/__sim/faults", sim.base_url());
    let f = json!({"kind": "status", "status": 502, "count": 2, "path_contains": "/api/Orders", "method": "GET"});
    assert_eq!(call(&a, "POST", &faults, None, Some(&f)).0, 200);
    assert_eq!(
        call(&a, "POST", &faults, None, Some(&json!({"kind": "bogus"}))).0,
        400
    );
    assert_eq!(
        call(&a, "POST", &faults, None, Some(&json!({"kind": "status"}))).0,
        400
    );
    let url = format!("{}/api/Orders/x", sim.base_url());
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 502);
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 502);
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 404);
    let (status, body) = call(
        &a,
        "GET",
        &format!("{}/__sim/stats", sim.base_url()),
        None,
        None,
    );
    assert_eq!(status, 200);
    let v: Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v["faults_injected"], 2);
    assert_eq!(v["by_route"]["POST /__sim/faults"], 3);
}

#[test]
fn down_mode_refuses_and_comes_back_on_the_same_port() {
    let sim = start();
    let port = sim.port();
    let a = agent();
    let tok = token(&a, &sim);
    let url = format!("{}/api/Orders/x", sim.base_url());
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 404);
    // A raw keep-alive connection that must be dropped by going down.
    let mut held = TcpStream::connect(("127.0.0.1", port)).expect("connect");

    sim.set_down(true);
    let err = TcpStream::connect(("127.0.0.1", port)).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    assert!(try_call(&a, "GET", &url, Some(&tok), None).is_err());
    held.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    let mut buf = [0u8; 16];
    assert!(!matches!(held.read(&mut buf), Ok(n) if n > 0));

    sim.set_down(false);
    assert_eq!(sim.port(), port);
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 404);

    // The control endpoint does the same for a while, then comes back by itself.
    let down = format!("{}/__sim/down", sim.base_url());
    assert_eq!(
        call(&a, "POST", &down, None, Some(&json!({"ms": 300}))).0,
        200
    );
    let err = TcpStream::connect(("127.0.0.1", port)).expect_err("refused");
    assert_eq!(err.kind(), ErrorKind::ConnectionRefused);
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 404);
}

#[test]
fn keep_alive_many_requests() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    assert_eq!(put_order(&a, &sim, &tok, &order("KA-1")).0, 201);
    let url = format!("{}/api/Orders/KA-1", sim.base_url());
    let t0 = Instant::now();
    for _ in 0..500 {
        assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 200);
    }
    // No per-request stalls (Nagle, sleeps): 500 loopback round trips take well under a second.
    assert!(t0.elapsed() < Duration::from_secs(3), "{:?}", t0.elapsed());
    assert_eq!(sim.stats().by_route["GET /api/Orders/{id}"], 500);
}

/// Reads one response with Content-Length from a raw socket.
fn read_response(s: &mut TcpStream) -> (u16, String) {
    let mut data = Vec::new();
    let mut byte = [0u8; 1];
    while !data.ends_with(b"\r\n\r\n") {
        let n = s.read(&mut byte).expect("read");
        assert_eq!(n, 1, "closed early");
        data.push(byte[0]);
    }
    let head = String::from_utf8(data).expect("utf8");
    let status = head[9..12].parse().expect("status");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|v| v.trim().parse().ok())
        .expect("content-length");
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).expect("body");
    (status, String::from_utf8(body).expect("utf8"))
}

#[test]
fn raw_http_chunked_pipelined_and_case_insensitive() {
    let sim = start();
    let mut s = TcpStream::connect(("127.0.0.1", sim.port())).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    // Token via an encoded query and a lower-case path.
    let req = "POST /api/Token?clientId=sim%2Dclient&clientSecret=sim-secret&returnAsJson=true HTTP/1.1\r\nhost: x\r\ncontent-length: 0\r\n\r\n";
    s.write_all(req.as_bytes()).expect("write");
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200, "{body}");
    let tok = serde_json::from_str::<Value>(&body).expect("json")["accessToken"]
        .as_str()
        .expect("token")
        .to_string();

    // A chunked PUT split into odd chunks, pipelined with a GET in the same write.
    let body = order("RAW-1").to_string();
    let (a, b) = body.split_at(17);
    let put = format!(
        "PUT /api/orders/posorders HTTP/1.1\r\nHOST: x\r\nauthorization: bearer {tok}\r\nTRANSFER-ENCODING: chunked\r\n\r\n{:x};ext=1\r\n{a}\r\n{:x}\r\n{b}\r\n0\r\ntrailer: y\r\n\r\n",
        a.len(),
        b.len()
    );
    let get = format!("GET /api/Orders/RAW%2D1 HTTP/1.1\r\nAuthorization: Bearer {tok}\r\n\r\n");
    s.write_all(format!("{put}{get}").as_bytes())
        .expect("write");
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 201, "{body}");
    let (status, body) = read_response(&mut s);
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        serde_json::from_str::<Value>(&body).expect("json")["id"],
        "RAW-1"
    );

    // Garbage gets a 400 and the connection closes.
    s.write_all(b"NONSENSE\r\n\r\n").expect("write");
    assert_eq!(read_response(&mut s).0, 400);
    let mut rest = Vec::new();
    assert_eq!(s.read_to_end(&mut rest).map(|_| rest.len()).unwrap_or(0), 0);
}

#[test]
fn latency_and_in_flight() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    sim.set_latency_ms(150);
    let url = format!("{}/api/Orders/x", sim.base_url());
    let t0 = Instant::now();
    assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 404);
    assert!(t0.elapsed() >= Duration::from_millis(150));
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let (url, tok) = (url.clone(), tok.clone());
            std::thread::spawn(move || call(&agent(), "GET", &url, Some(&tok), None).0)
        })
        .collect();
    for t in threads {
        assert_eq!(t.join().expect("join"), 404);
    }
    let max = sim.stats().max_in_flight;
    assert!((2..=4).contains(&max), "{max}");
    sim.reset_stats();
    assert_eq!(sim.stats().requests, 0);
    assert_eq!(sim.stats().max_in_flight, 0);
}

#[test]
fn limits_are_off_by_default() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    let url = format!("{}/api/Orders/none", sim.base_url());
    for _ in 0..30 {
        assert_eq!(call(&a, "GET", &url, Some(&tok), None).0, 404);
    }
    assert_eq!(sim.stats().throttled, 0);
    let tills = sim.till_stats();
    assert_eq!(tills.len(), 1);
    assert_eq!(tills["till-1"].requests, 30);
}

#[test]
fn token_bucket_answers_429_with_retry_after_and_counts_per_till() {
    let sim = start();
    let a = agent();
    let (t1, t2) = (token(&a, &sim), token(&a, &sim));
    sim.set_limits(Some(Limits {
        concurrency: 20,
        bucket: 3.0,
        refill_per_sec: 0.5,
    }));
    let url = format!("{}/api/Orders/none", sim.base_url());
    for _ in 0..3 {
        assert_eq!(call(&a, "GET", &url, Some(&t1), None).0, 404);
    }
    let resp = a
        .get(&url)
        .header("Authorization", &format!("Bearer {t1}"))
        .call()
        .expect("call");
    assert_eq!(resp.status().as_u16(), 429);
    let retry = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok());
    assert_eq!(retry, Some("2"), "one request refills in 2 s at 0.5/s");
    // Ignoring the Retry-After is counted against that till only.
    assert_eq!(call(&a, "GET", &url, Some(&t1), None).0, 429);
    assert_eq!(call(&a, "GET", &url, Some(&t2), None).0, 429);
    // The token endpoint is exempt.
    token(&a, &sim);
    let s = sim.till_stats();
    let want1 = TillStats {
        requests: 5,
        throttled: 2,
        inside_retry_after: 1,
        // Sent right after the 429 was read: how soon it arrived is the machine's.
        inside_retry_after_within_10ms: s["till-1"].inside_retry_after_within_10ms,
        sent_before_the_429: 0,
    };
    let want2 = TillStats {
        requests: 1,
        throttled: 1,
        inside_retry_after: 0,
        inside_retry_after_within_10ms: 0,
        sent_before_the_429: 0,
    };
    assert_eq!((&s["till-1"], &s["till-2"]), (&want1, &want2));
    assert_eq!(sim.stats().throttled, 3);
    // After the pause the bucket has refilled enough for one request.
    std::thread::sleep(Duration::from_millis(2300));
    assert_eq!(call(&a, "GET", &url, Some(&t2), None).0, 404);
    sim.set_limits(None);
    for _ in 0..5 {
        assert_eq!(call(&a, "GET", &url, Some(&t1), None).0, 404);
    }
    assert_eq!(sim.stats().throttled, 3);
}

#[test]
fn concurrency_above_the_limit_is_answered_429() {
    let sim = start();
    let a = agent();
    let tok = token(&a, &sim);
    sim.set_limits(Some(Limits {
        concurrency: 2,
        bucket: 1000.0,
        refill_per_sec: 10.0,
    }));
    sim.set_latency_ms(1500);
    let url = format!("{}/api/Orders/none", sim.base_url());
    let handles: Vec<_> = (0..6)
        .map(|_| {
            let (a, url, tok) = (a.clone(), url.clone(), tok.clone());
            std::thread::spawn(move || call(&a, "GET", &url, Some(&tok), None).0)
        })
        .collect();
    let codes: Vec<u16> = handles
        .into_iter()
        .map(|h| h.join().expect("join"))
        .collect();
    let throttled = codes.iter().filter(|c| **c == 429).count();
    assert!(throttled >= 1, "{codes:?}");
    assert!(codes.iter().all(|c| *c == 429 || *c == 404), "{codes:?}");
    assert_eq!(sim.stats().throttled as usize, throttled);
    assert!(sim.stats().max_in_flight >= 3, "{:?}", sim.stats());
}
