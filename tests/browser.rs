//! End-to-end tests in a real browser: runs `web/e2e/run.mjs` (headless Chromium driven by playwright-core)
//! against this crate's `tandem` binary. The runner starts and restarts the server itself and saves a
//! screenshot of each scenario's end state under `target/e2e/`.
//!
//! Needs `node`, Debian's `chromium` and `web/node_modules` (`cd web && npm ci`). When one is missing the test
//! says so on stderr, in a line starting with `SKIPPED:`, and passes; with `TANDEM_TEST_REQUIRE_ALL=1` (as in
//! CI) it fails instead.

use std::env;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

/// Finds an executable on `PATH`, the way a shell would.
fn which(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path).map(|dir| dir.join(name)).find(|candidate| candidate.is_file())
}

/// Skips the test loudly, or fails it when the environment promises everything is installed.
fn skip(reason: &str) {
    if env::var("TANDEM_TEST_REQUIRE_ALL").as_deref() == Ok("1") {
        panic!("browser tests cannot run: {reason} (TANDEM_TEST_REQUIRE_ALL=1)");
    }
    // Straight to stderr: cargo test does not capture it, so the skip is seen.
    let _ = writeln!(std::io::stderr(), "SKIPPED: browser end-to-end tests: {reason}");
}

#[test]
fn browser_end_to_end() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let web = root.join("web");

    let Some(node) = which("node") else {
        return skip("`node` is not on PATH");
    };
    let chromium = env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| which("chromium"))
        .or_else(|| which("chromium-browser"));
    let Some(chromium) = chromium else {
        return skip("no `chromium` on PATH (apt-get install chromium)");
    };
    if !web.join("node_modules").join("playwright-core").is_dir() {
        return skip("web/node_modules is missing (cd web && npm ci)");
    }

    // CARGO_TARGET_TMPDIR is <target>/tmp: the screenshots go next to it, in <target>/e2e.
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let target = tmp.parent().unwrap_or(tmp);
    let screenshots = target.join("e2e");
    let work = tmp.join(format!("browser-e2e-{}", std::process::id()));

    // A self-signed certificate for the scenario served over TLS; the runner's own requests
    // trust it, the browser is told to accept it.
    let tls = tmp.join(format!("browser-tls-{}", std::process::id()));
    std::fs::create_dir_all(&tls).expect("a folder for the certificate");
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
        .expect("a certificate");
    let (cert, key) = (tls.join("cert.pem"), tls.join("key.pem"));
    std::fs::write(&cert, made.cert.pem()).expect("write the certificate");
    std::fs::write(&key, made.signing_key.serialize_pem()).expect("write the key");

    let started = Instant::now();
    let output = Command::new(node)
        .arg(web.join("e2e").join("run.mjs"))
        .arg("--server-bin")
        .arg(env!("CARGO_BIN_EXE_tandem"))
        .arg("--work")
        .arg(&work)
        .arg("--screenshots")
        .arg(&screenshots)
        .arg("--chromium")
        .arg(&chromium)
        .arg("--tls-cert")
        .arg(&cert)
        .arg("--tls-key")
        .arg(&key)
        .env("NODE_EXTRA_CA_CERTS", &cert)
        .current_dir(root)
        .output()
        .expect("node starts");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "browser end-to-end tests failed ({}):\n{stdout}\n{stderr}\nserver log: {}",
        output.status,
        work.join("server.log").display()
    );
    let _ = std::fs::remove_dir_all(&work);
    let _ = std::fs::remove_dir_all(&tls);
    let summary = stdout.lines().last().unwrap_or("");
    let _ = writeln!(std::io::stderr(), "{summary} (with startup: {:.0?})", started.elapsed());
}
