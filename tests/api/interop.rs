//! Interop with the real JavaScript client: two stock `y-websocket` providers (npm, run by
//! Node) edit one document through the server. Needs Node and `npm ci` in tests/interop;
//! skipped loudly without them (and failed in CI, which sets TANDEM_TEST_REQUIRE_ALL=1).

use std::path::PathBuf;
use std::process::Command;

use tandem::auth::Scope;

use crate::helpers::{Backend, TestApp, require_all, shout, with_auth};

fn interop_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Why the JavaScript side cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    match Command::new("node").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        _ => return Some("node is not installed".into()),
    }
    if !interop_dir().join("node_modules/y-websocket").exists() {
        return Some("run `npm ci` in tests/interop first".into());
    }
    None
}

/// Runs a script of tests/interop against `app`'s document `id`; what it printed (JSON).
/// `None` (after a loud skip) when Node or the packages are missing.
async fn run_script(
    test: &str,
    script: &str,
    app: &TestApp,
    id: &str,
    env: &[(&str, String)],
) -> Option<serde_json::Value> {
    if let Some(why) = missing_prerequisite() {
        assert!(!require_all(), "interop test cannot run: {why}");
        shout(&format!("SKIPPED: interop::{test} ({why})"));
        return None;
    }
    let scheme = if app.config.tls_cert.is_some() { "wss" } else { "ws" };
    let base = format!("{scheme}://{}/ws", app.addr);
    let output = tokio::process::Command::new("node")
        .arg(interop_dir().join(script))
        .arg(&base)
        .arg(id)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .current_dir(interop_dir())
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node failed: {}\nstdout: {stdout}\nstderr: {stderr}", output.status);
    Some(serde_json::from_str(stdout.trim()).expect("the script prints JSON"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_y_websocket_providers_converge() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("interop").await;
    let Some(result) =
        run_script("stock_y_websocket_providers_converge", "two_providers.mjs", &app, &id, &[]).await
    else {
        return;
    };
    let text = result["text"].as_str().expect("text");
    assert_eq!(text.len(), 40 * 4 + "A-offline;".len() + "B-online;".len(), "{text}");
    assert_eq!(app.text(&id).await, text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_providers_with_tokens_read_only_and_expiry() {
    let app = TestApp::spawn_with(Backend::Sqlite, with_auth).await;
    let id = app.create_doc("interop with tokens").await;
    let docs = tandem::auth::Docs::parse(&id).expect("id");
    let env = [
        ("TANDEM_WRITE_TOKEN", app.doc_token(&id, Scope::Write)),
        ("TANDEM_READ_TOKEN", app.doc_token(&id, Scope::Read)),
        ("TANDEM_SHORT_TOKEN", app.token(docs, Scope::Write, 4)),
        ("TANDEM_FRESH_TOKEN", app.doc_token(&id, Scope::Write)),
    ];
    let test = "stock_providers_with_tokens_read_only_and_expiry";
    let Some(result) = run_script(test, "token_providers.mjs", &app, &id, &env).await else {
        return;
    };
    assert_eq!(result["close"], 4401);
    let text = result["text"].as_str().expect("text");
    assert!(!text.contains("refused;"), "{text}");
    assert_eq!(app.text(&id).await, text);
    assert!(
        text.starts_with("written;") && text.contains("more;") && text.contains("after refresh;"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_providers_over_wss() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (app, cert) = crate::tls::tls_app(dir.path()).await;
    let id = app.create_doc_over_tls(&cert.der).await;
    // Node trusts the test's own certificate through NODE_EXTRA_CA_CERTS, as a deployment
    // with a private CA would.
    let env = [("NODE_EXTRA_CA_CERTS", cert.cert.display().to_string())];
    let Some(result) = run_script("stock_providers_over_wss", "two_providers.mjs", &app, &id, &env).await
    else {
        return;
    };
    let text = result["text"].as_str().expect("text");
    let served = crate::tls::https_get(app.addr, &cert.der, &format!("/api/docs/{id}/text")).await;
    assert!(served.ends_with(text), "{served}");
    assert_eq!(text.len(), 40 * 4 + "A-offline;".len() + "B-online;".len(), "{text}");
}

/// The default message rate, held against what people and bots send through the stock
/// provider: fast typing with its cursor, a 1 MiB paste, a day of offline edits sent on
/// reconnect, a bot writing 800 updates a second. None of them is held back, every edit
/// arrives, and the peaks are printed (the README's reasons for the default).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everyday_rates_are_never_held_back_by_the_default_limit() {
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("everyday rates").await;
    let test = "everyday_rates_are_never_held_back_by_the_default_limit";
    let Some(result) = run_script(test, "everyday_rates.mjs", &app, &id, &[]).await else {
        return;
    };
    let length = result["text_length"].as_u64().expect("text_length") as usize;
    assert_eq!(app.text(&id).await.chars().count(), length);
    let metrics = app.request(reqwest::Method::GET, "/metrics").send().await.unwrap().text().await.unwrap();
    let throttled = crate::metrics::sample(&metrics, "tandem_throttled_total").unwrap_or(0.0);
    crate::kit::figures::report(
        "everyday rates (frames the stock provider sent: all, and the most in one second)",
        &result["activities"].to_string(),
    );
    assert_eq!(throttled, 0.0, "the default limit held back everyday use: {result}");
    let limit = f64::from(app.config.max_messages_per_sec);
    for (name, activity) in result["activities"].as_object().expect("activities") {
        let peak = activity["peak_per_second"].as_f64().expect("peak");
        assert!(peak < limit, "{name} sent {peak} frames in one second, the default allows {limit}");
    }
}
