//! The real `tandem` binary as a child process: what a crash (`kill -9`) or a restart needs,
//! and what the kernel says about its memory.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// How long the binary may take to log its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `tandem` binary.
pub struct Binary {
    child: Child,
    pub addr: SocketAddr,
    database_url: String,
    env: Vec<(String, String)>,
    /// The descriptor limit it runs with (soft and hard), if not inherited.
    nofile: Option<u64>,
    /// Every line it has logged so far.
    log: Arc<Mutex<Vec<String>>>,
}

/// Resident memory of a process, from `/proc/PID/status`.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident now (VmRSS), KiB.
    pub rss_kib: u64,
    /// The most it was ever resident (VmHWM, the high-water mark), KiB.
    pub peak_kib: u64,
}

impl Binary {
    /// Starts the binary on an ephemeral port with `DATABASE_URL` and extra settings.
    pub fn start(database_url: &str, env: &[(&str, &str)]) -> Self {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::spawn("127.0.0.1:0".parse().expect("address"), database_url.to_owned(), env, None)
    }

    /// As `start`, with at most `nofile` descriptors (soft and hard limit alike).
    pub fn start_with_descriptors(database_url: &str, env: &[(&str, &str)], nofile: u64) -> Self {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Self::spawn("127.0.0.1:0".parse().expect("address"), database_url.to_owned(), env, Some(nofile))
    }

    /// A new process on the same database and port (clients come back to the address they
    /// knew), with the same settings. The port may still be held for a moment by the dying
    /// process: it retries until the bind succeeds.
    pub fn restart(&self) -> Self {
        Self::spawn(self.addr, self.database_url.clone(), self.env.clone(), self.nofile)
    }

    fn spawn(
        listen: SocketAddr,
        database_url: String,
        env: Vec<(String, String)>,
        nofile: Option<u64>,
    ) -> Self {
        let deadline = std::time::Instant::now() + START_TIMEOUT;
        loop {
            match Self::try_spawn(listen, &database_url, &env, nofile) {
                Ok(binary) => return binary,
                Err(why) if std::time::Instant::now() < deadline => {
                    crate::helpers::shout(&format!("tandem did not start ({why}); retrying"));
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(why) => panic!("tandem did not start: {why}"),
            }
        }
    }

    fn try_spawn(
        listen: SocketAddr,
        database_url: &str,
        env: &[(String, String)],
        nofile: Option<u64>,
    ) -> Result<Self, String> {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tandem"));
        command
            .env("TANDEM_LISTEN", listen.to_string())
            .env("DATABASE_URL", database_url)
            // The start-up line carries the address; one line per request would be noise.
            .env("TANDEM_LOG", "tandem=info,tandem::http::request=warn")
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (key, value) in env {
            command.env(key, value);
        }
        if let Some(nofile) = nofile {
            use std::os::unix::process::CommandExt;
            let limit = libc::rlimit { rlim_cur: nofile, rlim_max: nofile };
            // SAFETY: setrlimit is async-signal-safe and only reads the struct given.
            unsafe {
                command.pre_exec(move || match libc::setrlimit(libc::RLIMIT_NOFILE, &limit) {
                    0 => Ok(()),
                    _ => Err(std::io::Error::last_os_error()),
                });
            }
        }
        let mut child = command.spawn().map_err(|e| format!("spawn: {e}"))?;
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        let log = Arc::new(Mutex::new(Vec::new()));
        let lines = Arc::clone(&log);
        // Finds the address in the log, then keeps draining stdout so the server never blocks.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if let Some(rest) = line.split("addr=").nth(1) {
                    let addr = rest.split_whitespace().next().unwrap_or_default().to_owned();
                    let _ = tx.send(addr);
                }
                if std::env::var("TEST_SERVER_LOG").is_ok() {
                    eprintln!("SERVER {line}");
                }
                lines.lock().unwrap().push(line);
            }
        });
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(addr) => {
                let addr = addr.parse().map_err(|e| format!("address {addr:?}: {e}"))?;
                Ok(Self {
                    child,
                    addr,
                    database_url: database_url.to_owned(),
                    env: env.to_vec(),
                    nofile,
                    log,
                })
            }
            Err(_) => {
                let _ = child.kill();
                let status = child.wait().map_err(|e| e.to_string())?;
                Err(format!("exited with {status}: {}", log.lock().unwrap().join("\n")))
            }
        }
    }

    /// Whether a line it logged contains `needle`.
    pub fn logged(&self, needle: &str) -> bool {
        self.log.lock().unwrap().iter().any(|line| line.contains(needle))
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn ws_url(&self, id: &str) -> String {
        format!("ws://{}/ws/{id}", self.addr)
    }

    /// `kill -9`: no chance to save anything.
    pub fn kill(&mut self) {
        self.child.kill().expect("kill -9");
        self.child.wait().expect("reap");
    }

    /// SIGTERM, then waits for the exit (a graceful shutdown saves everything).
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = self.child.id().to_string();
        let status = Command::new("kill").args(["-TERM", &pid]).status().expect("kill");
        assert!(status.success());
        for _ in 0..300 {
            if let Some(status) = self.child.try_wait().expect("wait") {
                return status;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("tandem did not exit within 30 s of SIGTERM");
    }

    /// Its memory now and at its peak.
    pub fn memory(&self) -> Memory {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("/proc status");
        let field = |name: &str| {
            status
                .lines()
                .find_map(|line| line.strip_prefix(name))
                .and_then(|rest| rest.split_whitespace().next())
                .and_then(|kib| kib.parse().ok())
                .unwrap_or(0)
        };
        Memory { rss_kib: field("VmRSS:"), peak_kib: field("VmHWM:") }
    }

    /// Creates a document over REST; its id.
    pub async fn create_doc(&self, title: &str) -> String {
        let resp = reqwest::Client::new()
            .post(self.url("/api/docs"))
            .json(&serde_json::json!({ "title": title }))
            .send()
            .await
            .expect("create");
        assert_eq!(resp.status(), 201);
        let doc: serde_json::Value = resp.json().await.expect("json");
        doc["id"].as_str().expect("id").to_owned()
    }

    /// The live text of a document.
    pub async fn text(&self, id: &str) -> String {
        let resp = reqwest::get(self.url(&format!("/api/docs/{id}/text"))).await.expect("text");
        assert_eq!(resp.status(), 200, "text of {id}");
        resp.text().await.expect("body")
    }

    /// Its metrics, as a scraper reads them.
    pub async fn metrics(&self) -> String {
        reqwest::get(self.url("/metrics")).await.expect("metrics").text().await.expect("body")
    }
}

impl Drop for Binary {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
