//! Interop with the real JavaScript client: two stock `y-websocket` providers (npm, run by
//! Node) edit one document through the server. Needs Node and `npm ci` in tests/interop;
//! skipped loudly without them (and failed in CI, which sets TANDEM_TEST_REQUIRE_ALL=1).

use std::path::PathBuf;
use std::process::Command;

use crate::helpers::{Backend, TestApp, require_all, shout};

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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_y_websocket_providers_converge() {
    if let Some(why) = missing_prerequisite() {
        assert!(!require_all(), "interop test cannot run: {why}");
        shout(&format!("SKIPPED: interop::stock_y_websocket_providers_converge ({why})"));
        return;
    }
    let app = TestApp::spawn(Backend::Sqlite).await;
    let id = app.create_doc("interop").await;
    let base = format!("ws://{}/ws", app.addr);
    let script = interop_dir().join("two_providers.mjs");
    let output = tokio::process::Command::new("node")
        .arg(&script)
        .arg(&base)
        .arg(&id)
        .current_dir(interop_dir())
        .output()
        .await
        .expect("run node");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "node failed: {}\nstdout: {stdout}\nstderr: {stderr}", output.status);
    let result: serde_json::Value = serde_json::from_str(stdout.trim()).expect("the script prints JSON");
    let text = result["text"].as_str().expect("text");
    assert_eq!(text.len(), 40 * 4 + "A-offline;".len() + "B-online;".len(), "{text}");
    assert_eq!(app.text(&id).await, text);
}
